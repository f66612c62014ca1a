"""One typed way to apply a `jobstate.domain` change to a job through the client."""

from __future__ import annotations

from jobstate.client import Job, JobStateClient
from jobstate.domain import Cancel, Change, Complete, Fail, Progress, Submit


async def apply_change(client: JobStateClient, job_id: str, change: Change) -> Job:
    """The RPC `change` stands for; the job afterwards. Raises what the client raises."""
    match change:
        case Submit(external_id):
            return await client.mark_submitted(job_id, external_id)
        case Progress(progress, message):
            return await client.report_progress(job_id, progress, message)
        case Complete(output_key):
            return await client.complete_job(job_id, output_key)
        case Fail(error):
            return await client.fail_job(job_id, error)
        case Cancel(reason):
            return await client.cancel_job(job_id, reason)

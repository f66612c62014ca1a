"""The reconciler's rules: what to do with one job that went quiet. Pure: no I/O.

`judge(job, now, rules, answer)` decides from the job and what RunPod answered to
`GET /status/{external_id}` (read by `runpodstatus`, as callbacks are):

- pending and never submitted (no external_id): fail, "never handed to a GPU worker";
- RunPod COMPLETED with `output.output_key` inside the job's own output_prefix: complete
  (a key outside it, or none: fail); FAILED / TIMED_OUT: fail (RunPod's text is for the log
  only, `Verdict.note`); CANCELLED: cancel; IN_QUEUE / IN_PROGRESS: leave;
- RunPod does not know the job (404, `GONE`): fail, "the GPU worker stopped reporting";
- unfinished past the hard deadline (from creation): fail, and cancel it on RunPod when RunPod
  still runs it;
- not asked (no RunPod, no external_id), unreachable, or an answer it cannot read: leave
  until the deadline.

Silence alone is no proof that a worker died, so a stale `processing` job is left alone
until its deadline. A verdict drawn from silence (`Verdict.silence`) must give way to a worker
that reported since the job was listed; the loop checks that before applying it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

from gateway.outputs import output_prefix
from gateway.runpodstatus import (
    Failed,
    Finished,
    NoOutput,
    RefusedOutput,
    Running,
    UnknownStatus,
    Unreadable,
    read_status,
)
from jobstate.client import Job, Status
from jobstate.domain import Cancel, Complete, Fail

NEVER_SUBMITTED = (
    "the job was never handed to a GPU worker (the gateway stopped before submitting it)"
)
STOPPED_REPORTING = "the GPU worker stopped reporting: RunPod no longer knows this job"
RUNPOD_FAILED = "the RunPod job failed"
NO_OUTPUT = "RunPod reports the job completed without an output_key"


class NoAnswer(Enum):
    """What stands for RunPod's answer when there is no status body."""

    NOT_ASKED = "not asked"  # no RunPod to ask (the simulated worker)
    UNREACHABLE = "unreachable"  # unreachable, refused, or the id is not a RunPod id
    GONE = "gone"  # 404: RunPod does not know the job


NOT_ASKED, UNREACHABLE, GONE = NoAnswer.NOT_ASKED, NoAnswer.UNREACHABLE, NoAnswer.GONE
Answer = Mapping[str, Any] | NoAnswer


@dataclass(frozen=True, slots=True)
class Rules:
    hard_deadline: timedelta
    output_root: str  # R2_OUTPUT_PREFIX: a job's outputs live under `{output_root}{job_id}/`


Change = Complete | Fail | Cancel


@dataclass(frozen=True, slots=True)
class Verdict:
    """What to do with one job: a change, or nothing (`change` None: leave it)."""

    change: Change | None = None
    silence: bool = False  # decided from silence, not from RunPod's word
    cancel_on_runpod: bool = False
    note: str = ""  # for the log: RunPod's own words, never shown to users

    @property
    def outcome(self) -> str:
        """The name counted in a round's summary."""
        match self.change:
            case Complete():
                return "completed"
            case Fail():
                return "failed"
            case Cancel():
                return "cancelled"
        return "left"


LEAVE = Verdict()


def judge(job: Job, now: datetime, rules: Rules, answer: Answer) -> Verdict:
    """The verdict on `job`, stale at `now`; `answer` is RunPod's status body for it or why
    there is none."""
    overdue = now - job.created_at > rules.hard_deadline
    if not job.external_id:
        if job.status is Status.PENDING:
            return Verdict(Fail(NEVER_SUBMITTED), silence=True)
        # Reporting without a recorded submission, then silence: only the deadline applies.
        return _overdue(rules) if overdue else LEAVE
    if answer is GONE:
        return Verdict(Fail(STOPPED_REPORTING), silence=True)
    if isinstance(answer, NoAnswer):
        return _overdue(rules) if overdue else LEAVE
    verdict = _from_runpod(job, rules, answer)
    if verdict.change is None and overdue:
        return _overdue(rules, cancel_on_runpod=True)
    return verdict


def _overdue(rules: Rules, *, cancel_on_runpod: bool = False) -> Verdict:
    hours = rules.hard_deadline.total_seconds() / 3600
    message = (
        "the GPU worker stopped reporting: the job was still unfinished after its "
        f"{hours:g} h deadline"
    )
    return Verdict(Fail(message), silence=True, cancel_on_runpod=cancel_on_runpod)


def _from_runpod(job: Job, rules: Rules, body: Mapping[str, Any]) -> Verdict:
    try:
        reading = read_status(body, output_prefix(rules.output_root, job.job_id))
    except Unreadable as exc:
        return Verdict(note=f"RunPod answered something unreadable: {exc}")
    match reading:
        case Running():
            return LEAVE
        case Finished(change):
            return Verdict(change)
        case Failed(error):
            # NOTE: text from RunPod's API goes to the log, never to users (it may echo
            # anything); the worker's own message reaches them through its FAILED webhook.
            return Verdict(Fail(RUNPOD_FAILED), note=f"RunPod reports FAILED: {error!r:.500}")
        case NoOutput():
            return Verdict(Fail(NO_OUTPUT))
        case RefusedOutput(problem):
            refused = f"RunPod reports an output key that {problem}; it was not accepted"
            return Verdict(Fail(refused))
        case UnknownStatus(status):
            return Verdict(note=f"RunPod status {status!r} is not one we know")

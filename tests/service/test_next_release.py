"""The next release (a copy of this package with one more revision, run as its own `jobstate`
command) meets a database of this release: serve refuses it as behind, migrate upgrades it with
its jobs intact (on SQLite by rewriting the table, Alembic's batch mode), and this release then
refuses it as ahead.
"""

from __future__ import annotations

import shutil
import signal
import sys
from pathlib import Path

import pytest
from google.protobuf.struct_pb2 import Struct
from sqlalchemy import inspect

from jobstate import migrate
from jobstate.v1 import jobstate_pb2 as pb
from jobstate.v1 import jobstate_pb2_grpc as pb_grpc

from .conftest import WAIT, ChannelFactory, SpawnFactory
from .releases import HEAD, LISTEN, connection, jobstate, where

NEXT_REVISION = '''"""The next release: a column and a wider kind (a table rewrite on SQLite)."""

import sqlalchemy as sa
from alembic import op

revision = "next"
down_revision = "{head}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("priority", sa.Integer, nullable=False, server_default="0"))
        batch.alter_column("kind", type_=sa.String(128), existing_nullable=False)
        batch.create_index("ix_jobs_priority", ["priority"])
'''


@pytest.fixture
def next_release(tmp_path: Path) -> tuple[str, ...]:
    """The `jobstate` command of a release with one more revision ("next") than this one."""
    root = tmp_path / "next-release"
    package = Path(migrate.__file__).parent
    shutil.copytree(package, root / "jobstate", ignore=shutil.ignore_patterns("__pycache__"))
    revision = root / "jobstate" / "migrations" / "versions" / "next.py"
    revision.write_text(NEXT_REVISION.format(head=HEAD))
    boot = f"import sys; sys.path.insert(0, {str(root)!r}); from jobstate_cli.main import main"
    return (sys.executable, "-c", f"{boot}; sys.exit(main())")


async def test_the_next_release_upgrades_a_database_of_this_release(
    database_url: str, spawn: SpawnFactory, connect: ChannelFactory, next_release: tuple[str, ...]
) -> None:
    url = ("--database-url", database_url)
    this = await spawn(*LISTEN, *url)
    stub = pb_grpc.JobStateServiceStub(connect(this.port))
    params = Struct()
    params.update({"a": 1})
    created = (
        await stub.CreateJob(
            pb.CreateJobRequest(job_id="j", user_id="u1", kind="k", params=params), timeout=WAIT
        )
    ).job
    await stub.ReportProgress(
        pb.ReportProgressRequest(job_id="j", progress=30, message="m"), timeout=WAIT
    )
    before = (await stub.GetJob(pb.GetJobRequest(job_id="j"), timeout=WAIT)).job
    this.send_signal(signal.SIGTERM)
    assert await this.wait() == 0

    behind = await spawn(*LISTEN, *url, program=next_release, listening=False)
    behind_code = await behind.wait()
    upgraded = await jobstate("migrate", *url, program=next_release)
    nxt = await spawn(*LISTEN, *url, program=next_release)
    after = (
        await pb_grpc.JobStateServiceStub(connect(nxt.port)).GetJob(
            pb.GetJobRequest(job_id="j"), timeout=WAIT
        )
    ).job
    nxt.send_signal(signal.SIGTERM)
    assert await nxt.wait() == 0
    ahead = await spawn(*LISTEN, *url, listening=False)
    ahead_code = await ahead.wait()
    ahead_migrate = await jobstate("migrate", *url)
    async with connection(database_url) as conn:
        columns = await conn.run_sync(
            lambda c: [col["name"] for col in inspect(c).get_columns("jobs")]
        )

    db = where(database_url)
    ahead_line = (
        f"the database {db} is at schema revision next, which this release does not know (it "
        f"knows up to {HEAD}): a newer release migrated it; run that release, not this one"
    )
    assert (behind_code, behind.output) == (
        1,
        [
            f"jobstate serve: the database {db} is at schema revision {HEAD}, behind this "
            "release's next: run `jobstate migrate` first (or start serve with --migrate)"
        ],
    )
    assert upgraded == (0, [f"jobstate migrate: {db}: upgraded from revision {HEAD} to next"], [])
    assert (created.version, before.version, after) == (1, 2, before)
    assert "priority" in columns
    assert (ahead_code, ahead.output) == (1, [f"jobstate serve: {ahead_line}"])
    assert ahead_migrate == (1, [], [f"jobstate migrate: {ahead_line}"])

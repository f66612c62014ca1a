"""Schema versions: `jobstate migrate`, `serve` (refusing, or --migrate), `dev`, the revisions.

Real databases (SQLite files; PostgreSQL databases of the test's own when
JOBSTATE_TEST_POSTGRES_URL is set) and real `jobstate` processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import insert, inspect
from sqlalchemy.engine import make_url
from support.poll import eventually
from support.processes import REPO

from jobstate import migrate, schema
from jobstate.v1 import jobstate_pb2 as pb
from jobstate.v1 import jobstate_pb2_grpc as pb_grpc

from .conftest import (
    JOBSTATE,
    PROCESS_WAIT,
    WAIT,
    ChannelFactory,
    ServerFactory,
    SpawnFactory,
    history,
)
from .releases import (
    HEAD,
    KEYS_AFTER,
    KEYS_BEFORE,
    LISTEN,
    V010_EVENTS,
    V010_JOBS,
    asyncpg_dsn,
    connection,
    environ,
    event_row,
    job_row,
    jobstate,
    keys_of,
    make_v010_database,
    schema_messages,
    table_names,
    versions,
    where,
)


def alembic_config(connection: Any) -> Config:
    """Alembic on this package's revisions, as a previous release's code would run them."""
    config = Config()
    config.set_main_option("script_location", str(Path(migrate.__file__).with_name("migrations")))
    config.attributes["connection"] = connection
    return config


async def test_serve_creates_an_empty_database_at_head_without_being_asked(
    database_url: str, spawn: SpawnFactory
) -> None:
    # Nothing to lose and nothing to be behind: a fresh machine, a fresh replica set, and
    # scripts that cannot pass --migrate (the side-by-side benchmark) just start.
    serve = await spawn(*LISTEN, "--database-url", database_url)

    assert schema_messages(serve.output) == [
        f"database schema: created the schema at revision {HEAD} (the database was empty)"
    ]
    assert await versions(database_url) == [HEAD]


async def test_head_is_exactly_the_tables_of_schema_py(database_url: str) -> None:
    # schema.py stays the one description of the tables: a revision that forgets a change made
    # there (or the other way round) shows up here, on both engines.
    code, out, _ = await jobstate("migrate", "--database-url", database_url)
    async with connection(database_url) as conn:
        differences = await conn.run_sync(
            lambda c: compare_metadata(MigrationContext.configure(c), schema.metadata)
        )

    assert (code, out) == (
        0,
        [
            f"jobstate migrate: {where(database_url)}: created the schema at revision {HEAD} "
            "(the database was empty)"
        ],
    )
    assert differences == []


async def test_a_database_made_at_the_baseline_upgrades_to_head_with_its_jobs(
    database_url: str, spawn: SpawnFactory, connect: ChannelFactory
) -> None:
    done = job_row("done", status="complete", progress=100.0, output_key="exports/done/o.mp4")
    done |= {"version": 3, "completed_at": done["created_at"] + timedelta(minutes=3)}
    running = job_row("running", "u2", "k", status="processing", progress=40.0, version=2)
    events = [
        event_row(done, 1, "created", status="pending", progress=0.0, output_key=""),
        event_row(done, 2, "progress", status="processing", progress=50.0, output_key=""),
        event_row(done, 3, "complete"),
        event_row(running, 1, "created", status="pending", progress=0.0),
        event_row(running, 2, "progress"),
    ]
    async with connection(database_url) as conn:
        await conn.run_sync(lambda c: command.upgrade(alembic_config(c), migrate.BASELINE))
        await conn.execute(insert(V010_JOBS), [done, running])
        await conn.execute(insert(V010_EVENTS), events)

    code, out, _ = await jobstate("migrate", "--database-url", database_url)
    serve = await spawn(*LISTEN, "--database-url", database_url)
    stub = pb_grpc.JobStateServiceStub(connect(serve.port))
    jobs = [
        (await stub.GetJob(pb.GetJobRequest(job_id=j), timeout=WAIT)).job
        for j in ("done", "running")
    ]

    assert (code, len(out)) == (0, 1)
    assert [
        (j.job_id, j.user_id, pb.JobStatus.Name(j.status), j.progress, j.version, j.output_key)
        for j in jobs
    ] == [
        ("done", "u1", "JOB_STATUS_COMPLETE", 100.0, 3, "exports/done/o.mp4"),
        ("running", "u2", "JOB_STATUS_PROCESSING", 40.0, 2, ""),
    ]
    assert dict(jobs[0].params) == {"clip": "done"}
    assert await history(stub, "done") == [("PROGRESS", 2), ("COMPLETE", 3)]
    assert await versions(database_url) == [HEAD]


async def test_a_release_0_1_database_is_refused_by_serve_and_adopted_by_migrate(
    database_url: str, spawn: SpawnFactory, start: ServerFactory, connect: ChannelFactory
) -> None:
    await make_v010_database(database_url)

    refused = await spawn(*LISTEN, "--database-url", database_url, listening=False)
    refused_code = await refused.wait()
    untouched = (await versions(database_url), await keys_of(database_url))
    code, out, err = await jobstate("migrate", "--database-url", database_url)
    async with connection(database_url) as conn:
        indexes = await conn.run_sync(lambda c: inspect(c).get_indexes("jobs"))
    server = await start(database_url)  # plain serve: the database is at head now
    stub = pb_grpc.JobStateServiceStub(connect(server.port))
    request = pb.CreateJobRequest(user_id="u1", kind="k", idempotency_key="dup")
    again = (await stub.CreateJob(request, timeout=WAIT)).job

    assert (refused_code, refused.output) == (
        1,
        [
            f"jobstate serve: the database {where(database_url)} has jobstate's tables but no "
            "schema version (made by release 0.1.0): run `jobstate migrate` first (or start "
            "serve with --migrate)"
        ],
    )
    assert untouched == (["none"], KEYS_BEFORE)
    assert (code, err) == (0, [])
    assert out == [
        f"jobstate migrate: {where(database_url)}: adopted a database made before schema "
        "versions (release 0.1.0): 2 duplicate idempotency key(s) given up, keys made unique, "
        f"stamped {migrate.BASELINE}; now at revision {HEAD}"
    ]
    assert await keys_of(database_url) == KEYS_AFTER
    keyed = [ix for ix in indexes if ix["column_names"] == ["user_id", "idempotency_key"]]
    assert [(ix["name"], bool(ix["unique"])) for ix in keyed] == [
        ("ux_jobs_user_idempotency", True)
    ]
    assert await versions(database_url) == [HEAD]
    assert again.job_id == "c-newest"


async def test_two_replicas_starting_together_with_migrate_migrate_once(
    postgres_url: str, spawn: SpawnFactory
) -> None:
    await make_v010_database(postgres_url)
    # Hold the schema lock ourselves until both replicas wait for it: then they really start
    # together, and only the lock decides who migrates.
    holder = await asyncpg.connect(asyncpg_dsn(postgres_url))
    try:
        await holder.execute("SELECT pg_advisory_lock($1)", migrate.SCHEMA_LOCK)
        url = ("--database-url", postgres_url)
        replicas = [  # the flag, and the variable
            await spawn(*LISTEN, *url, "--migrate", listening=False),
            await spawn(*LISTEN, *url, env={"JOBSTATE_MIGRATE": "1"}, listening=False),
        ]

        async def both_wait() -> bool:
            waiting: int = await holder.fetchval(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                " AND objid = $1 AND database = (SELECT oid FROM pg_database"
                " WHERE datname = current_database())",
                migrate.SCHEMA_LOCK,
            )
            return waiting == 2

        await eventually(both_wait, within=PROCESS_WAIT, what="both replicas to wait for the lock")
        await holder.execute("SELECT pg_advisory_unlock($1)", migrate.SCHEMA_LOCK)
        for replica in replicas:
            await replica.wait_listening()
    finally:
        await holder.close()

    messages = sorted(m for r in replicas for m in schema_messages(r.output))
    assert messages == [
        "database schema: adopted a database made before schema versions (release 0.1.0): 2 "
        f"duplicate idempotency key(s) given up, keys made unique, stamped {migrate.BASELINE}; "
        f"now at revision {HEAD}",
        f"database schema: already at revision {HEAD}, this release's head; nothing to do",
    ]
    assert await versions(postgres_url) == [HEAD]
    assert await keys_of(postgres_url) == KEYS_AFTER


async def test_migrate_sql_prints_the_sql_and_touches_nothing(
    database_url: str, spawn: SpawnFactory
) -> None:
    # For a DBA: the SQL in the URL's dialect, nothing connected. Applied by hand, it gives a
    # database that a plain `serve` accepts as current.
    code, sql, err = await jobstate("migrate", "--sql", "--database-url", database_url)
    sqlite_file = make_url(database_url).database or ""
    if database_url.startswith("sqlite"):
        nothing_made = not await asyncio.to_thread(os.path.exists, sqlite_file)
    else:
        nothing_made = not await table_names(database_url)
    script = "\n".join(sql)
    if database_url.startswith("sqlite"):
        with sqlite3.connect(sqlite_file) as db:
            db.executescript(script)
    else:
        conn = await asyncpg.connect(asyncpg_dsn(database_url))
        try:
            await conn.execute(script)
        finally:
            await conn.close()
    serve = await spawn(*LISTEN, "--database-url", database_url)

    assert (code, err, nothing_made) == (0, [], True)
    assert "CREATE TABLE jobs (" in script and "CREATE TABLE job_events (" in script
    assert f"INSERT INTO alembic_version (version_num) VALUES ('{HEAD}')" in script
    assert schema_messages(serve.output) == [
        f"database schema: already at revision {HEAD}, this release's head; nothing to do"
    ]


async def test_a_database_with_some_of_the_tables_and_no_version_is_refused(
    database_url: str,
) -> None:
    # Not empty, not something a release made: nothing is guessed, nothing is changed.
    async with connection(database_url) as conn:
        await conn.run_sync(V010_JOBS.create)
    migrated = await jobstate("migrate", "--database-url", database_url)

    assert migrated == (
        1,
        [],
        [
            f"jobstate migrate: the database {where(database_url)} has jobstate's table jobs but "
            "not job_events, and no schema version: not a database jobstate made; restore a "
            "backup or use an empty database"
        ],
    )
    assert await table_names(database_url) == {"jobs"}


async def test_migrate_cannot_reach_the_database_in_one_line() -> None:
    url = "postgresql+asyncpg://postgres@127.0.0.1:1/nowhere"
    code, out, err = await jobstate("migrate", "--database-url", url)

    assert (code, out, len(err)) == (1, [], 1)
    assert err[0].startswith(f"jobstate migrate: cannot open the job store {url}: ")


async def test_jobstate_migrate_must_be_1_or_0(sqlite_url: str) -> None:
    code, out, err = await jobstate("serve", "--database-url", sqlite_url, JOBSTATE_MIGRATE="yes")

    assert (code, out, err) == (
        2,
        [],
        ["jobstate serve: JOBSTATE_MIGRATE must be 1 or 0, got 'yes'"],
    )


async def test_dev_migrates_the_database_it_is_given(tmp_path: Path) -> None:
    # `jobstate dev` runs the service in process as `serve --migrate` would.
    (tmp_path / "data").mkdir()
    url = f"sqlite+aiosqlite:///{tmp_path / 'data' / 'jobstate.db'}"  # dev's default, in cwd
    await make_v010_database(url)
    env = {k: v for k, v in environ().items() if not k.startswith("GATEWAY_")}
    env.pop("ENVIRONMENT")
    env |= {"JOBSTATE_LISTEN": "127.0.0.1:0", "GATEWAY_LISTEN": "127.0.0.1:0"}
    dev = await asyncio.create_subprocess_exec(
        str(JOBSTATE),
        "dev",
        cwd=tmp_path,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert dev.stdout is not None
    printed: list[str] = []
    try:
        while not printed or "open http" not in printed[-1]:
            line = await asyncio.wait_for(dev.stdout.readline(), PROCESS_WAIT)
            assert line, f"jobstate dev exited early: {printed}"
            printed.append(line.decode())
    finally:
        with contextlib.suppress(ProcessLookupError):  # it may have exited by itself
            dev.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(dev.wait(), PROCESS_WAIT)

    assert code == 0
    assert (await versions(url), await keys_of(url)) == ([HEAD], KEYS_AFTER)


async def test_the_alembic_command_writes_revisions_from_schema_py(tmp_path: Path) -> None:
    # alembic.ini (for developers) reaches the packaged revisions and a scratch SQLite file,
    # and autogenerate finds nothing to add: head is schema.py.
    ini = (REPO / "alembic.ini").read_text()
    (tmp_path / "alembic.ini").write_text(
        ini.replace("%(here)s/jobstate/", f"{REPO}/jobstate/").replace(".venv", f"{REPO}/.venv")
    )
    (tmp_path / "data").mkdir()
    alembic = (str(Path(sys.executable).with_name("alembic")), "-c", str(tmp_path / "alembic.ini"))
    upgraded = await jobstate("upgrade", "head", program=alembic)
    checked = await jobstate("check", program=alembic)

    assert (upgraded[0], checked) == (0, (0, ["No new upgrade operations detected."], []))
    assert await versions(f"sqlite+aiosqlite:///{tmp_path / 'data' / 'alembic-scratch.db'}") == [
        HEAD
    ]

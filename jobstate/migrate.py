"""The schema's version: Alembic revisions (`migrations/versions/`) applied under a lock.

What a database can be, and what happens to it:
- empty (none of jobstate's tables): created at head, by `serve` too (nothing to lose, nothing
  to be behind), so a fresh machine or a fresh set of replicas just starts;
- made before schema versions (release 0.1.0: tables, no version): adopted when migrating —
  duplicate idempotency keys given up, their index made unique (the baseline revision), the
  version stamped — then upgraded;
- at an older revision: upgraded when migrating;
- at head: left alone;
- at a revision this release does not know (a newer release migrated it): refused; releases
  never downgrade.
`serve` without --migrate refuses the "when migrating" cases with `SchemaNotCurrent`.

Everything runs in the caller's one transaction, so an upgrade commits or rolls back as a
whole; on PostgreSQL under an advisory lock, so replicas starting together with --migrate take
turns: the first migrates, the others find head. (SQLite's writer holds `BEGIN IMMEDIATE`.)
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import (
    Connection,
    and_,
    column,
    exists,
    inspect,
    or_,
    select,
    table,
    text,
    update,
)

SCHEMA_LOCK = 0x6A6F6273  # "jobs": an arbitrary, fixed advisory lock key
BASELINE = "0001"
_SCRIPTS = Path(__file__).with_name("migrations")
_TABLES = frozenset({"jobs", "job_events"})
_VERSION = table("alembic_version", column("version_num"))  # Alembic's own, one row
_HOW = "run `jobstate migrate` first (or start serve with --migrate)"


class SchemaNotCurrent(Exception):
    """The database is not at this release's head and will not be made so here; the message
    is one line saying what was found and what to do."""


@dataclass(frozen=True, slots=True)
class Migration:
    """What `prepare_schema` found (`before`: a revision, "empty" or "unversioned") and did."""

    before: str
    after: str
    keys_given_up: int = 0

    def __str__(self) -> str:
        if self.before == "empty":
            return f"created the schema at revision {self.after} (the database was empty)"
        if self.before == "unversioned":
            return (
                f"adopted a database made before schema versions (release 0.1.0): "
                f"{self.keys_given_up} duplicate idempotency key(s) given up, keys made "
                f"unique, stamped {BASELINE}; now at revision {self.after}"
            )
        if self.before == self.after:
            return f"already at revision {self.after}, this release's head; nothing to do"
        return f"upgraded from revision {self.before} to {self.after}"


def _config(**attributes: Any) -> Config:
    # In code, not alembic.ini: the scripts ship inside the package, found from here.
    config = Config()
    config.set_main_option("script_location", str(_SCRIPTS).replace("%", "%%"))
    config.attributes.update(attributes)
    return config


@functools.cache
def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(_config())


def head() -> str:
    """This release's newest revision."""
    revision = _scripts().get_current_head()
    assert revision is not None, "the package ships its revisions"
    return revision


def _found(conn: Connection) -> str:
    """The database's revision, or "empty" or "unversioned"."""
    tables = set(inspect(conn).get_table_names())
    revision: str | None = None
    if _VERSION.name in tables:
        # Read here, not through Alembic's MigrationContext, which logs two lines each time.
        revision = conn.scalar(select(_VERSION.c.version_num))
    if revision is not None:
        return revision
    ours = tables & _TABLES
    if not ours:
        return "empty"
    if ours != _TABLES:
        raise SchemaNotCurrent(
            f"has jobstate's table {', '.join(sorted(ours))} but not "
            f"{', '.join(sorted(_TABLES - ours))}, and no schema version: not a database "
            "jobstate made; restore a backup or use an empty database"
        )
    return "unversioned"


def prepare_schema(conn: Connection, migrate: bool) -> Migration:
    """Bring the database to head if it is empty or `migrate` is set, else check it is there.

    Takes the schema lock (PostgreSQL) for the caller's transaction. Raises SchemaNotCurrent
    for a database it leaves behind (without `migrate`) or cannot upgrade (ahead of head).
    """
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK})
    found, target = _found(conn), head()
    if found == target:
        return Migration(found, target)
    if found not in ("empty", "unversioned") and not _known(found):
        raise SchemaNotCurrent(
            f"is at schema revision {found}, which this release does not know (it knows up "
            f"to {target}): a newer release migrated it; run that release, not this one"
        )
    if not (migrate or found == "empty"):
        what = (
            "has jobstate's tables but no schema version (made by release 0.1.0)"
            if found == "unversioned"
            else f"is at schema revision {found}, behind this release's {target}"
        )
        raise SchemaNotCurrent(f"{what}: {_HOW}")
    config = _config(connection=conn)
    given_up = 0
    if found == "unversioned":
        given_up = _unique_idempotency_keys(conn)
        command.stamp(config, BASELINE)
    command.upgrade(config, "head")
    return Migration(found, target, given_up)


def _known(revision: str) -> bool:
    return any(script.revision == revision for script in _scripts().walk_revisions())


# Release 0.1.0's `jobs` as far as adopting it needs: a frozen shape, not `schema.jobs`, which
# follows head.
_V010_JOBS = table(
    "jobs", column("job_id"), column("user_id"), column("idempotency_key"), column("created_at")
)


def _unique_idempotency_keys(conn: Connection) -> int:
    """Release 0.1.0 indexed (user_id, idempotency_key) without UNIQUE, so two replicas could
    each make a job for one key: the newest such job keeps the key, the others give it up.
    Returns how many gave it up. (Builds made after 0.1.0 but before schema versions already
    have the unique index: nothing to do.)"""
    if "ux_jobs_user_idempotency" in {index["name"] for index in inspect(conn).get_indexes("jobs")}:
        return 0
    jobs, newer = _V010_JOBS, _V010_JOBS.alias("newer")
    given_up = conn.execute(
        update(jobs)
        .where(
            jobs.c.idempotency_key.is_not(None),
            exists().where(
                newer.c.user_id == jobs.c.user_id,
                newer.c.idempotency_key == jobs.c.idempotency_key,
                or_(
                    newer.c.created_at > jobs.c.created_at,
                    and_(newer.c.created_at == jobs.c.created_at, newer.c.job_id > jobs.c.job_id),
                ),
            ),
        )
        .values(idempotency_key=None)
    ).rowcount
    conn.execute(text("DROP INDEX IF EXISTS ix_jobs_user_idempotency"))
    conn.execute(
        text("CREATE UNIQUE INDEX ux_jobs_user_idempotency ON jobs (user_id, idempotency_key)")
    )
    return given_up


def write_sql(url: str, out: TextIO, since: str = "") -> None:
    """The SQL that upgrades a database of `url`'s dialect to head, written to `out` without
    connecting: from empty, or from revision `since`. Raises SchemaNotCurrent for a revision
    this release does not know."""
    if since and not _known(since):
        raise SchemaNotCurrent(f"revision {since} is not one this release knows")
    config = _config(url=url)
    config.output_buffer = out
    command.upgrade(config, f"{since}:head" if since else "head", sql=True)

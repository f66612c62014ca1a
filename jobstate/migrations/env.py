"""Alembic's environment: how the revisions in `versions/` reach a database.

`jobstate.migrate` runs it with, in `config.attributes`, either
- `connection`: online, on the caller's connection and inside its transaction (which holds
  the schema lock), so an upgrade commits or rolls back as a whole; or
- `url`: offline (`jobstate migrate --sql`): SQL for that URL's dialect, nothing connected.
The `alembic` command (alembic.ini at the repository root, for writing revisions) runs it
against the synchronous SQLite URL that file names.
"""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy import Connection, create_engine

from jobstate.schema import metadata

config = context.config


def _run(**options: Any) -> None:
    # Batch mode: SQLite cannot ALTER most things, so a revision that changes a table rewrites
    # it there (copy and rename); PostgreSQL gets plain ALTERs from the same revision.
    context.configure(target_metadata=metadata, render_as_batch=True, **options)
    with context.begin_transaction():
        context.run_migrations()


def _online(connection: Connection) -> None:
    _run(connection=connection)


if context.is_offline_mode():
    _run(
        url=config.attributes.get("url") or config.get_main_option("sqlalchemy.url"),
        literal_binds=True,
    )
elif "connection" in config.attributes:
    _online(config.attributes["connection"])
else:
    engine = create_engine(config.get_main_option("sqlalchemy.url", ""))
    try:
        with engine.begin() as connection:
            _online(connection)
    finally:
        engine.dispose()

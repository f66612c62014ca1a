"""`jobstate migrate`: bring the database's schema to this release's head, or print the SQL.

Same configuration as `serve` (JOBSTATE_DATABASE_URL, --database-url). Online it runs in one
transaction under the schema lock (see `jobstate.migrate`), so it is safe beside running
replicas and other `migrate`s. `--sql` connects to nothing. Exit codes: 0 done, 1 it could not
(the database is unreachable, or a newer release migrated it), 2 bad configuration or usage.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Mapping

from sqlalchemy.engine import make_url

from jobstate.config import ConfigError, ServiceConfig
from jobstate.database import open_database
from jobstate.errors import Unavailable
from jobstate.migrate import Migration, SchemaNotCurrent, prepare_schema, write_sql


async def _upgrade(config: ServiceConfig) -> Migration:
    db = open_database(config.database_url, sqlite_synchronous=config.sqlite_synchronous)
    try:
        return await db.write(prepare_schema, True)
    finally:
        await db.close()


def _fail(message: str, code: int) -> int:
    print(f"jobstate migrate: {message}", file=sys.stderr)
    return code


def main(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    try:
        config = ServiceConfig.from_env(environ, database_url=args.database_url)
    except ConfigError as exc:
        return _fail(str(exc), 2)
    if args.sql:
        try:
            write_sql(config.database_url, sys.stdout, args.since)
        except SchemaNotCurrent as exc:
            return _fail(f"--from: {exc}", 2)
        return 0
    if args.since:
        return _fail("--from goes with --sql", 2)
    where = make_url(config.database_url).render_as_string(hide_password=True)
    try:
        migration = asyncio.run(_upgrade(config))
    except Unavailable as exc:
        return _fail(f"cannot open the job store {where}: {exc.cause or exc}", 1)
    except SchemaNotCurrent as exc:
        return _fail(f"the database {where} {exc}", 1)
    print(f"jobstate migrate: {where}: {migration}")
    return 0

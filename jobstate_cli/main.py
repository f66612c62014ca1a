"""The `jobstate` console script: serve, migrate, gateway, reconcile, dev, jobs."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jobstate", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the gRPC job state service")
    serve.add_argument("--listen", help="host:port (env JOBSTATE_LISTEN, default 127.0.0.1:50051)")
    serve.add_argument("--database-url", help="SQLAlchemy async URL (env JOBSTATE_DATABASE_URL)")
    serve.add_argument("--tls-cert", help="PEM certificate chain for TLS (env JOBSTATE_TLS_CERT)")
    serve.add_argument("--tls-key", help="PEM private key for TLS (env JOBSTATE_TLS_KEY)")
    serve.add_argument(
        "--migrate",
        action="store_true",
        help="upgrade a database that is behind first (env JOBSTATE_MIGRATE=1); without it, "
        "serve refuses one (an empty database is created either way)",
    )

    migrate = sub.add_parser("migrate", help="upgrade the database schema to this release's")
    migrate.add_argument("--database-url", help="SQLAlchemy async URL (env JOBSTATE_DATABASE_URL)")
    migrate.add_argument(
        "--sql",
        action="store_true",
        help="print the SQL for the URL's dialect instead (from an empty database, or --from)",
    )
    migrate.add_argument(
        "--from", dest="since", metavar="REVISION", default="", help="with --sql: start here"
    )

    gateway = sub.add_parser("gateway", help="run the HTTP/WebSocket gateway")
    gateway.add_argument("--listen", help="host:port (env GATEWAY_LISTEN, default 127.0.0.1:8787)")
    gateway.add_argument("--jobstate-target", help="gRPC target (env JOBSTATE_TARGET)")

    sub.add_parser("reconcile", help="settle jobs that went quiet from RunPod's /status")
    sub.add_parser("dev", help="service + gateway + simulated worker on SQLite under ./data")
    from jobstate_cli import jobs

    jobs.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    environ = dict(os.environ)
    if args.command == "serve":
        from jobstate.server import main as serve_main

        return serve_main(args, environ)
    if args.command == "migrate":
        from jobstate.migrate_command import main as migrate_main

        return migrate_main(args, environ)
    if args.command == "gateway":
        from gateway.main import main as gateway_main

        return gateway_main(args, environ)
    if args.command == "reconcile":
        from gateway.reconcile import main as reconcile_main

        return reconcile_main(environ)
    if args.command == "jobs":
        from jobstate_cli.jobs import main as jobs_main

        return jobs_main(args, environ)
    from jobstate_cli.dev import main as dev_main

    return dev_main(environ)


if __name__ == "__main__":
    sys.exit(main())

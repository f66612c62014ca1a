"""The gateway reaches the service only through `jobstate.client`: no module of `gateway/`
imports grpc, protobuf or the generated stubs, or any part of the service itself. Read from
the source (AST), since `jobstate.client` itself imports grpc at run time."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

GATEWAY = Path(__file__).resolve().parents[2] / "gateway"
# What of jobstate the gateway may use: the client, its records and errors, the limits both
# sides of the wire share, and the process helpers every command uses.
ALLOWED = {
    "jobstate",
    "jobstate.client",
    "jobstate.config",
    "jobstate.domain",
    "jobstate.errors",
    "jobstate.logs",
    "jobstate.loop",
    "jobstate.wire",
}
FORBIDDEN_ROOTS = ("grpc", "grpc_health", "grpc_reflection", "google")


def imported(path: Path) -> set[str]:
    """Every module `path` imports, at any depth (`from a import b` counts as `a`)."""
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            modules |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            modules.add(node.module)
    return modules


def test_no_gateway_module_reaches_the_service_but_through_its_client() -> None:
    found = {path.name: imported(path) for path in sorted(GATEWAY.glob("*.py"))}
    assert "jobstate.client" in found["app.py"] | found["upstream.py"]  # the scan works
    wrong = {
        name: sorted(
            module
            for module in modules
            if module.split(".")[0] in FORBIDDEN_ROOTS
            or (module.split(".")[0] == "jobstate" and module not in ALLOWED)
        )
        for name, modules in found.items()
    }
    assert {name: modules for name, modules in wrong.items() if modules} == {}


def test_the_service_never_imports_the_gateway_or_the_command() -> None:
    service = GATEWAY.parent / "jobstate"
    found = {str(path.relative_to(service)): imported(path) for path in service.rglob("*.py")}
    assert "jobstate.domain" in found["service.py"]  # the scan works
    wrong = {
        name: sorted(m for m in modules if m.split(".")[0] in ("gateway", "jobstate_cli"))
        for name, modules in found.items()
    }
    assert {name: modules for name, modules in wrong.items() if modules} == {}


def test_importing_the_server_loads_nothing_of_the_gateway() -> None:
    probe = (
        "import sys, jobstate.server, jobstate.client; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('gateway', 'jobstate_cli')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=GATEWAY.parent,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "[]"

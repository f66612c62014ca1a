"""The committed stubs in jobstate/v1 are exactly what `make proto` generates from the .proto,
and the versions that generated them agree with pyproject's pins and lower bounds."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
STUBS = ROOT / "jobstate" / "v1"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi")


def _proto_recipe() -> list[str]:
    """The Makefile's `proto` recipe as one argv (continuation lines joined)."""
    lines = (ROOT / "Makefile").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(r"^proto\s*:", line))
    recipe: list[str] = []
    for line in lines[start + 1 :]:
        if not line.startswith("\t"):
            break
        recipe.append(line.strip())
    command = " ".join(part.removesuffix("\\").strip() for part in recipe)
    assert command, "the Makefile has an empty `proto` recipe"
    return shlex.split(command)


def _pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _requirements(group: list[str]) -> dict[str, Requirement]:
    reqs = [Requirement(spec) for spec in group]
    return {req.name.lower(): req for req in reqs}


def _lower_bound(req: Requirement) -> Version:
    bounds = [Version(s.version) for s in req.specifier if s.operator in (">=", "==", "~=")]
    assert bounds, f"{req} has no lower bound"
    return max(bounds)


def test_stubs_match_the_proto(tmp_path: Path) -> None:
    argv = _proto_recipe()
    assert argv[:3] == ["$(BIN)/python", "-m", "grpc_tools.protoc"], argv
    # The mypy-protobuf plugins are scripts beside this interpreter, as they are in $(BIN).
    bin_dir = str(Path(sys.executable).parent)
    argv = [sys.executable, *(a.replace("$(BIN)", bin_dir) for a in argv[1:])]
    # Every output option writes into `.` in the Makefile; redirect all of them to tmp_path.
    outs = [a for a in argv if re.fullmatch(r"--\w+_out=\.", a)]
    assert {a.split("=")[0] for a in outs} == {
        "--python_out",
        "--grpc_python_out",
        "--mypy_out",
        "--mypy_grpc_out",
    }
    argv = [f"{a[:-1]}{tmp_path}" if a in outs else a for a in argv]

    subprocess.run(argv, cwd=ROOT, check=True, capture_output=True)

    generated = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    committed = sorted(
        p.relative_to(ROOT) for p in STUBS.iterdir() if p.name.endswith(GENERATED_SUFFIXES)
    )
    assert generated == committed
    stale = [str(p) for p in generated if (tmp_path / p).read_bytes() != (ROOT / p).read_bytes()]
    assert stale == [], "stale stubs: run `make proto` and commit the result"


@pytest.mark.parametrize("generator", ["grpcio-tools", "mypy-protobuf"])
def test_generator_pin_is_the_installed_version(generator: str) -> None:
    # Another version of either generator writes other bytes: the stale check would flap.
    dev = _requirements(_pyproject()["project"]["optional-dependencies"]["dev"])
    pins = [s for s in dev[generator].specifier if s.operator == "=="]
    assert [str(s) for s in pins] == [f"=={metadata.version(generator)}"]


def _generated_versions() -> dict[str, Version]:
    pb2 = (STUBS / "jobstate_pb2.py").read_text()
    grpc_py = (STUBS / "jobstate_pb2_grpc.py").read_text()
    protobuf = re.search(r"^# Protobuf Python Version: (\S+)$", pb2, re.MULTILINE)
    grpc = re.search(r"^GRPC_GENERATED_VERSION = '([^']+)'$", grpc_py, re.MULTILINE)
    assert protobuf and grpc, "generated stubs no longer carry their generator versions"
    return {"protobuf": Version(protobuf[1]), "grpcio": Version(grpc[1])}


@pytest.mark.parametrize("package", ["protobuf", "grpcio"])
def test_runtime_lower_bounds_cover_the_generating_versions(package: str) -> None:
    runtime = _requirements(_pyproject()["project"]["dependencies"])
    assert _lower_bound(runtime[package]) >= _generated_versions()[package]


def test_generating_versions_are_the_installed_tools() -> None:
    # grpcio-tools bundles the protoc that wrote the stubs: its version is the stubs' version.
    assert _generated_versions()["grpcio"] == Version(metadata.version("grpcio-tools"))

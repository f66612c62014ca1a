"""The wheel `pip install .` builds (the Dockerfile's install) carries every file the package
needs at run time that is not a Python module of a regular package: Alembic's scripts."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "README.md", "jobstate", "jobstate_cli", "gateway")


def test_the_wheel_ships_the_migration_scripts(tmp_path: Path) -> None:
    pytest.importorskip("setuptools", reason="builds the wheel with this venv's setuptools")
    tree = tmp_path / "src"
    tree.mkdir()
    for name in SOURCES:  # a copy: building in place would leave build/ in the repository
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, tree / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, tree / name)
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
    subprocess.run(
        [*pip_wheel, "-w", str(tmp_path / "dist"), str(tree)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = (tmp_path / "dist").glob("jobstate-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        shipped = set(archive.namelist())
    scripts = REPO / "jobstate" / "migrations"
    needed = {
        path.relative_to(REPO).as_posix()
        for path in scripts.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }

    assert {"jobstate/migrations/env.py", "jobstate/migrations/script.py.mako"} <= needed
    assert needed - shipped == set()

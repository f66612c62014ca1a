"""`jobstate serve` on a SQLite path it cannot use exits at once with one clear line.

The tests run as root, so "unwritable" is made with paths no permission can fix: a directory
that would have to be created under a regular file, and a database path that is a directory.
"""

from __future__ import annotations

from pathlib import Path

from support.processes import run_serve


def _serve(database: Path) -> tuple[int, list[str]]:
    result = run_serve(
        "--listen", "127.0.0.1:0", "--database-url", f"sqlite+aiosqlite:///{database}",
        env={"ENVIRONMENT": "development"},
    )  # fmt: skip
    return result.returncode, result.stderr.splitlines()


def test_directory_that_cannot_be_created(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory\n")

    code, lines = _serve(blocker / "db.sqlite")

    assert code == 1
    assert lines == [
        f"jobstate serve: cannot create the database directory {blocker}: "
        f"[Errno 17] File exists: '{blocker}'"
    ]
    assert blocker.read_text() == "not a directory\n"  # nothing written over it


def test_database_path_that_is_a_directory(tmp_path: Path) -> None:
    database = tmp_path / "db.sqlite"
    database.mkdir()

    code, lines = _serve(database)

    assert code == 1
    assert len(lines) == 1, lines
    assert lines[0].startswith("jobstate serve: ") and str(database) in lines[0], lines

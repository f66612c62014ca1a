"""README against the code: the variable tables and the WebSocket close-code table.

- Every environment variable the code reads (names collected from jobstate/, gateway/ and
  jobstate_cli/ the way tests/test_compose.py collects them) is in a README variable table,
  and every variable a README table names is read. DESIGN.md's variable table (../shared,
  when present) may only name variables the code reads.
- Every close code the gateway uses (its own constants and literals, and those aiohttp's
  WebSocket reader closes a socket with for a broken frame) is a row of README's close-code
  table, and every row is a code the gateway uses.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import aiohttp
import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DESIGN = REPO.parent / "shared" / "DESIGN.md"
SOURCES = sorted(
    path
    for package in ("jobstate", "gateway", "jobstate_cli")
    for path in (REPO / package).rglob("*.py")
    if "v1" not in path.relative_to(REPO).parts
)
# A variable read from an environment mapping: environ.get("X"), env["X"],
# _seconds(env, "X", ...), _switch(env, "X"), os.environ.get("X").
_READ = re.compile(r"\b(?:environ|env)\b[^\"\n]*\"([A-Z][A-Z0-9_]{2,})\"")
_NAME = re.compile(r"`([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+|ENVIRONMENT)`")
# Close codes in the gateway: CLOSE_X = 4401, close(code=1001, ...), finish(1000),
# _close_all(1000, ...), WSCloseCode.NAME.
_CLOSE_CONSTANT = re.compile(r"\bCLOSE_\w+\s*(?::\s*\w+\s*)?=\s*(\d{4})\b")
_CLOSE_CALL = re.compile(r"\b(?:close|finish|_close_all)\(\s*(?:code\s*=\s*)?(\d{4})\b")
_CLOSE_ENUM = re.compile(r"\bWSCloseCode\.([A-Z_]+)")


def read_variables() -> set[str]:
    return {name for path in SOURCES for name in _READ.findall(path.read_text())}


def tables(text: str, first_header: str) -> list[list[str]]:
    """The first cells of the rows of every markdown table whose header starts with
    `first_header`."""
    found: list[list[str]] = []
    rows: list[str] | None = None
    for line in text.splitlines():
        cells = (
            [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("|") else []
        )
        if not cells:
            rows = None
        elif rows is None and cells[0] == first_header:
            rows = []
            found.append(rows)
        elif rows is not None and not set(cells[0]) <= {"-", ":"}:
            rows.append(cells[0])
    return found


def documented_variables(path: Path) -> set[str]:
    return {
        name
        for table in tables(path.read_text(), "variable")
        for cell in table
        for name in _NAME.findall(cell)
    }


def test_every_variable_the_code_reads_is_in_a_readme_table_and_vice_versa() -> None:
    read = read_variables()
    assert len(read) > 30  # the scan works
    documented = documented_variables(README)
    assert {"undocumented": read - documented, "not read": documented - read} == {
        "undocumented": set(),
        "not read": set(),
    }


def test_designs_variable_table_names_only_variables_the_code_reads() -> None:
    if not DESIGN.is_file():
        pytest.skip(f"{DESIGN} is not here (it is shared beside the repository)")
    assert documented_variables(DESIGN) - read_variables() == set()


def aiohttp_reader_codes() -> set[int]:
    """Codes aiohttp's WebSocket reader closes a socket with (protocol errors, bad UTF-8,
    frames over `max_msg_size`)."""
    spec = importlib.util.find_spec("aiohttp._websocket.reader_py")
    assert spec is not None and spec.origin is not None
    names = set(_CLOSE_ENUM.findall(Path(spec.origin).read_text()))
    return {int(aiohttp.WSCloseCode[name]) for name in names}


def used_close_codes() -> set[int]:
    codes: set[int] = set()
    for path in (REPO / "gateway").glob("*.py"):
        text = path.read_text()
        codes |= {int(c) for c in _CLOSE_CONSTANT.findall(text) + _CLOSE_CALL.findall(text)}
        codes |= {int(aiohttp.WSCloseCode[name]) for name in _CLOSE_ENUM.findall(text)}
    return codes | aiohttp_reader_codes()


def test_every_close_code_the_gateway_uses_is_in_the_readme_table_and_vice_versa() -> None:
    (table,) = tables(README.read_text(), "code")
    documented = {int(cell) for cell in table}
    used = used_close_codes()
    assert {1000, 1001, 1009, 4401, 4404} <= used  # the scan works
    assert {"undocumented": used - documented, "not used": documented - used} == {
        "undocumented": set(),
        "not used": set(),
    }

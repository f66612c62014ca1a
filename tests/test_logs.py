"""Log set-up: level names in any case, one clear line for an unknown level."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from jobstate import logs
from jobstate.config import ConfigError


@pytest.fixture(autouse=True)
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.parametrize(("given", "level"), [("info", logging.INFO), ("Warning", logging.WARNING)])
def test_level_names_are_case_insensitive(given: str, level: int) -> None:
    logs.setup(given)
    assert logging.getLogger().level == level


def test_unknown_level_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError) as error:
        logs.setup("loud")
    assert str(error.value) == (
        "JOBSTATE_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, got 'LOUD'"
    )

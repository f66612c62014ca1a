"""The NOTIFY payload: what a writer encodes, the relay decodes; an older release's form too."""

from __future__ import annotations

import pytest

from jobstate import notify


@pytest.mark.parametrize(
    ("payload", "decoded"),
    [
        (notify.encode("job-1", 7, "user"), ("job-1", 7, "user")),
        (notify.encode("j", 1, "a:b:c ü"), ("j", 1, "a:b:c ü")),  # a user id may hold colons
        ("job_2:12", ("job_2", 12, "")),  # a release before WatchJobs: the user is unknown
    ],
)
def test_payloads_decode(payload: str, decoded: tuple[str, int, str]) -> None:
    assert notify.decode(payload) == decoded


@pytest.mark.parametrize("payload", ["", "job", ":3:u", "job:x:u", "job::u"])
def test_payloads_no_writer_made_are_value_errors(payload: str) -> None:
    with pytest.raises(ValueError):
        notify.decode(payload)

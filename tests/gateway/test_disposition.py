"""The download header: the key's file name, never anything that could break the header."""

from __future__ import annotations

import pytest

from gateway.disposition import attachment


@pytest.mark.parametrize(
    ("key", "header"),
    [
        ("exports/u1/job.mp4", 'attachment; filename="job.mp4"'),
        ("job.mp4", 'attachment; filename="job.mp4"'),
        (
            'exports/a "b"\r\nX: y.mp4',
            'attachment; filename="a__b___X__y.mp4"; '
            "filename*=UTF-8''a%20%22b%22%0D%0AX%3A%20y.mp4",
        ),
        (
            "exports/clip \u2013 3.mp4",
            "attachment; filename=\"clip___3.mp4\"; filename*=UTF-8''clip%20%E2%80%93%203.mp4",
        ),
        ("exports/", 'attachment; filename="exports"'),
        ("exports/...", "attachment; filename=\"download\"; filename*=UTF-8''..."),
    ],
)
def test_attachment(key: str, header: str) -> None:
    assert attachment(key) == header

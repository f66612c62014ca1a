"""Tokens that are not even text a token could be: non-ASCII, or bytes that are not UTF-8.

Each one is a plain 401 (or close 4401) through a real gateway and changes nothing; none may
reach a comparison that raises (`hmac.compare_digest` refuses non-ASCII `str`).
"""

from __future__ import annotations

import pytest
from gwstack import Stack
from yarl import URL

PROGRESS = {"status": "progress", "progress": 50}
# A valid token is 64 hex digits; these have that length but are not ASCII.
NON_ASCII = {
    "latin": "é" * 64,
    "hex-but-last": "0" * 63 + "é",
    "ligature": "ﬀ" * 32,
    "arabic-digits": "\u0660" * 64,
    "emoji": "🙂",
}


@pytest.mark.parametrize("token", NON_ASCII.values(), ids=NON_ASCII.keys())
async def test_a_non_ascii_callback_token_is_401_and_changes_nothing(
    stack: Stack, token: str
) -> None:
    job_id = await stack.start_job()
    before = await stack.get(f"/api/jobs/{job_id}")
    got, answer = await stack.callback(job_id, PROGRESS, token)
    assert (got, answer) == (401, {"error": "missing or invalid callback token"})
    assert await stack.get(f"/api/jobs/{job_id}") == before


async def test_a_callback_token_that_is_not_utf8_is_401(stack: Stack) -> None:
    job_id = await stack.start_job()
    before = await stack.get(f"/api/jobs/{job_id}")
    url = URL(f"{stack.url}/api/jobs/{job_id}/do?token=%FF%FE%C3", encoded=True)
    async with stack.http.post(url, json=PROGRESS) as response:
        assert (response.status, await response.json()) == (
            401,
            {"error": "missing or invalid callback token"},
        )
    assert await stack.get(f"/api/jobs/{job_id}") == before


async def test_a_non_ascii_user_token_is_401_and_4401(stack: Stack) -> None:
    job_id = await stack.start_job()
    url = URL(f"{stack.url}/api/jobs/{job_id}", encoded=True)
    headers = {"Authorization": "Bearer %s" % ("é" * 40)}
    async with stack.http.get(url, headers=headers) as response:
        assert response.status == 401
    ws = await stack.http.ws_connect(
        f"{stack.url}/api/jobs/{job_id}/ws", params={"token": "é" * 40}
    )
    await ws.receive()
    assert ws.close_code == 4401

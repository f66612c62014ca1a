"""A user token verified once is remembered, and its expiry still holds on every later use."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest

from gateway.auth import VERIFIED_TOKENS, Unauthorized, UserAuth

SECRET = "verified-tokens-secret-0123456789abcdef"


def token(**claims: Any) -> str:
    return jwt.encode({"sub": "u1", **claims}, SECRET)


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def test_a_remembered_token_is_refused_once_it_expires() -> None:
    clock = Clock()
    auth = UserAuth(SECRET, clock=clock)
    expiring = token(exp=int(clock.now) + 60)
    assert auth.verify(expiring) == "u1"
    assert auth.verify(expiring) == "u1"  # remembered
    clock.now += 60
    with pytest.raises(Unauthorized, match="token expired"):
        auth.verify(expiring)
    assert expiring not in auth._verified  # forgotten: a later use is checked in full again


def test_a_token_without_exp_stays_valid_and_a_changed_byte_is_checked_afresh() -> None:
    auth = UserAuth(SECRET)
    forever = token()
    assert auth.verify(forever) == "u1"
    assert auth.verify(forever) == "u1"
    header, _, signature = forever.split(".")
    forged_payload = jwt.utils.base64url_encode(b'{"sub":"u2"}').decode()
    flipped = signature[:10] + ("B" if signature[10] == "A" else "A") + signature[11:]
    for forged in (
        f"{header}.{forged_payload}.{signature}",
        f"{forever[: -len(signature)]}{flipped}",
    ):
        with pytest.raises(Unauthorized):
            auth.verify(forged)


def test_refused_tokens_are_not_remembered_and_memory_is_bounded() -> None:
    auth = UserAuth(SECRET)
    wrong_key = jwt.encode({"sub": "u1"}, "another-secret-0123456789abcdef0123")
    for _ in range(2):
        with pytest.raises(Unauthorized, match="invalid token"):
            auth.verify(wrong_key)
    first = token(n=0)
    auth.verify(first)
    for n in range(1, VERIFIED_TOKENS + 1):
        auth.verify(token(n=n))
    assert first not in auth._verified  # the oldest made room
    assert len(auth._verified) == VERIFIED_TOKENS
    assert auth.verify(first) == "u1"  # still valid, verified again

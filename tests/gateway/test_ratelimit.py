"""The token bucket, driven by a fake clock: no sleeps, no event loop."""

from __future__ import annotations

import pytest

from gateway.ratelimit import RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_allows_the_limit_then_says_how_long_to_wait() -> None:
    clock = Clock()
    limiter = RateLimiter(3, 60.0, clock)
    assert [limiter.acquire("u1") for _ in range(4)] == [0, 0, 0, 20]  # 1 token / 20 s
    assert limiter.acquire("u2") == 0  # per key
    clock.now += 5
    assert limiter.acquire("u1") == 15  # refused calls take nothing; the wait shrinks
    clock.now += 15
    assert [limiter.acquire("u1"), limiter.acquire("u1")] == [0, 20]


def test_retry_after_is_a_whole_number_of_at_least_one_second() -> None:
    clock = Clock()
    limiter = RateLimiter(600, 60.0, clock)  # 10 tokens a second
    for _ in range(600):
        assert limiter.acquire("u1") == 0
    assert limiter.acquire("u1") == 1
    clock.now += 0.05
    assert limiter.acquire("u1") == 1


def test_never_refuses_a_key_that_keeps_to_the_limit_in_every_window() -> None:
    clock = Clock()
    limiter = RateLimiter(5, 60.0, clock)
    for _ in range(50):  # five at once, then a full window of rest, over and over
        assert [limiter.acquire("u1") for _ in range(5)] == [0] * 5
        clock.now += 60
    for _ in range(300):  # or evenly spread at exactly the limit
        assert limiter.acquire("u2") == 0
        clock.now += 12


def test_refund_gives_a_token_back() -> None:
    limiter = RateLimiter(1, 60.0, Clock())
    assert limiter.acquire("u1") == 0
    limiter.refund("u1")
    assert limiter.acquire("u1") == 0
    assert limiter.acquire("u1") > 0


def test_idle_keys_are_forgotten() -> None:
    clock = Clock()
    limiter = RateLimiter(2, 60.0, clock)
    for n in range(1000):
        limiter.acquire(f"u{n}")
    assert len(limiter) == 1000
    clock.now += 61  # every bucket has refilled; the next call sweeps them away
    limiter.acquire("fresh")
    assert len(limiter) == 1
    limiter.refund("fresh")  # a full bucket is no bucket
    assert len(limiter) == 0


@pytest.mark.parametrize(("limit", "window"), [(0, 60.0), (1, 0.0)])
def test_rejects_nonsense(limit: int, window: float) -> None:
    with pytest.raises(ValueError):
        RateLimiter(limit, window)

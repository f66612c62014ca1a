"""A per-key token bucket: at most `limit` actions per `window` seconds, with bounded memory.

Pure (no asyncio, no I/O); the clock is injected so tests need no sleeps. Each key's bucket
holds up to `limit` tokens and refills at `limit / window` tokens a second, so a key that never
does more than `limit` actions in any `window` is never refused.

NOTE: a token bucket rather than a sliding-window log: O(1) memory per key instead of `limit`
timestamps, at the price of letting a key that saved up its bucket do up to 2 x `limit`
actions in one worst-case window. For an abuse limit "generous but bounded" is what we want.
A full bucket is the same as no bucket, so buckets that have refilled are forgotten: memory
holds only keys that acted within the last `window` seconds.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class RateLimiter:
    def __init__(
        self, limit: int, window: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("limit must be >= 1 and window > 0")
        self.limit = limit
        self._window = window
        self._clock = clock
        # key -> (tokens, when they were counted)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._next_sweep = clock() + window

    def __len__(self) -> int:
        return len(self._buckets)

    def _tokens(self, key: str, now: float) -> float:
        tokens, then = self._buckets.get(key, (self.limit, now))
        # Multiply before dividing: whole seconds then give exact token counts.
        return min(self.limit, tokens + (now - then) * self.limit / self._window)

    def acquire(self, key: str) -> int:
        """Take one token for `key`: 0 if allowed, else whole seconds until one is available
        (at least 1, for a `Retry-After` header); a refused call takes nothing."""
        now = self._clock()
        self._sweep(now)
        tokens = self._tokens(key, now)
        if tokens < 1:
            wait = (1 - tokens) * self._window / self.limit
            return max(1, math.ceil(wait - 1e-9))
        self._buckets[key] = (tokens - 1, now)
        return 0

    def refund(self, key: str) -> None:
        """Give back a token taken by `acquire` for an action that did not happen after all."""
        now = self._clock()
        tokens = self._tokens(key, now) + 1
        if tokens >= self.limit:
            self._buckets.pop(key, None)
        else:
            self._buckets[key] = (tokens, now)

    def _sweep(self, now: float) -> None:
        # At most once a window, so the cost is amortised over every call in between.
        if now < self._next_sweep:
            return
        self._next_sweep = now + self._window
        full = [key for key in self._buckets if self._tokens(key, now) >= self.limit]
        for key in full:
            del self._buckets[key]

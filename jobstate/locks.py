"""Per-job sharded locks: the analogue of a Durable Object's single thread."""

from __future__ import annotations

import asyncio
import zlib


class ShardedLocks:
    """A fixed pool of asyncio locks; a job id always hashes onto the same one.

    Every read-modify-write of a job holds its shard's lock, so changes to one job are
    serialised in this process while jobs on other shards proceed. A fixed pool (rather than a
    lock per job) bounds memory and needs no clean-up; two jobs sharing a shard only wait on
    each other's short critical section.
    """

    def __init__(self, shards: int = 1024) -> None:
        if shards < 1:
            raise ValueError("shards must be at least 1")
        self._locks = tuple(asyncio.Lock() for _ in range(shards))

    def shard_of(self, key: str) -> int:
        # crc32, not hash(): stable across processes, so logs and tests can name a shard.
        return zlib.crc32(key.encode()) % len(self._locks)

    def lock_for(self, key: str) -> asyncio.Lock:
        return self._locks[self.shard_of(key)]

    def __len__(self) -> int:
        return len(self._locks)

"""The event loop a process runs on: uvloop unless JOBSTATE_EVENT_LOOP=asyncio says otherwise.

NOTE: uvloop, measured here with both processes on it, cut CPU per progress callback by 25-30 %
and raised delivered messages/s by 20-35 % (issue 11); grpc.aio and aiohttp both run on it.
The standard loop stays selectable for debugging and for platforms uvloop does not support.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, TypeVar

from jobstate.config import ConfigError

T = TypeVar("T")
LOOPS = ("uvloop", "asyncio")


def loop_factory(environ: Mapping[str, str]) -> Callable[[], asyncio.AbstractEventLoop]:
    """The loop JOBSTATE_EVENT_LOOP names (default uvloop); ConfigError for anything else."""
    name = (environ.get("JOBSTATE_EVENT_LOOP") or "uvloop").strip().lower()
    if name not in LOOPS:
        raise ConfigError(f"JOBSTATE_EVENT_LOOP must be one of {', '.join(LOOPS)}, got {name!r}")
    if name == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    return asyncio.new_event_loop


def loop_name() -> str:
    """`uvloop` or `asyncio`: the loop running now (for the start-up log line)."""
    return type(asyncio.get_running_loop()).__module__.split(".")[0]


def collect_less() -> None:
    """Garbage collection tuned for a long-running server.

    NOTE: the hot paths allocate many short-lived containers (protobuf messages, JSON dicts,
    futures); at CPython's default gen0 threshold (700) that is hundreds of collections a
    second, each ageing objects toward full collections that walk every module, class and
    function loaded at start-up. Start-up's objects are frozen (never traversed again) and
    gen0 waits for 20,000 allocations: in the side-by-side fan-out this cut CPU per delivered
    message and the saturated p99 (bench/README.md, "Against the original design").
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 10, 10)


def run(main: Coroutine[Any, Any, T], factory: Callable[[], asyncio.AbstractEventLoop]) -> T:
    """`asyncio.run(main)` on a loop made by `factory`, with `collect_less`'s collections."""
    collect_less()
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)

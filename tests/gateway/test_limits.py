"""Abuse limits with small values set through the config: 429 + Retry-After for starts (nothing
created, nothing submitted), close 4429 for sockets beyond a cap, and the variables' checks."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from gwstack import Stack
from support.poll import eventually

from gateway.config import ConfigError, GatewayConfig
from gateway.limits import CLOSE_TOO_MANY, SocketSlots

SECRETS = {
    "JOBSTATE_JWT_SECRET": "j" * 40,
    "JOBSTATE_CALLBACK_SECRET": "c" * 40,
    "GATEWAY_SIMULATED_WORKER": "1",
}
START = "/api/export/overlay/start"


async def start(stack: Stack, user: str = "u1", key: str = "") -> tuple[int, Any, str | None]:
    headers = {**stack.auth(user), **({"Idempotency-Key": key} if key else {})}
    async with stack.http.post(stack.url + START, json={"clip": "a"}, headers=headers) as resp:
        return resp.status, await resp.json(), resp.headers.get("Retry-After")


async def job_count(stack: Stack, user: str = "u1") -> int:
    status, body = await stack.get("/api/jobs?page_size=100", user)
    assert status == 200
    return len(body["jobs"])


def runs(stack: Stack) -> int:
    return sum(1 for _, path in stack.runpod.paths() if path == "/run")


async def test_starts_beyond_the_rate_are_429_with_retry_after_and_create_nothing(
    make_stack: Callable[..., Awaitable[Stack]],
) -> None:
    stack = await make_stack(max_starts_per_minute=2)
    assert [(await start(stack))[0] for _ in range(2)] == [200, 200]
    status, body, retry_after = await start(stack)
    assert (status, "2 starts a minute" in body["error"]) == (429, True), body
    assert retry_after is not None and 1 <= int(retry_after) <= 30  # 1 token every 30 s
    assert (await job_count(stack), runs(stack)) == (2, 2)
    assert (await start(stack, "u2"))[0] == 200  # per user


async def test_idempotent_repeats_are_not_new_starts(
    make_stack: Callable[..., Awaitable[Stack]],
) -> None:
    stack = await make_stack(max_starts_per_minute=1)
    first = await start(stack, key="k1")
    repeats = [await start(stack, key="k1") for _ in range(3)]
    assert [r[0] for r in (first, *repeats)] == [200] * 4
    assert {r[1]["job_id"] for r in repeats} == {first[1]["job_id"]}
    assert (await start(stack, key="k2"))[0] == 429  # a new key is a new start
    assert (await job_count(stack), runs(stack)) == (1, 1)


async def test_a_replay_creates_nothing(stack: Stack) -> None:
    """A replay is answered from the job the key made (ListJobs), without calling CreateJob."""
    first = await start(stack, key="k1")
    replays = [await start(stack, key="k1") for _ in range(3)]
    assert [(r[0], r[1]["job_id"]) for r in replays] == [(200, first[1]["job_id"])] * 3
    async with stack.http.get(f"{stack.url}/metrics") as response:
        text = await response.text()
    assert 'gateway_grpc_call_seconds_count{code="OK",method="CreateJob"} 1.0' in text


async def test_a_replay_landing_on_another_gateway_is_not_a_new_start(
    make_stack: Callable[..., Awaitable[Stack]],
) -> None:
    first_gateway = await make_stack(max_starts_per_minute=1)
    other_gateway = await make_stack(max_starts_per_minute=1)
    first = await start(first_gateway, key="k1")
    assert (await start(other_gateway))[0] == 200  # the other gateway's one start a minute
    replay = await start(other_gateway, key="k1")
    assert replay[:2] == (200, {"job_id": first[1]["job_id"], "status": "processing"})
    assert (await job_count(other_gateway), runs(other_gateway)) == (2, 2)


async def test_a_key_past_its_window_is_a_new_start_and_passes_the_limits(
    make_stack: Callable[..., Awaitable[Stack]], tmp_path: Path
) -> None:
    """The service keeps a key for 24 h; a start with it afterwards creates a job, so it counts
    (aged here by moving the job's creation back in the service's database)."""
    stack = await make_stack(max_starts_per_minute=1)
    first = await start(stack, key="k1")
    assert first[0] == 200
    _age(tmp_path / "jobstate.db", first[1]["job_id"], timedelta(hours=25))
    status, body, retry_after = await start(stack, key="k1")
    assert (status, retry_after is not None) == (429, True), body
    assert (await job_count(stack), runs(stack)) == (1, 1)


def _age(database: Path, job_id: str, by: timedelta) -> None:
    with contextlib.closing(sqlite3.connect(database, timeout=30)) as db, db:
        (created,) = db.execute(
            "SELECT created_at FROM jobs WHERE job_id = ?", (job_id,)
        ).fetchone()
        older = datetime.fromisoformat(created) - by
        db.execute(
            "UPDATE jobs SET created_at = ? WHERE job_id = ?",
            (older.strftime("%Y-%m-%d %H:%M:%S.%f"), job_id),
        )


async def test_unfinished_jobs_beyond_the_limit_are_429_until_one_finishes(
    make_stack: Callable[..., Awaitable[Stack]],
) -> None:
    stack = await make_stack(max_unfinished_jobs_per_user=2)
    first, _ = await stack.start_job(), await stack.start_job()
    status, body, retry_after = await start(stack)
    assert status == 429 and "2 unfinished jobs" in body["error"], body
    assert retry_after is not None and int(retry_after) >= 1
    assert (await job_count(stack), runs(stack)) == (2, 2)
    assert (await start(stack, "u2"))[0] == 200  # per user
    await stack.callback(first, {"status": "complete", "output_key": f"exports/{first}/f.mp4"})
    assert (await start(stack))[0] == 200
    assert (await job_count(stack), runs(stack)) == (3, 4)


async def test_the_unfinished_count_asks_for_one_service_page_at_most(
    make_stack: Callable[..., Awaitable[Stack]],
) -> None:
    # A limit above the service's largest page (500) is counted page by page.
    stack = await make_stack(max_unfinished_jobs_per_user=501)
    svc = stack.services
    pages: list[int] = []
    list_page = svc.client.list_page

    async def recording(*args: Any, **kw: Any) -> Any:
        pages.append(kw["page_size"])
        return await list_page(*args, **kw)

    svc.client.list_page = recording  # type: ignore[method-assign]
    assert (await start(stack))[0] == 200
    assert pages == [500]  # one page, short: the user is far below the limit


async def test_sockets_per_user_beyond_the_cap_close_4429(
    make_stack: Callable[..., Awaitable[Stack]],
) -> None:
    stack = await make_stack(max_sockets_per_user=2)
    first, second = await stack.start_job(), await stack.start_job()
    open_ = [await stack.socket(first), await stack.socket(second)]
    for ws in open_:
        assert (await ws.next())["type"] == "status"
    refused = await stack.socket(first)
    assert await refused.close_code() == CLOSE_TOO_MANY
    assert refused.ws.close_code == CLOSE_TOO_MANY and refused.queue.empty()
    theirs = await stack.socket(await stack.start_job("u2"), "u2")  # per user
    assert (await theirs.next())["type"] == "status"
    await theirs.close()
    await open_[0].close()
    svc = stack.services

    async def released() -> bool:
        return svc.slots.per_user.get("u1") == 1

    await eventually(released, "u1's first socket slot to be released")
    again = await stack.socket(first)
    assert (await again.next())["type"] == "status"
    for ws in (open_[1], again):
        await ws.close()
    await eventually(lambda: _empty(svc.slots), "every socket slot to be released")


async def test_sockets_per_job_beyond_the_cap_close_4429(
    make_stack: Callable[..., Awaitable[Stack]],
) -> None:
    stack = await make_stack(max_sockets_per_job=2)
    busy, quiet = await stack.start_job(), await stack.start_job()
    open_ = [await stack.socket(busy) for _ in range(2)]
    for ws in open_:
        assert (await ws.next())["type"] == "status"
    refused = await stack.socket(busy)
    assert await refused.close_code() == CLOSE_TOO_MANY
    elsewhere = await stack.socket(quiet)  # the cap is per job, not per user
    assert (await elsewhere.next())["type"] == "status"
    for ws in (*open_, elsewhere):
        await ws.close()


async def _empty(slots: Any) -> bool:
    return not slots.per_user and not slots.per_job


def test_defaults_are_at_least_the_contracts() -> None:
    config = GatewayConfig.from_env(SECRETS)
    assert config.max_unfinished_jobs_per_user >= 100
    assert config.max_starts_per_minute >= 300
    assert config.max_sockets_per_user >= 200
    assert config.max_sockets_per_job >= 1000


def test_variables_set_the_limits() -> None:
    env = {
        **SECRETS,
        "GATEWAY_MAX_UNFINISHED_JOBS_PER_USER": "7",
        "GATEWAY_MAX_STARTS_PER_MINUTE": "8",
        "GATEWAY_MAX_SOCKETS_PER_USER": "9",
        "GATEWAY_MAX_SOCKETS_PER_JOB": "10",
    }
    config = GatewayConfig.from_env(env)
    assert (
        config.max_unfinished_jobs_per_user,
        config.max_starts_per_minute,
        config.max_sockets_per_user,
        config.max_sockets_per_job,
    ) == (7, 8, 9, 10)


@pytest.mark.parametrize(
    "variable",
    [
        "GATEWAY_MAX_UNFINISHED_JOBS_PER_USER",
        "GATEWAY_MAX_STARTS_PER_MINUTE",
        "GATEWAY_MAX_SOCKETS_PER_USER",
        "GATEWAY_MAX_SOCKETS_PER_JOB",
    ],
)
@pytest.mark.parametrize("value", ["0", "-1", "ten", "1.5", "99999999999"])
def test_bad_limits_name_the_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        GatewayConfig.from_env({**SECRETS, variable: value})


def test_socket_slots_count_per_user_and_per_job_and_forget_at_zero() -> None:
    slots = SocketSlots(max_per_user=2, max_per_job=2)
    log = [
        slots.acquire("u1", "a"),
        slots.acquire("u2", "a"),
        slots.acquire("u2", "a"),  # the job is full
        slots.acquire("u1", "b"),
        slots.acquire("u1", "c"),  # the user is full
    ]
    assert log == [
        None,
        None,
        "too many sockets for this job (limit 2)",
        None,
        "too many sockets for this user (limit 2)",
    ]
    for user, job in (("u1", "a"), ("u2", "a"), ("u1", "b")):
        slots.release(user, job)
    assert (dict(slots.per_user), dict(slots.per_job)) == ({}, {})

"""The hub on its own: bounded subscriptions that only ever coalesce PROGRESS, reference
counting that leaves nothing behind, per-version de-duplication, close."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from jobstate.domain import EventType, JobEvent, new_job
from jobstate.hub import BACKLOG, Hub, Subscription, UserSubscription

T0 = datetime(2026, 1, 1, tzinfo=UTC)
JOB = new_job("j", "u", "k", {}, T0).job
P, S, C = EventType.PROGRESS, EventType.SUBMITTED, EventType.COMPLETE


def event(version: int, type_: EventType = P, job_id: str = "j") -> JobEvent:
    return JobEvent(type_, replace(JOB, job_id=job_id, version=version))


async def drain(sub: Subscription) -> list[tuple[str, int, int]]:
    """(type, version, first version it stands for) of everything waiting, until closed."""
    sub.close()
    got = []
    while (item := await sub.next()) is not None:
        got.append((item[0].type.value, item[0].version, item[1]))
    return got


def check_stream(pushed: list[JobEvent], got: list[tuple[str, int, int]]) -> None:
    versions = [version for _, version, _ in got]
    assert versions == sorted(set(versions))  # strictly increasing
    assert versions[-1] == pushed[-1].version  # the latest is never lost
    kept = {(t, v) for t, v, _ in got}
    assert [e for e in pushed if e.type is not P and (e.type.value, e.version) not in kept] == []
    # Each delivered event says which versions it stands for: together, all of them, once.
    covered = [v for _, version, first in got for v in range(first, version + 1)]
    assert covered == [e.version for e in pushed]


async def test_a_reader_that_keeps_up_gets_every_event() -> None:
    sub = Subscription("j")
    pushed = [event(v, S if v == 5 else P) for v in range(2, 2 + BACKLOG - 1)]
    for e in pushed:
        sub.push(e)
    got = await drain(sub)
    assert got == [(e.type.value, e.version, e.version) for e in pushed]


async def test_a_stalled_reader_is_bounded_and_loses_only_progress() -> None:
    sub = Subscription("j")
    pushed = [event(v, S if v in (500, 700) else P) for v in range(2, 1000)] + [event(1000, C)]
    for e in pushed:
        sub.push(e)
    assert len(sub) <= BACKLOG + 2 * 3  # each status event may break one run of progress
    got = await drain(sub)
    check_stream(pushed, got)
    # Nothing is merged until BACKLOG events wait; from then on the newest progress wins.
    assert got[: BACKLOG - 1] == [("progress", v, v) for v in range(2, 1 + BACKLOG)]
    assert got[BACKLOG - 1] == ("progress", 499, 1 + BACKLOG)
    assert [g for g in got if g[0] != "progress"] == [
        ("submitted", 500, 500),
        ("submitted", 700, 700),
        ("complete", 1000, 1000),
    ]
    assert sub.dropped == len(pushed) - len(got)


@given(
    backlog=st.integers(1, 8),
    types=st.lists(st.sampled_from([P, P, P, S, C]), min_size=1, max_size=80),
)
def test_random_pushes_keep_the_stream_rules(backlog: int, types: list[EventType]) -> None:
    pushed = [event(v, t) for v, t in enumerate(types, start=2)]

    async def run() -> list[tuple[str, int, int]]:
        sub = Subscription("j", backlog)
        for e in pushed:
            sub.push(e)
            assert len(sub) <= backlog + 2 * sum(x.type is not P for x in pushed)
        return await drain(sub)

    check_stream(pushed, asyncio.run(run()))


async def test_subscriptions_are_reference_counted() -> None:
    hub = Hub()
    log = []
    async with hub.subscribe("a"), hub.subscribe("a"):
        async with hub.subscribe("b"):
            log.append((len(hub), sorted(hub.watched_jobs())))
        log.append((len(hub), sorted(hub.watched_jobs())))
    log.append((len(hub), sorted(hub.watched_jobs())))
    hub.publish(event(2, job_id="c"))  # nobody watches c: nothing is kept for it
    log.append((len(hub), sorted(hub.watched_jobs())))
    assert log == [(2, ["a", "b"]), (1, ["a"]), (0, []), (0, [])]


async def test_publish_reaches_every_watcher_of_the_job_once_per_version() -> None:
    hub = Hub()
    async with hub.subscribe("a") as a1, hub.subscribe("a") as a2, hub.subscribe("b") as b:
        for e in [event(2, job_id="a"), event(2, job_id="a"), event(3, job_id="a")]:
            hub.publish(e)
        hub.publish(event(2, job_id="a"))  # already published: a duplicate (e.g. via NOTIFY)
        hub.publish(event(7, job_id="b"))
        got = [await drain(sub) for sub in (a1, a2, b)]
    assert got == [
        [("progress", 2, 2), ("progress", 3, 3)],
        [("progress", 2, 2), ("progress", 3, 3)],
        [("progress", 7, 7)],
    ]


async def test_close_ends_every_subscription_after_what_is_waiting() -> None:
    hub = Hub()
    async with hub.subscribe("a") as a, hub.subscribe("b") as b:
        hub.publish(event(2, job_id="a"))
        hub.close()
        got = [await a.next(), await a.next(), await b.next()]
        async with hub.subscribe("c") as late:  # subscribing after close ends at once
            got.append(await late.next())
    assert [(item[0].version, item[1]) if item else None for item in got] == [
        (2, 2),
        None,
        None,
        None,
    ]
    assert len(hub) == 0


def user_event(version: int, job_id: str, user_id: str = "u", type_: EventType = P) -> JobEvent:
    return JobEvent(type_, replace(JOB, job_id=job_id, user_id=user_id, version=version))


def taken(sub: UserSubscription, job_id: str) -> list[tuple[int, int]]:
    """(version, first version it stands for) of what the job has waiting."""
    got = []
    while (item := sub.take(job_id)) is not None:
        got.append((item[0].version, item[1]))
    return got


async def test_a_user_watcher_gets_every_job_of_its_user_once_per_version() -> None:
    hub = Hub()
    mine, also_mine = hub.attach_user("u"), hub.attach_user("u")
    theirs = hub.attach_user("v")
    watcher = hub.attach("a")
    for e in (user_event(2, "a"), user_event(1, "b"), user_event(2, "a"), user_event(1, "c", "v")):
        hub.publish(e)  # the second (2, "a") is the same commit arriving by NOTIFY
    assert await mine.ready() == ["a", "b"]
    assert (taken(mine, "a"), taken(mine, "b"), taken(also_mine, "a")) == (
        [(2, 2)],
        [(1, 1)],
        [(2, 2)],
    )
    assert await theirs.ready() == ["c"]
    assert len(watcher) == 1
    # A job the watcher forgot (its stream sent the terminal event) stays de-duplicated.
    mine.forget("a")
    hub.publish(user_event(2, "a"))
    assert len(mine) == 1 and taken(mine, "a") == []
    for sub in (mine, also_mine, theirs):
        hub.detach_user(sub)
    hub.detach(watcher)
    assert len(hub) == 0 and hub.latest("a") == 0


async def test_a_stalled_user_watcher_loses_only_progress_per_job() -> None:
    hub = Hub()
    sub = hub.attach_user("u")
    pushed = [user_event(v, "a", type_=S if v == 500 else P) for v in range(2, 1000)]
    for e in pushed:
        hub.publish(e)
    hub.publish(user_event(1000, "a", type_=C))
    assert len(taken(sub, "a")) <= BACKLOG + 2 * 2


async def test_ending_user_watches_wakes_them_with_none() -> None:
    hub = Hub()
    sub = hub.attach_user("u")
    hub.publish(user_event(1, "a"))
    hub.end_user_watches()
    assert await sub.ready() is None  # what is queued may be incomplete: not handed out
    hub.close()
    assert hub.attach_user("w").closed

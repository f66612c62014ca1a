"""The feed of a user's jobs (`{"type":"subscribe","jobs":"mine"}` on `GET /api/ws`).

`UserFeeds` keeps one `UserFeed` per watched user in this gateway process: one WatchJobs
stream (`JobStateClient.watch_jobs`, which resumes by itself) shared by every socket of that
user that subscribed the feed; the last one to leave closes it, and `UserFeeds` ends empty.
The feed keeps the newest event of every job it has seen (`latest`).

A socket's `FeedSubscriber` first gets one `jobs` message — the user's RECENT newest jobs
(ListJobs) merged with every job the stream knows (the unfinished ones from its initial state,
and every job it saw since), each at the newest version either knows, newest first — and then
every later event of any of the user's jobs, new ones included, as the single-job socket's
event messages. Per job, versions strictly increase: an event at or below the version the
subscriber last got for that job is dropped. Nothing is held while the list is gathered: the
list is built, and the subscriber goes live, in one step of the loop, from `latest` once the
stream's initial state is complete, so every event that arrived meanwhile is in the list.
A stream that fails for good (a refused service token, the service's stream cap) ends every
subscriber with a `subscription_error` (code as `errors.SERVICE_ANSWERS` says); the next
subscriber opens a new stream.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextlib import aclosing

from gateway import muxproto
from gateway.errors import CLOSE_INTERNAL, report
from gateway.outbox import Outbox
from gateway.translate import dumps, job_json
from gateway.watch import Event
from jobstate.client import InitialStateComplete, Job, JobEvent, JobStateClient, JobStateError

log = logging.getLogger(__name__)

RECENT = 20  # the newest jobs of the list (GET /api/jobs's default page)
# Finished jobs stay in `latest` until it holds this many jobs: beyond, the finished ones are
# forgotten (oldest first). They are in the user's recent jobs, which ListJobs answers.
REMEMBERED = 1_000


class FeedSubscriber:
    """One socket's view of the feed: the last version it was sent of each job."""

    def __init__(self, outbox: Outbox, on_end: Callable[[], None]) -> None:
        self.outbox = outbox
        self.on_end = on_end
        self.versions: dict[str, int] | None = None  # None until its `jobs` message is sent
        self.greeting: asyncio.Task[None] | None = None

    def offer(self, event: Event) -> None:
        if self.versions is None:
            return  # its `jobs` list is built from `latest` when it goes live
        job_id = event.record.job_id
        if event.version <= self.versions.get(job_id, 0):
            return
        self.versions[job_id] = event.version
        text, frame = event.event_message()
        self.outbox.push(text, event.coalescible, frame, job_id)

    def go_live(self, jobs: list[Job]) -> None:
        self.versions = {job.job_id: job.version for job in jobs}
        message = {"type": "jobs", "jobs": [job_json(job) for job in jobs]}
        self.outbox.push(dumps(message))

    def fail(self, code: int, reason: str) -> None:
        self.outbox.push(dumps(muxproto.feed_error(code, reason)))
        self.on_end()


class UserFeed:
    """One user's WatchJobs stream and the subscribers sharing it."""

    def __init__(self, feeds: UserFeeds, user_id: str) -> None:
        self.feeds = feeds
        self.user_id = user_id
        self.subscribers: set[FeedSubscriber] = set()
        self.latest: dict[str, Event] = {}
        self.ready = asyncio.Event()  # the stream's first initial state is complete
        self.pump = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        client = self.feeds.client
        try:
            async with aclosing(client.watch_jobs(self.user_id)) as items:
                async for item in items:
                    if isinstance(item, InitialStateComplete):
                        self.ready.set()
                    else:
                        self._publish(item)
        except JobStateError as exc:
            answer = report(f"the job feed of a user ({type(exc).__name__})", exc)
            self._fail(answer.close_code, answer.reason)
        except Exception:
            log.exception("the job feed of a user failed")
            self._fail(CLOSE_INTERNAL, "feed failed")

    def _fail(self, code: int, reason: str) -> None:
        self.feeds.forget(self)
        for subscriber in list(self.subscribers):
            if subscriber.greeting is not None:
                subscriber.greeting.cancel()
            subscriber.fail(code, reason)

    def _publish(self, record: JobEvent) -> None:
        event = Event(record)
        self.latest.pop(record.job_id, None)  # re-inserted last: the most recently active
        self.latest[record.job_id] = event
        if len(self.latest) > REMEMBERED:
            self._forget_finished()
        for subscriber in self.subscribers:
            subscriber.offer(event)

    def _forget_finished(self) -> None:
        for job_id in [j for j, e in self.latest.items() if e.terminal]:
            del self.latest[job_id]
            if len(self.latest) <= REMEMBERED // 2:
                return

    def jobs(self, recent: list[Job]) -> list[Job]:
        """`recent` merged with every job the stream knows, the newer version of each job
        winning, newest first."""
        merged = {job.job_id: job for job in recent}
        for job_id, event in self.latest.items():
            known = merged.get(job_id)
            if known is None or known.version < event.version:
                merged[job_id] = event.record.job
        return sorted(merged.values(), key=lambda job: (job.created_at, job.job_id), reverse=True)

    async def greet(self, subscriber: FeedSubscriber) -> None:
        """Send `subscriber` its `jobs` list and make it live (see the module's docstring)."""
        try:
            page = await self.feeds.client.list_page(self.user_id, page_size=RECENT)
            await self.ready.wait()
        except JobStateError as exc:
            answer = report("the job list of a feed", exc)
            subscriber.fail(answer.close_code, answer.reason)
            return
        finally:
            subscriber.greeting = None
        # No await from here on: the list and going live are one step.
        subscriber.go_live(self.jobs(page.jobs))


class UserFeeds:
    """Every watched user of this gateway process, one stream each."""

    def __init__(self, client: JobStateClient) -> None:
        self.client = client
        self._feeds: dict[str, UserFeed] = {}

    def __len__(self) -> int:
        return len(self._feeds)

    def join(self, user_id: str, subscriber: FeedSubscriber) -> None:
        """Attach `subscriber`: its `jobs` message comes once gathered, then live events."""
        feed = self._feeds.get(user_id)
        if feed is None:
            feed = self._feeds[user_id] = UserFeed(self, user_id)
        feed.subscribers.add(subscriber)
        subscriber.greeting = asyncio.get_running_loop().create_task(feed.greet(subscriber))

    def leave(self, user_id: str, subscriber: FeedSubscriber) -> None:
        """Detach; the last subscriber to leave closes the user's stream."""
        if subscriber.greeting is not None:
            subscriber.greeting.cancel()
            subscriber.greeting = None
        feed = self._feeds.get(user_id)
        if feed is None or subscriber not in feed.subscribers:
            return
        feed.subscribers.discard(subscriber)
        if not feed.subscribers:
            self.forget(feed)
            feed.pump.cancel()

    def forget(self, feed: UserFeed) -> None:
        if self._feeds.get(feed.user_id) is feed:
            del self._feeds[feed.user_id]

    async def close(self) -> None:
        feeds = list(self._feeds.values())
        self._feeds.clear()
        for feed in feeds:
            feed.pump.cancel()
            for subscriber in feed.subscribers:
                if subscriber.greeting is not None:
                    subscriber.greeting.cancel()
        await asyncio.gather(*(feed.pump for feed in feeds), return_exceptions=True)

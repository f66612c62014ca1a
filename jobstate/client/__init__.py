"""The Python client of jobstate: `async with JobStateClient(target) as client: ...`.

Records are the service's own frozen dataclasses (`Job`, `JobEvent`, `Status`, `EventType`);
errors are `jobstate.errors` classes, re-exported here. `jobstate.client.sync` wraps the same
client for code that is not async.
"""

from jobstate.client.core import CallObserver, JobStateClient, Page
from jobstate.client.feed import Ended, FeedItem, JobFeed
from jobstate.client.userfeed import UserFeedItem
from jobstate.domain import EventType, InitialStateComplete, Job, JobEvent, Status
from jobstate.errors import (
    AlreadyExists,
    DeadlineExceeded,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    JobStateError,
    NotFound,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)

__all__ = [
    "AlreadyExists",
    "CallObserver",
    "DeadlineExceeded",
    "Ended",
    "EventType",
    "FailedPrecondition",
    "FeedItem",
    "InitialStateComplete",
    "Internal",
    "InvalidArgument",
    "Job",
    "JobEvent",
    "JobFeed",
    "JobStateClient",
    "JobStateError",
    "NotFound",
    "Page",
    "ResourceExhausted",
    "Status",
    "Unauthenticated",
    "Unavailable",
    "UserFeedItem",
]

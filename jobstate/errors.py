"""Domain errors: one root, one subclass per way a request can fail.

The servicer maps these to gRPC status codes in one table (looked up along the MRO); the
message of each is written for the person who made the request.
"""


class JobStateError(Exception):
    """Root of every error jobstate raises on purpose."""


class InvalidArgument(JobStateError):
    """The request itself is malformed; nothing was changed."""


class NotFound(JobStateError):
    """No job has that id."""


class AlreadyExists(JobStateError):
    """The job id is taken by another user."""


class FailedPrecondition(JobStateError):
    """The change contradicts the job's current state (e.g. the job already finished)."""


class Unavailable(JobStateError):
    """The store cannot be reached or refused the write; retrying later may succeed.

    `cause` says what the database said, for logs and start-up errors; clients see only the
    message.
    """

    def __init__(self, message: str, cause: str = "") -> None:
        super().__init__(message)
        self.cause = cause


class DeadlineExceeded(Unavailable):
    """The call did not finish within its deadline; it may or may not have taken effect."""


class Unauthenticated(JobStateError):
    """The caller did not present a valid service token."""


class ResourceExhausted(JobStateError):
    """A configured limit was reached."""


class Internal(JobStateError):
    """The service failed in a way the caller cannot fix (it has been logged there)."""

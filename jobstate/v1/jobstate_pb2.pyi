import datetime

from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class JobStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATUS_UNSPECIFIED: _ClassVar[JobStatus]
    JOB_STATUS_PENDING: _ClassVar[JobStatus]
    JOB_STATUS_PROCESSING: _ClassVar[JobStatus]
    JOB_STATUS_COMPLETE: _ClassVar[JobStatus]
    JOB_STATUS_ERROR: _ClassVar[JobStatus]
    JOB_STATUS_CANCELLED: _ClassVar[JobStatus]

class EventType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVENT_TYPE_UNSPECIFIED: _ClassVar[EventType]
    EVENT_TYPE_SNAPSHOT: _ClassVar[EventType]
    EVENT_TYPE_CREATED: _ClassVar[EventType]
    EVENT_TYPE_SUBMITTED: _ClassVar[EventType]
    EVENT_TYPE_PROGRESS: _ClassVar[EventType]
    EVENT_TYPE_COMPLETE: _ClassVar[EventType]
    EVENT_TYPE_ERROR: _ClassVar[EventType]
    EVENT_TYPE_CANCELLED: _ClassVar[EventType]
JOB_STATUS_UNSPECIFIED: JobStatus
JOB_STATUS_PENDING: JobStatus
JOB_STATUS_PROCESSING: JobStatus
JOB_STATUS_COMPLETE: JobStatus
JOB_STATUS_ERROR: JobStatus
JOB_STATUS_CANCELLED: JobStatus
EVENT_TYPE_UNSPECIFIED: EventType
EVENT_TYPE_SNAPSHOT: EventType
EVENT_TYPE_CREATED: EventType
EVENT_TYPE_SUBMITTED: EventType
EVENT_TYPE_PROGRESS: EventType
EVENT_TYPE_COMPLETE: EventType
EVENT_TYPE_ERROR: EventType
EVENT_TYPE_CANCELLED: EventType

class Job(_message.Message):
    __slots__ = ("job_id", "user_id", "kind", "status", "progress", "message", "output_key", "error", "version", "params", "external_id", "created_at", "updated_at", "completed_at")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_KEY_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_AT_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    user_id: str
    kind: str
    status: JobStatus
    progress: float
    message: str
    output_key: str
    error: str
    version: int
    params: _struct_pb2.Struct
    external_id: str
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    completed_at: _timestamp_pb2.Timestamp
    def __init__(self, job_id: _Optional[str] = ..., user_id: _Optional[str] = ..., kind: _Optional[str] = ..., status: _Optional[_Union[JobStatus, str]] = ..., progress: _Optional[float] = ..., message: _Optional[str] = ..., output_key: _Optional[str] = ..., error: _Optional[str] = ..., version: _Optional[int] = ..., params: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., external_id: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., completed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateJobRequest(_message.Message):
    __slots__ = ("job_id", "user_id", "kind", "params", "idempotency_key")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    user_id: str
    kind: str
    params: _struct_pb2.Struct
    idempotency_key: str
    def __init__(self, job_id: _Optional[str] = ..., user_id: _Optional[str] = ..., kind: _Optional[str] = ..., params: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class CreateJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class GetJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class GetJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class ListJobsRequest(_message.Message):
    __slots__ = ("user_id", "page_size", "page_token", "statuses", "updated_before", "output_key", "idempotency_key")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    UPDATED_BEFORE_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_KEY_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    page_size: int
    page_token: str
    statuses: _containers.RepeatedScalarFieldContainer[JobStatus]
    updated_before: _timestamp_pb2.Timestamp
    output_key: str
    idempotency_key: str
    def __init__(self, user_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., statuses: _Optional[_Iterable[_Union[JobStatus, str]]] = ..., updated_before: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., output_key: _Optional[str] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class ListJobsResponse(_message.Message):
    __slots__ = ("jobs", "next_page_token")
    JOBS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[Job]
    next_page_token: str
    def __init__(self, jobs: _Optional[_Iterable[_Union[Job, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class MarkSubmittedRequest(_message.Message):
    __slots__ = ("job_id", "external_id")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    external_id: str
    def __init__(self, job_id: _Optional[str] = ..., external_id: _Optional[str] = ...) -> None: ...

class MarkSubmittedResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class ReportProgressRequest(_message.Message):
    __slots__ = ("job_id", "progress", "message")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    progress: float
    message: str
    def __init__(self, job_id: _Optional[str] = ..., progress: _Optional[float] = ..., message: _Optional[str] = ...) -> None: ...

class ReportProgressResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class CompleteJobRequest(_message.Message):
    __slots__ = ("job_id", "output_key")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_KEY_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    output_key: str
    def __init__(self, job_id: _Optional[str] = ..., output_key: _Optional[str] = ...) -> None: ...

class CompleteJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class FailJobRequest(_message.Message):
    __slots__ = ("job_id", "error")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    error: str
    def __init__(self, job_id: _Optional[str] = ..., error: _Optional[str] = ...) -> None: ...

class FailJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class CancelJobRequest(_message.Message):
    __slots__ = ("job_id", "reason")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    reason: str
    def __init__(self, job_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class CancelJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class WatchJobRequest(_message.Message):
    __slots__ = ("job_id", "after_version")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_VERSION_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    after_version: int
    def __init__(self, job_id: _Optional[str] = ..., after_version: _Optional[int] = ...) -> None: ...

class JobChange(_message.Message):
    __slots__ = ("mark_submitted", "report_progress", "complete_job", "fail_job", "cancel_job")
    MARK_SUBMITTED_FIELD_NUMBER: _ClassVar[int]
    REPORT_PROGRESS_FIELD_NUMBER: _ClassVar[int]
    COMPLETE_JOB_FIELD_NUMBER: _ClassVar[int]
    FAIL_JOB_FIELD_NUMBER: _ClassVar[int]
    CANCEL_JOB_FIELD_NUMBER: _ClassVar[int]
    mark_submitted: MarkSubmittedRequest
    report_progress: ReportProgressRequest
    complete_job: CompleteJobRequest
    fail_job: FailJobRequest
    cancel_job: CancelJobRequest
    def __init__(self, mark_submitted: _Optional[_Union[MarkSubmittedRequest, _Mapping]] = ..., report_progress: _Optional[_Union[ReportProgressRequest, _Mapping]] = ..., complete_job: _Optional[_Union[CompleteJobRequest, _Mapping]] = ..., fail_job: _Optional[_Union[FailJobRequest, _Mapping]] = ..., cancel_job: _Optional[_Union[CancelJobRequest, _Mapping]] = ...) -> None: ...

class ApplyChangesRequest(_message.Message):
    __slots__ = ("changes", "read_mask")
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    READ_MASK_FIELD_NUMBER: _ClassVar[int]
    changes: _containers.RepeatedCompositeFieldContainer[JobChange]
    read_mask: _field_mask_pb2.FieldMask
    def __init__(self, changes: _Optional[_Iterable[_Union[JobChange, _Mapping]]] = ..., read_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class ApplyChangesResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[ChangeResult]
    def __init__(self, results: _Optional[_Iterable[_Union[ChangeResult, _Mapping]]] = ...) -> None: ...

class ChangeResult(_message.Message):
    __slots__ = ("code", "message", "job")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    JOB_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    job: Job
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ..., job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class FollowJobsRequest(_message.Message):
    __slots__ = ("follow", "unfollow")
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    UNFOLLOW_FIELD_NUMBER: _ClassVar[int]
    follow: FollowJob
    unfollow: UnfollowJob
    def __init__(self, follow: _Optional[_Union[FollowJob, _Mapping]] = ..., unfollow: _Optional[_Union[UnfollowJob, _Mapping]] = ...) -> None: ...

class FollowJob(_message.Message):
    __slots__ = ("job_id", "after_version", "read_mask")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_VERSION_FIELD_NUMBER: _ClassVar[int]
    READ_MASK_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    after_version: int
    read_mask: _field_mask_pb2.FieldMask
    def __init__(self, job_id: _Optional[str] = ..., after_version: _Optional[int] = ..., read_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class UnfollowJob(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class FollowJobsResponse(_message.Message):
    __slots__ = ("events", "ends")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    ENDS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[JobEvent]
    ends: _containers.RepeatedCompositeFieldContainer[FollowEnd]
    def __init__(self, events: _Optional[_Iterable[_Union[JobEvent, _Mapping]]] = ..., ends: _Optional[_Iterable[_Union[FollowEnd, _Mapping]]] = ...) -> None: ...

class JobEvent(_message.Message):
    __slots__ = ("type", "job")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    JOB_FIELD_NUMBER: _ClassVar[int]
    type: EventType
    job: Job
    def __init__(self, type: _Optional[_Union[EventType, str]] = ..., job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class FollowEnd(_message.Message):
    __slots__ = ("job_id", "code", "message")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    code: int
    message: str
    def __init__(self, job_id: _Optional[str] = ..., code: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class WatchJobResponse(_message.Message):
    __slots__ = ("type", "job")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    JOB_FIELD_NUMBER: _ClassVar[int]
    type: EventType
    job: Job
    def __init__(self, type: _Optional[_Union[EventType, str]] = ..., job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class WatchJobsRequest(_message.Message):
    __slots__ = ("user_id", "statuses", "after_versions", "read_mask")
    class AfterVersionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    AFTER_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    READ_MASK_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    statuses: _containers.RepeatedScalarFieldContainer[JobStatus]
    after_versions: _containers.ScalarMap[str, int]
    read_mask: _field_mask_pb2.FieldMask
    def __init__(self, user_id: _Optional[str] = ..., statuses: _Optional[_Iterable[_Union[JobStatus, str]]] = ..., after_versions: _Optional[_Mapping[str, int]] = ..., read_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class WatchJobsResponse(_message.Message):
    __slots__ = ("events", "initial_state_complete")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    INITIAL_STATE_COMPLETE_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[JobEvent]
    initial_state_complete: InitialStateComplete
    def __init__(self, events: _Optional[_Iterable[_Union[JobEvent, _Mapping]]] = ..., initial_state_complete: _Optional[_Union[InitialStateComplete, _Mapping]] = ...) -> None: ...

class InitialStateComplete(_message.Message):
    __slots__ = ("truncated", "unknown_job_ids")
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    UNKNOWN_JOB_IDS_FIELD_NUMBER: _ClassVar[int]
    truncated: bool
    unknown_job_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, truncated: _Optional[bool] = ..., unknown_job_ids: _Optional[_Iterable[str]] = ...) -> None: ...

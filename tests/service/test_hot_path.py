"""Hand-written conversions on the hot path equal the library code they replace: the SQLite
write path's datetime text (reads and comparisons in SQL must agree with SQLAlchemy's), and
protobuf Timestamps both ways."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import DateTime
from sqlalchemy.dialects import sqlite

from jobstate.translate import _datetime, _timestamp
from jobstate.writes import _sqlite_datetime


@pytest.mark.parametrize(
    "value",
    [
        None,
        datetime(2026, 11, 30, 6, 6, 58, 31789, tzinfo=UTC),
        datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),  # no microseconds: still six digits
        datetime(999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2026, 6, 1, 12, 0, 0, 1, tzinfo=timezone(timedelta(hours=2))),
    ],
)
def test_datetimes_are_written_as_sqlalchemy_writes_them(value: datetime | None) -> None:
    dialect = sqlite.dialect()
    sqlalchemy_way = DateTime(timezone=True).dialect_impl(dialect).bind_processor(dialect)
    assert sqlalchemy_way is not None
    assert _sqlite_datetime(value) == sqlalchemy_way(value)


@pytest.mark.parametrize(
    "value",
    [
        datetime(2026, 11, 30, 6, 6, 58, 31789, tzinfo=UTC),
        datetime(1970, 1, 1, tzinfo=UTC),
        datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2026, 6, 1, 12, 0, 0, 1, tzinfo=timezone(timedelta(hours=-7))),
    ],
)
def test_timestamps_convert_as_protobuf_converts_them(value: datetime) -> None:
    theirs = Timestamp()
    theirs.FromDatetime(value)
    assert (_timestamp(value), _datetime(theirs)) == (theirs, theirs.ToDatetime(tzinfo=UTC))

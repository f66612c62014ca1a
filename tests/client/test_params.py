"""Params the client sends: up to the depth limit they survive the deepest message that
carries a job; beyond it, or with a number a Struct cannot hold, InvalidArgument before
anything is sent. Pure: no server."""

from __future__ import annotations

import pytest
from google.protobuf import json_format

from jobstate.client import InvalidArgument
from jobstate.translate import params_to_pb
from jobstate.v1 import jobstate_pb2 as pb
from jobstate.wire import MAX_PARAMS_DEPTH


def nested(levels: int, leaf: object) -> object:
    value = leaf
    for _ in range(levels):
        value = {"a": value}
    return value


def in_lists(levels: int, leaf: object) -> object:
    value = leaf
    for _ in range(levels):
        value = [value]
    return value


@pytest.mark.parametrize(
    "params",
    [
        nested(MAX_PARAMS_DEPTH, 1),  # objects cost protobuf the most levels
        nested(MAX_PARAMS_DEPTH - 1, {}),
        {"l": [[[[{"x": [None, True, "s", 2.5, 1e300]}]]]]},
    ],
)
def test_params_up_to_the_depth_limit_can_be_stored_and_read_back(
    params: dict[str, object],
) -> None:
    struct = params_to_pb(params)
    assert json_format.MessageToDict(struct) == params
    # The deepest message that carries a job's params: it must still decode.
    event = pb.WatchJobResponse(job=pb.Job(params=struct)).SerializeToString()
    assert json_format.MessageToDict(pb.WatchJobResponse.FromString(event).job.params) == params


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        (nested(MAX_PARAMS_DEPTH + 1, 1), "nested too deeply"),
        (nested(MAX_PARAMS_DEPTH, []), "nested too deeply"),  # an empty array is a level too
        ({"a": in_lists(MAX_PARAMS_DEPTH, 1)}, "nested too deeply"),  # 1 object + 32 arrays
        ({"a": 10**400}, "number too large"),
    ],
)
def test_params_protobuf_cannot_hold_are_invalid(params: dict[str, object], reason: str) -> None:
    with pytest.raises(InvalidArgument, match=reason):
        params_to_pb(params)

"""JOBSTATE_TARGET forms (`gateway.target.is_target`), as a table: grpc would accept any string
and fail only at the first call, so a typo must stop the process at start instead."""

from __future__ import annotations

import pytest

from gateway.target import is_target

GOOD = [
    "127.0.0.1:50051",
    "localhost:50051",
    "jobstate-1:50051",
    "jobstate_2:50051",
    "svc.example.com.:443",
    "[::1]:50051",
    "dns:jobstate:50051",
    "dns:///jobstate:50051",
    "dns:///jobstate",
    "dns://127.0.0.1:5353/jobstate:50051",
    "dns:[::1]:50051",
    "ipv4:127.0.0.1",
    "ipv4:127.0.0.1:5001,127.0.0.2:5002",
    "ipv6:::1",
    "ipv6:[::1]:50051,[2001:db8::2]:50051",
    "unix:/run/jobstate.sock",
    "unix:relative.sock",
    "unix:///run/jobstate.sock",
]
BAD = [
    "",
    "::::",
    "jobstate",  # no port
    "jobstate:",
    "jobstate:0",
    "jobstate:65536",
    ":50051",
    "a b:1",
    "é.example:1",
    "[::1:50051",
    "http://jobstate:50051",
    "xds:///jobstate",
    "dns:",
    "dns:///",
    "dns://127.0.0.1",  # an authority and no name
    "dns:jobstate:x",
    "ipv4:",
    "ipv4:1.2.3:5",
    "ipv4:300.1.1.1:1",
    "ipv4:127.0.0.1:",
    "ipv4:127.0.0.1,",
    "ipv4:::1",
    "ipv6:[::1",
    "ipv6:[::1]:",
    "ipv6:[::1]x",
    "ipv6:1.2.3.4",
    "unix:",
    "unix://",
    "unix://relative",
    "unix:/a\x00b",
]


@pytest.mark.parametrize("target", GOOD)
def test_grpc_target_forms_are_accepted(target: str) -> None:
    assert is_target(target)


@pytest.mark.parametrize("target", BAD)
def test_anything_else_is_refused(target: str) -> None:
    assert not is_target(target)

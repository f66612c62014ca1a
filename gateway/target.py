"""gRPC targets (JOBSTATE_TARGET) checked before a channel is made: pure, no I/O.

grpc accepts almost any string as a target and fails only when it first connects, so a typo
(`::::`) would start a gateway whose every call fails. The forms accepted are grpc's own
(https://github.com/grpc/grpc/blob/master/doc/naming.md) that a deployment of jobstate uses:

- `host:port` (resolved by DNS; the port is required),
- `dns:[//authority/]host[:port]`,
- `ipv4:address[:port][,address[:port]...]`,
- `ipv6:address` or `ipv6:[address]:port`, comma-separated likewise,
- `unix:path` or `unix:///absolute/path`.
"""

from __future__ import annotations

import ipaddress
import re

FORMS = (
    "host:port, ipv4:address[:port][,...], ipv6:address or [address]:port[,...], "
    "dns:[//authority/]host[:port] or unix:path"
)
_HOSTNAME = re.compile(
    r"(?=.{1,253}\.?$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
    r"(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?"
)


def is_target(value: str) -> bool:
    """True when `value` is one of the target forms above."""
    scheme, colon, rest = value.partition(":")
    if colon and scheme in _SCHEMES:
        return _SCHEMES[scheme](rest)
    host, colon, port = value.rpartition(":")
    return bool(colon) and _host(host) and _port(port)


def _port(text: str) -> bool:
    return text.isascii() and text.isdigit() and 0 < int(text) <= 65535


def _ip(text: str, version: int) -> bool:
    try:
        return ipaddress.ip_address(text).version == version
    except ValueError:
        return False


def _host(text: str) -> bool:
    if text.startswith("[") and text.endswith("]"):
        return _ip(text[1:-1], 6)
    return _ip(text, 4) or bool(text.isascii() and _HOSTNAME.fullmatch(text))


def _host_and_optional_port(text: str) -> bool:
    if text.startswith("["):
        host, bracket, tail = text.partition("]")
        return bool(bracket) and _host(host + "]") and (not tail or _colon_port(tail))
    host, colon, port = text.partition(":")
    return _host(host) and (not colon or _port(port))


def _colon_port(text: str) -> bool:
    return text.startswith(":") and _port(text[1:])


def _dns(rest: str) -> bool:
    if rest.startswith("//"):
        authority, slash, rest = rest[2:].partition("/")
        if not slash or (authority and not _host_and_optional_port(authority)):
            return False
    return _host_and_optional_port(rest)


def _ipv4_item(item: str) -> bool:
    address, colon, port = item.partition(":")
    return _ip(address, 4) and (not colon or _port(port))


def _ipv6_item(item: str) -> bool:
    if item.startswith("["):
        address, bracket, tail = item[1:].partition("]")
        return bool(bracket) and _ip(address, 6) and (not tail or _colon_port(tail))
    return _ip(item, 6)


def _ipv4(rest: str) -> bool:
    return all(_ipv4_item(item) for item in rest.split(","))


def _ipv6(rest: str) -> bool:
    return all(_ipv6_item(item) for item in rest.split(","))


def _unix(rest: str) -> bool:
    path = rest[2:] if rest.startswith("//") else rest
    return bool(path) and "\x00" not in path and (not rest.startswith("//") or path[0] == "/")


_SCHEMES = {"dns": _dns, "ipv4": _ipv4, "ipv6": _ipv6, "unix": _unix}

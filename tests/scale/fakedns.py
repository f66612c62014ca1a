"""A DNS server on loopback that answers one name with several A records.

gRPC's `dns://<server>/<name>:<port>` targets ask the given server (c-ares), so a test can
give a name several replicas' addresses (127.0.0.1, 127.0.0.2, ... are all loopback) without
touching the machine's resolver. Anything else gets an empty NOERROR answer.
"""

from __future__ import annotations

import asyncio
import socket
import struct


def _qname(packet: bytes, offset: int) -> tuple[str, int]:
    labels = []
    while packet[offset]:
        length = packet[offset]
        labels.append(packet[offset + 1 : offset + 1 + length].decode("ascii"))
        offset += 1 + length
    return ".".join(labels).lower(), offset + 1


def answer(query: bytes, records: dict[str, list[str]]) -> bytes:
    (ident,) = struct.unpack("!H", query[:2])
    name, end = _qname(query, 12)
    qtype, _qclass = struct.unpack("!HH", query[end : end + 4])
    question = query[12 : end + 4]
    addresses = records.get(name.rstrip("."), []) if qtype == 1 else []
    header = struct.pack("!HHHHHH", ident, 0x8180, 1, len(addresses), 0, 0)
    body = b"".join(
        struct.pack("!HHHIH", 0xC00C, 1, 1, 1, 4) + socket.inet_aton(address)
        for address in addresses
    )
    return header + question + body


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, records: dict[str, list[str]]) -> None:
        self.records = records
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        try:
            reply = answer(data, self.records)
        except (IndexError, struct.error, UnicodeDecodeError):
            return  # not a query we understand: no answer, the client retries or gives up
        self.transport.sendto(reply, addr)


class FakeDns:
    def __init__(self, records: dict[str, list[str]]) -> None:
        self.records = records
        self.port = 0
        self._transport: asyncio.DatagramTransport | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Protocol(self.records), local_addr=("127.0.0.1", 0)
        )
        self._transport = transport
        self.port = transport.get_extra_info("sockname")[1]

    def target(self, name: str, port: int) -> str:
        return f"dns://127.0.0.1:{self.port}/{name}:{port}"

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

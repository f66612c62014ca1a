"""WebSocket frames built once and written to many sockets.

A server's frames are not masked (RFC 6455, 5.1), so the bytes of one text frame are the same
for every socket it goes to: `watch.Event` builds them once per event, and an idle socket gets
them with one `transport.write` instead of a send through aiohttp's writer per socket.
"""

from __future__ import annotations

import struct

_TEXT = 0x81  # FIN + opcode 1 (text)


def text_frame(text: str) -> bytes:
    """One unfragmented, unmasked text frame carrying `text`."""
    data = text.encode()
    size = len(data)
    if size < 126:
        header = struct.pack("!BB", _TEXT, size)
    elif size < 1 << 16:
        header = struct.pack("!BBH", _TEXT, 126, size)
    else:
        header = struct.pack("!BBQ", _TEXT, 127, size)
    return header + data

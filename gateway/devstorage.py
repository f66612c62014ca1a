"""Development without R2: outputs on local disk, downloaded from the gateway behind signed
links.

Only when ENVIRONMENT=development and R2_ENDPOINT_URL is empty, so `make dev` runs the whole
demo offline, download included. A link is `api/dev/outputs/<key>?expires=T&sig=S` relative to
the gateway's public URL, with S = HMAC-SHA256(key, T) under the callback secret; the route
(`jobs.local_outputs`) exists only while this storage is the one in use.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from pathlib import Path
from urllib.parse import quote

from gateway.errors import NotFound

ROUTE = "/api/dev/outputs/"


class LocalStorage:
    def __init__(self, root: Path, secret: str, expires_in: int) -> None:
        self.root = root.resolve()
        self._key = secret.encode()
        self.expires_in = expires_in

    def path(self, key: str) -> Path:
        """Where `key` lives; NotFound for keys that would leave the root."""
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root) or path == self.root:
            raise NotFound("no such output")
        return path

    def _sig(self, key: str, expires: int) -> str:
        return hmac.new(self._key, f"{key}\n{expires}".encode(), hashlib.sha256).hexdigest()

    def presign(self, key: str) -> str:
        expires = int(time.time()) + self.expires_in
        query = f"expires={expires}&sig={self._sig(key, expires)}"
        return f"{ROUTE.lstrip('/')}{quote(key)}?{query}"

    def check(self, key: str, expires: str, sig: str) -> Path:
        """The file a signed link names; NotFound when the link expired or was not ours."""
        if not expires.isdigit() or int(expires) < time.time():
            raise NotFound("the link expired")
        if not hmac.compare_digest(self._sig(key, int(expires)), sig):
            raise NotFound("no such output")
        return self.path(key)

    async def put(self, key: str, body: bytes, content_type: str) -> None:
        path = self.path(key)
        await asyncio.to_thread(_write, path, body)


def _write(path: Path, body: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body)

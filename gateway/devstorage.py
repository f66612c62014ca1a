"""Development without R2: outputs on local disk, served by the gateway behind signed URLs.

Only when ENVIRONMENT=development and R2_ENDPOINT_URL is empty, so `make dev` runs the whole
demo offline, download included. A URL is `/api/dev/outputs/<key>?expires=T&sig=S` with
S = HMAC-SHA256(key, T) under the callback secret; the route exists only in development.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from pathlib import Path
from urllib.parse import quote

from aiohttp import web

from gateway.context import services
from gateway.disposition import attachment
from gateway.errors import NotFound


class LocalOutputs:
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
        return f"/api/dev/outputs/{quote(key)}?{query}"

    def check(self, key: str, expires: str, sig: str) -> Path:
        if not expires.isdigit() or int(expires) < time.time():
            raise NotFound("the link expired")
        if not hmac.compare_digest(self._sig(key, int(expires)), sig):
            raise NotFound("no such output")
        return self.path(key)

    async def put(self, key: str, body: bytes) -> None:
        path = self.path(key)
        await asyncio.to_thread(_write, path, body)


def _write(path: Path, body: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body)


async def serve_output(request: web.Request) -> web.StreamResponse:
    outputs = services(request).storage.local
    if outputs is None:
        raise NotFound("not found")
    key = request.match_info["key"]
    path = outputs.check(key, request.query.get("expires", ""), request.query.get("sig", ""))
    if not path.is_file():
        raise NotFound("no such output")
    # The same header R2 sends for a presigned URL (storage.Storage.presign).
    return web.FileResponse(path, headers={"Content-Disposition": attachment(key)})

"""Object storage for outputs: one interface, chosen once at start-up by `create_storage`.

- R2 (Cloudflare's S3 API, `r2.R2Storage`) when R2_ENDPOINT_URL is set;
- local files under `./data/outputs` in development without it (`devstorage.LocalStorage`),
  downloaded from this gateway behind signed links;
- otherwise nothing (`NoStorage`): downloads answer 503 and what is put is discarded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from gateway.config import GatewayConfig
from gateway.devstorage import LocalStorage
from gateway.errors import ServiceUnavailable
from gateway.r2 import R2Storage


class StorageUnavailable(ServiceUnavailable):
    pass


class Storage(Protocol):
    @property
    def expires_in(self) -> int:
        """Seconds a presigned link stays valid."""
        ...

    def presign(self, key: str) -> str:
        """A link that downloads `key` (with `Content-Disposition: attachment`), valid
        `expires_in` seconds: absolute, or relative to the gateway's public URL. Raises
        StorageUnavailable when there is no storage."""
        ...

    async def put(self, key: str, body: bytes, content_type: str) -> None:
        """Store `body` at `key` (the simulated worker's outputs)."""
        ...


class NoStorage:
    """Production without R2_ENDPOINT_URL: nothing to download from."""

    def __init__(self, expires_in: int) -> None:
        self.expires_in = expires_in

    def presign(self, key: str) -> str:
        raise StorageUnavailable("object storage is not configured (R2_ENDPOINT_URL)")

    async def put(self, key: str, body: bytes, content_type: str) -> None:
        """Discards `body`: its download would answer 503 anyway."""


def create_storage(config: GatewayConfig) -> Storage:
    if config.storage_configured:
        return R2Storage(
            endpoint_url=config.r2_endpoint_url,
            access_key_id=config.r2_access_key_id,
            secret_access_key=config.r2_secret_access_key,
            bucket=config.r2_bucket,
            expires_in=config.presign_expires,
        )
    if config.development:
        root = Path(config.data_dir) / "outputs"
        return LocalStorage(root, config.callback_secret, config.presign_expires)
    return NoStorage(config.presign_expires)

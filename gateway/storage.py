"""Object storage for outputs (Cloudflare R2 through its S3 API, boto3, SigV4, region auto).

boto3 is synchronous: signing is local and cheap, uploads (the simulated worker's) run in a
thread. Not configured (no R2_ENDPOINT_URL): in development outputs go to local disk
(`devstorage.LocalOutputs`), in production `presign` raises StorageUnavailable.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from gateway.config import GatewayConfig
from gateway.devstorage import LocalOutputs
from gateway.disposition import attachment
from gateway.errors import ServiceUnavailable


class StorageUnavailable(ServiceUnavailable):
    pass


class Storage:
    def __init__(self, config: GatewayConfig) -> None:
        self._config = config
        self.bucket = config.r2_bucket
        self.expires_in = config.presign_expires
        self._s3: Any = None
        self.local: LocalOutputs | None = None
        if config.development and not config.storage_configured:
            root = Path(config.data_dir) / "outputs"
            self.local = LocalOutputs(root, config.callback_secret, config.presign_expires)

    @property
    def configured(self) -> bool:
        return self._config.storage_configured or self.local is not None

    def _client(self) -> Any:
        if not self._config.storage_configured:
            raise StorageUnavailable("object storage is not configured (R2_ENDPOINT_URL)")
        if self._s3 is None:
            import boto3
            from botocore.config import Config

            self._s3 = boto3.client(
                "s3",
                endpoint_url=self._config.r2_endpoint_url,
                aws_access_key_id=self._config.r2_access_key_id or None,
                aws_secret_access_key=self._config.r2_secret_access_key or None,
                region_name="auto",
                config=Config(
                    signature_version="s3v4",
                    s3={"addressing_style": "path"},
                    retries={"max_attempts": 3, "mode": "standard"},
                    connect_timeout=5,
                    read_timeout=30,
                ),
            )
        return self._s3

    def presign(self, key: str) -> str:
        """A presigned GET for `key`, valid `expires_in` seconds (a path when local); the
        download comes with `Content-Disposition: attachment` and the key's file name."""
        if self.local is not None:
            return self.local.presign(key)
        return self._client().generate_presigned_url(
            "get_object",
            # Signed into the URL: R2 answers the GET with this header, so browsers save it.
            Params={
                "Bucket": self.bucket,
                "Key": key,
                "ResponseContentDisposition": attachment(key),
            },
            ExpiresIn=self.expires_in,
        )

    async def put(self, key: str, body: bytes, content_type: str) -> None:
        if self.local is not None:
            await self.local.put(key, body)
            return
        client = self._client()
        await asyncio.to_thread(
            client.put_object, Bucket=self.bucket, Key=key, Body=body, ContentType=content_type
        )

"""Outputs in Cloudflare R2 through its S3 API (boto3, SigV4, region auto, path addressing).

boto3 is synchronous: signing is local and cheap, uploads (the simulated worker's) run in a
thread. The boto3 client is made on first use, so a gateway that never presigns never loads it.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from gateway.disposition import attachment

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client  # boto3-stubs[s3], a dev dependency: types only


class R2Storage:
    def __init__(
        self,
        *,
        endpoint_url: str,
        access_key_id: str,
        secret_access_key: str,
        bucket: str,
        expires_in: int,
    ) -> None:
        self.bucket = bucket
        self.expires_in = expires_in
        self._endpoint_url = endpoint_url
        self._access_key_id = access_key_id
        self._secret_access_key = secret_access_key
        self._s3: S3Client | None = None

    def _client(self) -> S3Client:
        if self._s3 is None:
            import boto3
            from botocore.config import Config

            self._s3 = boto3.client(
                "s3",
                endpoint_url=self._endpoint_url,
                aws_access_key_id=self._access_key_id or None,
                aws_secret_access_key=self._secret_access_key or None,
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
        return str(
            self._client().generate_presigned_url(
                "get_object",
                # Signed into the URL: R2 answers the GET with this header, so browsers save it.
                Params={
                    "Bucket": self.bucket,
                    "Key": key,
                    "ResponseContentDisposition": attachment(key),
                },
                ExpiresIn=self.expires_in,
            )
        )

    async def put(self, key: str, body: bytes, content_type: str) -> None:
        client = self._client()
        await asyncio.to_thread(
            client.put_object, Bucket=self.bucket, Key=key, Body=body, ContentType=content_type
        )

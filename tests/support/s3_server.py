"""A real S3-compatible server for the tests of originals kept in a bucket.

Moto's server (``moto[server]``) speaks S3's documented HTTP API on a local port: the
product talks to it through django-storages and boto3 exactly as it would to AWS S3,
MinIO or Ceph. It is the stand-in for a vendor's cloud service, nothing else is faked.
It runs in a thread of the test process; other processes (a live stack's web and
workers) reach it over HTTP like any S3 endpoint.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from tests.support.processes import free_port

ACCESS_KEY = "assistant-test-key"
SECRET_KEY = "assistant-test-secret"
REGION = "us-east-1"


@dataclass(frozen=True)
class S3Server:
    endpoint_url: str

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3", endpoint_url=self.endpoint_url, region_name=REGION,
            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
        )  # fmt: skip

    def create_bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str) -> list[str]:
        """Every object's key in ``bucket``, sorted."""
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))

    def read(self, bucket: str, key: str) -> bytes:
        return bytes(self.client().get_object(Bucket=bucket, Key=key)["Body"].read())

    def environment(self, bucket: str, prefix: str = "") -> dict[str, str]:
        """The product's settings for ``bucket`` on this server, as environment variables."""
        return {
            "STORAGE_S3_BUCKET": bucket,
            "STORAGE_S3_ENDPOINT_URL": self.endpoint_url,
            "STORAGE_S3_REGION": REGION,
            "STORAGE_S3_ACCESS_KEY_ID": ACCESS_KEY,
            "STORAGE_S3_SECRET_ACCESS_KEY": SECRET_KEY,
            "STORAGE_S3_PREFIX": prefix,
        }

    def storage_settings(self, bucket: str, prefix: str = "") -> dict[str, Any]:
        """``STORAGES["default"]`` as assistant/settings.py builds it for ``bucket`` (for in-process tests)."""
        from assistant.settings import originals_storage

        return originals_storage(
            bucket=bucket, endpoint_url=self.endpoint_url, region=REGION, access_key=ACCESS_KEY,
            secret_key=SECRET_KEY, prefix=prefix,
        )  # fmt: skip


@contextmanager
def s3_server() -> Iterator[S3Server]:
    """Moto's S3 server on a free local port, for as long as the block runs."""
    from moto.server import ThreadedMotoServer

    # One log line per request otherwise, on the test run's output.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield S3Server(endpoint_url=f"http://127.0.0.1:{port}")
    finally:
        server.stop()

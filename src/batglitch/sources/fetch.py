"""Bounded, timed-out, retried reads of whole objects from local paths, s3:// or https://.

The one place that knows how to talk to remote storage for event files: every fetch runs under
the one retry policy (batglitch.sources.retry) with the client's own timeouts; a missing object
ends as FileNotFoundError, so callers can try the next location, a failure a retry may fix as
TransientError.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

from batglitch.sources import retry
from batglitch.sources.retry import RetryPolicy

PUBLIC_BUCKETS = ("nasa-heasarc",)


@dataclass(frozen=True)
class Blob:
    data: bytes
    url: str
    size: int
    etag: str | None


def storage_options_for(
    url: str, overrides: dict[str, Any] | None = None, *, timeout_s: float = 60.0
) -> dict[str, Any]:
    """Options fsspec needs for a URL: anonymous access to public buckets, the clients' own
    timeouts everywhere (timeout_s between bytes of an answer, 10 s to connect).

    The endpoint of S3 follows AWS_ENDPOINT_URL_S3 (LocalStack) through botocore itself.
    """
    protocol = fsspec.utils.get_protocol(url)
    options: dict[str, Any] = {}
    if protocol == "s3":
        bucket = url.split("://", 1)[1].split("/", 1)[0]
        # public open-data buckets are read unsigned unless BATGLITCH_S3_ANON=0 says otherwise
        options["anon"] = bucket in PUBLIC_BUCKETS and os.environ.get("BATGLITCH_S3_ANON") != "0"
        options["config_kwargs"] = {"connect_timeout": 10, "read_timeout": timeout_s}
    elif protocol in ("http", "https"):
        import aiohttp

        timeout = aiohttp.ClientTimeout(total=None, connect=10, sock_read=timeout_s)
        options["client_kwargs"] = {"timeout": timeout}
    return {**options, **(overrides or {})}


def fetch(url: str, policy: RetryPolicy | None = None) -> Blob:
    """Read one whole object into memory (event files are tens of MB at most)."""
    policy = policy or RetryPolicy(timeout_s=120.0)
    fs, path = fsspec.core.url_to_fs(url, **storage_options_for(url, timeout_s=policy.timeout_s))
    protocol = fsspec.utils.get_protocol(url)

    def read() -> Blob:
        # read first: HTTP "info" reports every failure (503, refused) as a missing file
        data = fs.cat_file(path)
        etag = fs.info(path).get("ETag") if protocol == "s3" else None
        return Blob(data, url, len(data), etag.strip('"') if isinstance(etag, str) else None)

    return retry.call(read, f"reading {url}", policy)


def write_atomically(fs: fsspec.AbstractFileSystem, path: str, data: bytes) -> None:
    """Readers see all of ``data`` or nothing: an object-store PUT already is atomic, a local
    file is written beside the target and renamed over it."""
    if isinstance(fs, LocalFileSystem):
        fs.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{uuid.uuid4().hex}.tmp"
        fs.pipe_file(tmp, data)
        os.replace(tmp, path)
    else:
        fs.pipe_file(path, data)


def exists(url: str) -> bool:
    """Whether anything is at a URL (a file, a directory, an S3 object or prefix)."""
    fs, path = fsspec.url_to_fs(url, **storage_options_for(url))
    return bool(fs.exists(path))

"""Bounded, timed-out, retried reads of whole objects from local paths, s3:// or https://.

The one place that knows how to talk to remote storage for event files: every fetch has a
timeout, a fixed number of attempts and exponential backoff; failures a retry can fix end as
TransientError, a missing object as FileNotFoundError, so callers can try the next location.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

from batglitch.errors import TransientError

PUBLIC_BUCKETS = ("nasa-heasarc",)


@dataclass(frozen=True)
class FetchPolicy:
    timeout_s: float = 120.0
    attempts: int = 4
    backoff_s: float = 1.0  # doubled after every failed attempt


@dataclass(frozen=True)
class Blob:
    data: bytes
    url: str
    size: int
    etag: str | None


def storage_options_for(url: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Options fsspec needs for a URL: anonymous access to public buckets, timeouts everywhere.

    The endpoint of S3 follows AWS_ENDPOINT_URL_S3 (LocalStack) through botocore itself.
    """
    protocol = fsspec.utils.get_protocol(url)
    options: dict[str, Any] = {}
    if protocol == "s3":
        bucket = url.split("://", 1)[1].split("/", 1)[0]
        # public open-data buckets are read unsigned unless BATGLITCH_S3_ANON=0 says otherwise
        options["anon"] = bucket in PUBLIC_BUCKETS and os.environ.get("BATGLITCH_S3_ANON") != "0"
        options["config_kwargs"] = {"connect_timeout": 10, "read_timeout": 60}
    return {**options, **(overrides or {})}


def with_retries[T](action: Callable[[], T], what: str, policy: FetchPolicy) -> T:
    """Run ``action`` up to ``policy.attempts`` times; give up with TransientError naming ``what``."""
    delay = policy.backoff_s
    for attempt in range(1, policy.attempts + 1):
        try:
            return action()
        except (FileNotFoundError, PermissionError, IsADirectoryError):
            raise
        except Exception as exc:  # network stacks raise many unrelated types for the same outage
            if attempt == policy.attempts:
                raise TransientError(f"{what}: {exc} (after {attempt} attempts)") from exc
            time.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")


def fetch(url: str, policy: FetchPolicy | None = None) -> Blob:
    """Read one whole object into memory (event files are tens of MB at most)."""
    policy = policy or FetchPolicy()
    fs, path = fsspec.core.url_to_fs(url, **storage_options_for(url))
    protocol = fsspec.utils.get_protocol(url)

    def read() -> Blob:
        # read first: HTTP "info" reports every failure (503, refused) as a missing file
        data = fs.cat_file(path)
        etag = fs.info(path).get("ETag") if protocol == "s3" else None
        return Blob(data, url, len(data), etag.strip('"') if isinstance(etag, str) else None)

    return with_retries(lambda: _timed(read, policy.timeout_s, url), f"reading {url}", policy)


def _timed[T](action: Callable[[], T], timeout_s: float, url: str) -> T:
    """Enforce a wall-clock limit on one attempt, whatever the filesystem's own timeouts are."""
    pool = ThreadPoolExecutor(max_workers=1)
    future = pool.submit(action)
    try:
        return future.result(timeout=timeout_s)
    except FutureTimeout as exc:
        raise TimeoutError(f"{url}: no answer within {timeout_s:.0f} s") from exc
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


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

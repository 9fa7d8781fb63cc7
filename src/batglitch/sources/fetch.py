"""Bounded, timed-out, retried reads of event files from local paths, s3:// or https://.

The one place that knows how to talk to remote storage for event files: every fetch runs under
the one retry policy (batglitch.sources.retry) with the client's own timeouts; a missing object
ends as FileNotFoundError, so callers can try the next location, a failure a retry may fix as
TransientError. Sizes are capped twice (the object, and the FITS bytes it expands to) and a whole
read is time-limited; over a cap is a permanent EventFileError, never retried. The download is
streamed straight into the decompressor, so the compressed bytes are never held whole.
"""

from __future__ import annotations

import os
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

from batglitch.errors import EventFileError
from batglitch.sources import retry
from batglitch.sources.retry import RetryPolicy

PUBLIC_BUCKETS = ("nasa-heasarc",)


@dataclass(frozen=True)
class Limits:
    """Caps on one event file: over any of them is permanent (configurable per call)."""

    max_object_bytes: int = 1024**3  # a 10 M-event GRB trigger file is ~0.15 GB gzipped
    max_fits_bytes: int | None = None  # None: the reader's own cap (events.MAX_FITS_BYTES)
    max_seconds: float = 600.0  # a whole read, however slowly the bytes drip in
    chunk_bytes: int = 4 * 1024**2  # one network read (one ranged GET on S3)


@dataclass(frozen=True)
class Blob:
    """An event file's FITS bytes (decompressed), where they came from and the object's size."""

    data: memoryview
    url: str
    size: int  # bytes of the object as stored (gzipped)
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


def fetch(
    url: str,
    policy: RetryPolicy | None = None,
    limits: Limits | None = None,
    *,
    obsid: str | None = None,
) -> Blob:
    """Stream one FITS file (an event file, an enable map) into its bytes, within the caps;
    errors name ``obsid``."""
    # imported here: the storage code uses this module's helpers without the science modules
    from batglitch.science.events import MAX_FITS_BYTES, read_stream

    policy = policy or RetryPolicy(timeout_s=120.0)
    limits = limits or Limits()

    def read() -> Blob:
        deadline = time.monotonic() + limits.max_seconds
        with _open(url, policy.timeout_s, limits.chunk_bytes) as (size, etag, stream):
            if size is not None and size > limits.max_object_bytes:
                problem = f"object is {size} bytes: over the {limits.max_object_bytes}-byte cap"
                raise EventFileError(url, problem, obsid)
            counted = 0

            def chunks() -> Iterator[bytes]:
                nonlocal counted
                while piece := stream(limits.chunk_bytes):
                    counted += len(piece)
                    if counted > limits.max_object_bytes:
                        problem = f"more than {limits.max_object_bytes} bytes: over the cap"
                        raise EventFileError(url, problem, obsid)
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{url}: not read within {limits.max_seconds:.0f} s")
                    yield piece

            try:
                data = read_stream(chunks(), url, limit=limits.max_fits_bytes or MAX_FITS_BYTES)
            except EventFileError as exc:
                if exc.obsid or not obsid:
                    raise
                raise EventFileError(exc.source, exc.problem, obsid) from exc
        return Blob(data, url, counted, etag)

    return retry.call(read, f"reading {url}", policy)


@contextmanager
def _open(
    url: str, timeout_s: float, chunk_bytes: int
) -> Iterator[tuple[int | None, str | None, Callable[[int], bytes]]]:
    """(size if known, ETag if any, read(n)) of one object, streamed.

    HTTP(S) goes through urllib: one GET, no redirects (a redirect could lead anywhere, e.g. to a
    metadata service), 404 as FileNotFoundError and 403 as PermissionError as S3 reports them,
    other statuses as HTTPError for the retry policy; fsspec's HTTP open would ask HEAD first,
    which reports outages as missing files.
    """
    protocol = fsspec.utils.get_protocol(url)
    if protocol in ("http", "https"):
        try:
            response = _NO_REDIRECTS.open(url, timeout=timeout_s)
        except urllib.error.HTTPError as exc:
            if exc.code in (403, 404):
                exc.close()
                raise (FileNotFoundError if exc.code == 404 else PermissionError)(url) from None
            raise
        with response:
            length = response.headers.get("Content-Length", "")
            size = int(length) if length.isdigit() else None
            yield size, response.headers.get("ETag"), response.read
        return
    fs, path = fsspec.core.url_to_fs(url, **storage_options_for(url, timeout_s=timeout_s))
    info = fs.info(path)
    if info.get("type") == "directory":
        raise IsADirectoryError(url)
    etag = info.get("ETag")
    with fs.open(path, "rb", block_size=chunk_bytes, cache_type="none") as f:
        yield info.get("size"), etag.strip('"') if isinstance(etag, str) else None, f.read


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        raise EventFileError(req.full_url, f"redirected ({code}) to {newurl}: refused")


_NO_REDIRECTS = urllib.request.build_opener(_RefuseRedirects)


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

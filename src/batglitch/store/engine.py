"""The published archive's engine: an Icechunk repository under ``<archive URL>/repo``.

Icechunk gives the archive atomic commits (a reader's session is one snapshot, never a mix),
snapshots, tags, conflict detection between two publishes, and its own expiry and garbage
collection. This module only says where the repository lives and how a version is named; what
goes into a commit is publish.py's business.

Facts used (icechunk 2.3 docs and its Python stubs): local storage is not safe for concurrent
commits (the embedded default therefore commits from one process); S3 storage takes an endpoint,
path-style addressing and plain http for S3 stand-ins such as LocalStack, and uses conditional
writes for its references.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import fsspec

from batglitch.errors import BatGlitchError
from batglitch.store.keys import REPO

BRANCH = "main"


@functools.cache
def icechunk_module() -> Any:
    """icechunk, imported on first use (workers never need it), warnings kept to errors unless
    ICECHUNK_LOG says otherwise: it warns on every open that local storage is unsafe for
    concurrent commits (we commit from one process) and about its conditional-PUT readback."""
    import icechunk

    if "ICECHUNK_LOG" not in os.environ:
        icechunk.set_logs_filter("error")
    return icechunk


def repo_storage(url: str, storage_options: dict[str, Any] | None = None) -> Any:
    """The icechunk Storage of the archive at ``url`` (a local path or s3://bucket/prefix).

    S3 credentials and endpoint come from the fsspec options the rest of the project uses (key,
    secret, endpoint_url, client_kwargs.region_name), else from the environment
    (AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL, the usual AWS credential chain)."""
    icechunk = icechunk_module()
    protocol = fsspec.utils.get_protocol(url)
    if protocol == "file":
        return icechunk.local_filesystem_storage(
            os.path.join(os.path.abspath(fsspec.utils.stringify_path(url.split("://")[-1])), REPO)
        )
    if protocol != "s3":
        raise BatGlitchError(f"{url}: the archive lives on a local path or s3://, not {protocol}")
    options = storage_options or {}
    bucket, _, prefix = url.split("://", 1)[1].rstrip("/").partition("/")
    endpoint = (
        options.get("endpoint_url")
        or os.environ.get("AWS_ENDPOINT_URL_S3")
        or os.environ.get("AWS_ENDPOINT_URL")
    )
    region = (options.get("client_kwargs") or {}).get("region_name") or os.environ.get(
        "AWS_REGION", os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
    )
    keys = (
        {"access_key_id": options["key"], "secret_access_key": options["secret"]}
        if options.get("key")
        else {"from_env": True}
    )
    return icechunk.s3_storage(
        bucket=bucket,
        prefix=f"{prefix}/{REPO}" if prefix else REPO,
        region=region,
        endpoint_url=endpoint,
        allow_http=bool(endpoint and endpoint.startswith("http://")),
        force_path_style=bool(endpoint),  # stand-ins answer on one host, not per-bucket names
        **keys,
    )


def open_repository(
    url: str, storage_options: dict[str, Any] | None = None, *, create: bool = False
) -> Any | None:
    """The archive's repository; None when nothing was ever published (and create is False)."""
    icechunk = icechunk_module()
    storage = repo_storage(url, storage_options)
    if create:
        return icechunk.Repository.open_or_create(storage)
    try:
        return icechunk.Repository.open(storage)
    except icechunk.IcechunkError as exc:
        try:
            there = icechunk.Repository.exists(storage)
        except icechunk.IcechunkError:
            there = True
        if not there:
            return None
        problem = str(exc).strip().splitlines()[0]  # icechunk adds lines of Rust context
        raise BatGlitchError(f"{url}: its Icechunk repository cannot be read: {problem}") from exc


def readonly_session(repo: Any, version: str | None = None) -> Any:
    """A read-only session at ``version``: a tag (a run id), a branch, or a snapshot id; the tip
    of main when None. The session is one snapshot: whatever commits later, it reads the same."""
    if version is None or version in repo.list_branches():
        return repo.readonly_session(branch=version or BRANCH)
    if version in repo.list_tags():
        return repo.readonly_session(tag=version)
    try:
        return repo.readonly_session(snapshot_id=version)
    except (icechunk_module().IcechunkError, ValueError) as exc:
        raise FileNotFoundError(
            f"archive version {version!r} not found: no run tag, branch or snapshot of that name "
            "(expired, or never published)"
        ) from exc

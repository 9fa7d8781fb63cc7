"""Process one observation: stream its event file, find glitch windows, write its own fragment.

Pure with respect to other observations and idempotent: an attempt writes only under its own
attempt id and its completion marker comes last, so a re-run simply supersedes it.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any

from batglitch.archive import Archive, Fragment
from batglitch.catalog import ObsEntry
from batglitch.config import DetectionConfig
from batglitch.dpi import glitch_table
from batglitch.errors import BatGlitchError, EventFileError, TransientError
from batglitch.events import parse_events
from batglitch.metadata import window_metadata
from batglitch.remote import Blob, FetchPolicy, fetch

DONE, NO_GLITCHES, NOT_ARCHIVED, FAILED = "done", "no_glitches", "not_archived", "failed"


@dataclass(frozen=True)
class ObsResult:
    """What happened to one observation; small and JSON-ready (it travels through Step Functions)."""

    obsid: str
    status: str
    n_windows: int = 0
    n_events: int = 0
    bytes_read: int = 0
    seconds: float = 0.0
    source: str = ""
    error: str = ""
    retryable: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def process_entry(
    entry: ObsEntry,
    archive: Archive,
    config: DetectionConfig | None = None,
    policy: FetchPolicy | None = None,
    *,
    allow_uncalibrated: bool = False,
) -> ObsResult:
    """Fetch the first event-file location that exists and archive its windows.

    Raises EventFileError for a bad file and TransientError when the storage keeps failing;
    an observation whose file is nowhere yet is a result (NOT_ARCHIVED), not an error.
    """
    started = time.perf_counter()
    blob = None
    for url in entry.event_urls:
        try:
            blob = fetch(url, policy)
            break
        except (FileNotFoundError, PermissionError):  # S3 says 403 for a missing key, too
            continue
        except TransientError as exc:
            raise TransientError(f"obsid {entry.obsid}: {exc}") from exc
    if blob is None:
        where = ", ".join(entry.event_urls) or "no location known"
        if entry.archived:  # the catalog says it exists: a wrong root or a lost file, not "later"
            raise EventFileError(
                where, "listed as archived but missing at every location", entry.obsid
            )
        return ObsResult(
            entry.obsid, NOT_ARCHIVED, seconds=time.perf_counter() - started, error=where
        )
    utcf = float(entry.triggers[0]["utcf"]) if entry.triggers else None
    return archive_blob(
        blob,
        archive,
        config,
        expected_obsid=entry.obsid,
        triggers=entry.triggers,
        utcf=utcf,
        allow_uncalibrated=allow_uncalibrated,
        started=started,
        from_quicklook=not entry.archived,
    )


def archive_blob(
    blob: Blob,
    archive: Archive,
    config: DetectionConfig | None = None,
    *,
    expected_obsid: str | None = None,
    triggers: tuple[dict[str, Any], ...] = (),
    utcf: float | None = None,
    allow_uncalibrated: bool = False,
    started: float | None = None,
    from_quicklook: bool = False,
) -> ObsResult:
    """Detect glitches in one event file already in memory and write its fragment."""
    started = time.perf_counter() if started is None else started
    config = config or DetectionConfig()
    try:
        events = parse_events(blob.data, blob.url, allow_uncalibrated=allow_uncalibrated)
    except EventFileError as exc:
        if exc.obsid or not expected_obsid:
            raise
        raise EventFileError(exc.source, exc.problem, expected_obsid) from exc
    obsid = events.obsid or expected_obsid
    if obsid is None:
        raise EventFileError(blob.url, "no OBS_ID in the header and none given")
    if expected_obsid and obsid != expected_obsid:
        raise EventFileError(blob.url, f"header OBS_ID is {obsid}", expected_obsid)
    table = glitch_table(events, config)
    if utcf is None:
        utcf = float(events.header.get("UTCFINIT", 0.0))
    fragment = Fragment(
        obsid=obsid,
        table=table,
        window_meta=window_metadata(table, utcf=utcf, triggers=triggers),
        source=blob.url,
        size=blob.size,
        etag=blob.etag,
        config=config,
    )
    try:
        archive.write_fragment(fragment, from_quicklook=from_quicklook)
    except Exception as exc:  # storage trouble (throttling, a lost connection): worth a retry
        raise TransientError(f"obsid {obsid}: writing to {archive.url}: {exc!r}") from exc
    return ObsResult(
        obsid,
        DONE if len(table) else NO_GLITCHES,
        n_windows=len(table),
        n_events=len(events),
        bytes_read=blob.size,
        seconds=time.perf_counter() - started,
        source=blob.url,
    )


def failed(obsid: str, exc: BaseException, started: float) -> ObsResult:
    """The result record of an observation that raised; the message already names obsid and file."""
    return ObsResult(
        obsid,
        FAILED,
        seconds=time.perf_counter() - started,
        error=str(exc) if isinstance(exc, BatGlitchError) else f"{type(exc).__name__}: {exc}",
        retryable=isinstance(exc, TransientError),
    )


def ingest_file(url: str, archive: Archive, **kwargs: Any) -> ObsResult:
    """Archive an event file a user already has (obsid from its OBS_ID header); never raises."""
    started = time.perf_counter()
    try:
        return archive_blob(fetch(url), archive, started=started, **kwargs)
    except Exception as exc:
        return failed("?", exc, started)

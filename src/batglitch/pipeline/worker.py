"""Process one observation: stream its event file, find glitch windows, write its own fragment.

Pure with respect to other observations and idempotent: an attempt writes only under its own
attempt id and its completion marker comes last, so a re-run simply supersedes it.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from batglitch.errors import BatGlitchError, EventFileError, TransientError
from batglitch.science.config import DetectionConfig
from batglitch.science.dpi import WindowTable, glitch_table
from batglitch.science.events import EventList, parse_events
from batglitch.science.metadata import window_metadata
from batglitch.sources.catalog import ObsEntry
from batglitch.sources.fetch import Blob, fetch
from batglitch.sources.retry import RetryPolicy
from batglitch.store.archive import Archive, Fragment
from batglitch.store.keys import OBSID, validate_obsid

DONE, NO_GLITCHES, NOT_ARCHIVED, FAILED = "done", "no_glitches", "not_archived", "failed"
DEFERRED = "deferred"  # planned, not started: the run's window budget (--max-windows) was spent


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
    policy: RetryPolicy | None = None,
    *,
    allow_uncalibrated: bool = False,
) -> ObsResult:
    """Fetch the first location of the pointed event file that exists (and of the slewing one,
    when the plan asked for it) and archive their windows as the obsid's fragment.

    Raises EventFileError for a bad file and TransientError when the storage keeps failing;
    an observation whose file is nowhere yet is a result (NOT_ARCHIVED), not an error.
    """
    started = time.perf_counter()
    validate_obsid(entry.obsid)  # a manifest's obsid becomes a key: refuse a "../" at once
    blob = _first_found(entry.event_urls, entry.obsid, policy)
    if blob is None:
        where = ", ".join(entry.event_urls) or "no location known"
        if entry.archived:  # the catalog says it exists: a wrong root or a lost file, not "later"
            raise EventFileError(
                where, "listed as archived but missing at every location", entry.obsid
            )
        return ObsResult(
            entry.obsid, NOT_ARCHIVED, seconds=time.perf_counter() - started, error=where
        )
    slewing = _first_found(entry.slew_urls, entry.obsid, policy) if entry.slew_urls else None
    return archive_blobs(
        [blob] if slewing is None else [blob, slewing],
        archive,
        config,
        expected_obsid=entry.obsid,
        triggers=entry.triggers,
        utcf=float(entry.triggers[0]["utcf"]) if entry.triggers else None,
        allow_uncalibrated=allow_uncalibrated,
        started=started,
        from_quicklook=not entry.archived,
    )


def _first_found(urls: Sequence[str], obsid: str, policy: RetryPolicy | None) -> Blob | None:
    for url in urls:
        try:
            return fetch(url, policy)
        except (FileNotFoundError, PermissionError):  # S3 says 403 for a missing key, too
            continue
        except TransientError as exc:
            raise TransientError(f"obsid {obsid}: {exc}") from exc
    return None


def archive_blobs(
    blobs: Sequence[Blob],
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
    """Detect glitches in event files of one observation already in memory (each file on its
    own, as the reference does) and write their windows as one fragment."""
    started = time.perf_counter() if started is None else started
    config = config or DetectionConfig()
    tables, sources, n_events = [], [], 0
    for blob in blobs:
        events = _parse(blob, expected_obsid, allow_uncalibrated)
        expected_obsid = events.obsid or expected_obsid
        if utcf is None:
            utcf = float(events.header.get("UTCFINIT", 0.0))
        tables.append(glitch_table(events, config))
        sources.append(np.full(len(tables[-1]), blob.url, dtype=object))
        n_events += len(events)
    if expected_obsid is None:
        raise EventFileError(blobs[0].url, "no OBS_ID in the header and none given")
    table = WindowTable.concat(tables)
    fragment = Fragment(
        obsid=expected_obsid,
        rows={
            **table.columns(),
            **window_metadata(table, utcf=utcf or 0.0, triggers=triggers),
            "source_file": np.concatenate(sources),
        },
        source=", ".join(b.url for b in blobs),
        size=sum(b.size for b in blobs),
        etag=", ".join(b.etag or "" for b in blobs).strip(", ") or None,
        config=config.as_attrs(),
    )
    try:
        archive.write_fragment(fragment, from_quicklook=from_quicklook)
    except Exception as exc:  # storage trouble (throttling, a lost connection): worth a retry
        raise TransientError(f"obsid {expected_obsid}: writing to {archive.url}: {exc!r}") from exc
    return ObsResult(
        expected_obsid,
        DONE if len(table) else NO_GLITCHES,
        n_windows=len(table),
        n_events=n_events,
        bytes_read=fragment.size,
        seconds=time.perf_counter() - started,
        source=fragment.source,
    )


def _parse(blob: Blob, expected_obsid: str | None, allow_uncalibrated: bool) -> EventList:
    """parse_events, with errors that name the planned obsid and a check that the file is its."""
    try:
        events = parse_events(blob.data, blob.url, allow_uncalibrated=allow_uncalibrated)
    except EventFileError as exc:
        if exc.obsid or not expected_obsid:
            raise
        raise EventFileError(exc.source, exc.problem, expected_obsid) from exc
    if expected_obsid and events.obsid and events.obsid != expected_obsid:
        raise EventFileError(blob.url, f"header OBS_ID is {events.obsid}", expected_obsid)
    if events.obsid and not OBSID.fullmatch(events.obsid):  # it becomes a storage key
        raise EventFileError(blob.url, f"header OBS_ID {events.obsid!r} is not 11 digits")
    return events


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
        return archive_blobs([fetch(url)], archive, started=started, **kwargs)
    except Exception as exc:
        return failed("?", exc, started)

"""Process one observation: stream its event file, find glitch windows, write its own fragment.

Pure with respect to other observations and idempotent: an attempt writes only under its own
attempt id and its completion marker comes last, so a re-run simply supersedes it.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from batglitch.errors import BatGlitchError, EventFileError, TransientError
from batglitch.pipeline.plan import ObsEntry, dumps_record
from batglitch.science.config import DetectionConfig, detector_plane
from batglitch.science.detmask import MAX_MAP_BYTES, EnableMaps, parse_enable_maps
from batglitch.science.dpi import WindowTable, glitch_table
from batglitch.science.events import EventList, parse_events
from batglitch.science.grb import GLITCH, GRB, burst_columns, grb_table
from batglitch.science.metadata import window_metadata
from batglitch.sources.fetch import Limits, fetch
from batglitch.sources.guano import Dump
from batglitch.sources.heasarc import ENABLE_MAP, bat_file_name, kind_of
from batglitch.sources.places import Places
from batglitch.sources.retry import RetryPolicy
from batglitch.sources.timebase import FileSpan, resolve_triggers
from batglitch.store.archive import Archive, Fragment
from batglitch.store.keys import validate_obsid
from batglitch.store.schema import detector_flags

DONE, NO_GLITCHES, NOT_ARCHIVED, FAILED = "done", "no_glitches", "not_archived", "failed"
# An event file inside a downloaded observation (<obsid>/bat/event/<file>): its map is in bat/hk/
DOWNLOADED_EVENT_FILE = re.compile(r"(.+)/bat/event/[^/]+$")
logger = logging.getLogger(__name__)
BAT_TRIGGER = "BAT GRB"  # trigger_type of GRB rows: BAT's own trigger, not a GUANO dump
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
    places: Places | None = None,
    allow_uncalibrated: bool = False,
) -> ObsResult:
    """Read the first existing location of every planned event file (po, sp and, when asked,
    sl; each searched on its own, as the reference does) and archive their windows as the
    obsid's fragment; for a GRB entry, the BAT trigger's file and its one GRB window. Rows
    carry the entry's label and the catalogued bursts they fall in.

    Every planned URL must lie in an allowed place (default: the configured ones), checked
    before anything is read. Raises EventFileError for a bad file, a refused URL or an archived
    file missing everywhere, TransientError when the storage keeps failing; an observation none
    of whose files is anywhere yet (a quick-look file that is gone included) is a result
    (NOT_ARCHIVED), not an error. Nothing is written unless every file read cleanly, so a bad
    file leaves the obsid's previous rows as they were.
    """
    started = time.perf_counter()
    validate_obsid(entry.obsid)  # a manifest's obsid becomes a key: refuse a "../" at once
    places = places or Places.configured()
    for url in (*(u for f in entry.files for u in f.urls), *entry.enable_map):
        places.check(url, entry.obsid)
    config = config or DetectionConfig()
    search = functools.partial(
        _search_first,
        obsid=entry.obsid,
        config=config,
        policy=policy,
        allow_uncalibrated=allow_uncalibrated,
        cut=_grb_window if entry.label == GRB else glitch_table,
    )
    searched = []
    for planned in entry.files:
        found = search(planned.urls)
        if found is not None:
            searched.append(found)
        elif planned.archived:  # the listing says it exists: a wrong root or a lost file
            where = ", ".join(planned.urls)
            raise EventFileError(
                where, "listed as archived but missing at every location", entry.obsid
            )
    if not searched:
        where = ", ".join(u for f in entry.files for u in f.urls) or "no location known"
        return ObsResult(
            entry.obsid, NOT_ARCHIVED, seconds=time.perf_counter() - started, error=where
        )
    return _write(
        searched,
        archive,
        config,
        maps=_enable_maps(entry.enable_map, entry.obsid, policy),
        obsid=entry.obsid,
        dumps=entry.dumps,
        started=started,
        # rows from quick-look (or missing a file still on its way) are redone once archived
        from_quicklook=not entry.archived,
        label=entry.label,
        bursts=entry.bursts,
    )


@dataclass(frozen=True)
class _Searched:
    """One event file's windows and what the fragment records about the file."""

    table: WindowTable
    url: str
    size: int
    etag: str | None
    n_events: int
    obsid: str | None
    span: FileSpan  # the file's own time coverage, against which dump times are read


def _enable_maps(urls: Sequence[str], obsid: str, policy: RetryPolicy | None) -> EnableMaps | None:
    """The obsid's detector enable/disable maps from the first location that has them; None
    (its rows say "unknown") where none has. A map that is there but unreadable, or of another
    obsid, costs only the detector states: one warning naming obsid and file, rows "unknown"
    (the windows are the product; the map is context)."""
    try:
        return _first_found(urls, obsid, lambda url: _read_maps(url, obsid, policy))
    except EventFileError as exc:
        logger.warning("%s: detector states left unknown", exc)
        return None


def _read_maps(url: str, obsid: str, policy: RetryPolicy | None) -> EnableMaps:
    blob = fetch(url, policy, Limits(max_fits_bytes=MAX_MAP_BYTES), obsid=obsid)
    maps = parse_enable_maps(blob.data, url, obsid)
    if maps.obsid not in (None, obsid):
        raise EventFileError(url, f"enable map of OBS_ID {maps.obsid}", obsid)
    return maps


def _search_first(urls: Sequence[str], obsid: str, **kwargs: Any) -> _Searched | None:
    return _first_found(urls, obsid, lambda url: _search(url, obsid, **kwargs))


def _first_found[T](urls: Sequence[str], obsid: str, read: Callable[[str], T]) -> T | None:
    """What ``read`` makes of the first location that exists; None when none does. A storage
    that keeps failing is a TransientError naming the obsid (the whole obsid is retried)."""
    for url in urls:
        try:
            return read(url)
        except (FileNotFoundError, PermissionError):  # S3 says 403 for a missing key, too
            continue
        except TransientError as exc:
            raise TransientError(f"obsid {obsid}: {exc}") from exc
    return None


def _search(
    url: str,
    obsid: str | None,
    *,
    config: DetectionConfig,
    policy: RetryPolicy | None,
    allow_uncalibrated: bool,
    cut: Callable[[EventList, DetectionConfig], WindowTable] = glitch_table,
) -> _Searched:
    """Read one event file and cut its windows on its own, as the reference does (cut: the
    glitch search, or the GRB notebook's trigger window)."""
    events, size, etag = _read(url, obsid, policy, allow_uncalibrated)
    return _Searched(
        table=cut(events, config),
        url=url,
        size=size,
        etag=etag,
        n_events=len(events),
        obsid=events.obsid,
        span=_span(events),
    )


def _grb_window(events: EventList, config: DetectionConfig) -> WindowTable:
    """The trigger file's GRB window at its own TRIGTIME."""
    return grb_table(events, config=config)


def _span(events: EventList) -> FileSpan:
    h, gti = events.header, events.gti
    utcf = h.get("UTCFINIT")
    return FileSpan(
        tstart=float(h.get("TSTART", gti[:, 0].min() if len(gti) else 0.0)),
        tstop=float(h.get("TSTOP", gti[:, 1].max() if len(gti) else 0.0)),
        gti=gti,
        utcf=None if utcf is None else float(utcf),
    )


def _read(
    url: str, obsid: str | None, policy: RetryPolicy | None, allow_uncalibrated: bool
) -> tuple[EventList, int, str | None]:
    """The file's columns, named by the planned obsid and checked to be its; the FITS bytes are
    dropped on return, before the search, so they and the search never share the peak."""
    blob = fetch(url, policy, obsid=obsid)
    try:
        events = parse_events(blob.data, url, allow_uncalibrated=allow_uncalibrated)
    except EventFileError as exc:
        if exc.obsid or not obsid:
            raise
        raise EventFileError(exc.source, exc.problem, obsid) from exc
    if obsid and events.obsid and events.obsid != obsid:
        raise EventFileError(url, f"header OBS_ID is {events.obsid}", obsid)
    return events, blob.size, blob.etag


def _write(
    files: Sequence[_Searched],
    archive: Archive,
    config: DetectionConfig,
    *,
    maps: EnableMaps | None = None,
    obsid: str | None,
    dumps: Sequence[Dump] = (),
    started: float,
    from_quicklook: bool = False,
    label: str = GLITCH,
    bursts: Sequence[dict[str, Any]] = (),
) -> ObsResult:
    """The windows of one observation's files as its fragment (one write, after every read).

    The dumps' trigger times are read in the time base their begin/end fit the files' own MET
    (sources.timebase); the decision is kept per window and per obsid. Each window's detectors
    are flagged by the enable map in force at its start (unknown without maps)."""
    obsid = obsid or files[0].obsid
    if obsid is None:
        raise EventFileError(files[0].url, "no OBS_ID in the header and none given")
    table = WindowTable.concat([f.table for f in files])
    triggers = resolve_triggers(dumps, [f.span for f in files])
    utcf = triggers[0].utcf if triggers else files[0].span.utcf
    metadata = [dataclasses.asdict(t) for t in triggers]
    if label == GRB and not metadata and len(table):  # the trigger itself, from its file
        metadata = [{"triggertype": BAT_TRIGGER, "trigger_met": float(table.window_start[0])}]

    def per_window(value: Any) -> np.ndarray:
        return np.concatenate([np.full(len(f.table), value(f), dtype=object) for f in files])

    fragment = Fragment(
        obsid=obsid,
        rows={
            **table.columns(),
            **window_metadata(table, utcf=utcf or 0.0, triggers=metadata),
            "source_file": per_window(lambda f: f.url),
            "source_kind": per_window(lambda f: kind_of(f.url)),
            **burst_columns(table.window_start, table.window_stop, label, bursts),
            "detector_flags": _flags(maps, table.window_start),
        },
        source=", ".join(f.url for f in files),
        size=sum(f.size for f in files),
        etag=", ".join(f.etag or "" for f in files).strip(", ") or None,
        config=config.as_attrs(),
        dumps=dumps_record(dumps),
        time_base=json.dumps(
            [
                {
                    "triggertime": d.to_dict()["triggertime"],
                    "base": t.time_base,
                    "checked": t.checked,
                }
                for d, t in zip(dumps, triggers, strict=True)
            ]
        ),
    )
    try:
        archive.write_fragment(fragment, from_quicklook=from_quicklook)
    except Exception as exc:  # storage trouble (throttling, a lost connection): worth a retry
        raise TransientError(f"obsid {obsid}: writing to {archive.url}: {exc!r}") from exc
    return ObsResult(
        obsid,
        DONE if len(table) else NO_GLITCHES,
        n_windows=len(table),
        n_events=sum(f.n_events for f in files),
        bytes_read=fragment.size,
        seconds=time.perf_counter() - started,
        source=fragment.source,
    )


def _flags(maps: EnableMaps | None, window_start: np.ndarray) -> np.ndarray:
    """The detector_flags rows: the map in force at each window's start, or unknown."""
    if maps is None:
        return detector_flags(detector_plane(), None, np.zeros(len(window_start)))
    return detector_flags(detector_plane(), maps.enabled, maps.at(window_start))


def failed(obsid: str, exc: BaseException, started: float) -> ObsResult:
    """The result record of an observation that raised; the message already names obsid and file."""
    return ObsResult(
        obsid,
        FAILED,
        seconds=time.perf_counter() - started,
        error=str(exc) if isinstance(exc, BatGlitchError) else f"{type(exc).__name__}: {exc}",
        retryable=isinstance(exc, TransientError),
    )


def ingest_file(
    url: str,
    archive: Archive,
    *,
    config: DetectionConfig | None = None,
    allow_uncalibrated: bool = False,
) -> ObsResult:
    """Archive an event file a user already has (obsid from its OBS_ID header); never raises.

    The user named the file, so any path is read (within the size caps). Its observation's
    enable map is taken from where a download of the whole observation keeps it, ../hk/ next to
    bat/event/ (unknown when it is not there)."""
    started = time.perf_counter()
    config = config or DetectionConfig()
    try:
        searched = _search(
            url, None, config=config, policy=None, allow_uncalibrated=allow_uncalibrated
        )
        maps = None
        download = DOWNLOADED_EVENT_FILE.match(url)
        if searched.obsid and download:
            nearby = f"{download.group(1)}/bat/hk/{bat_file_name(searched.obsid, ENABLE_MAP)}"
            maps = _enable_maps([nearby], searched.obsid, None)
        return _write([searched], archive, config, maps=maps, obsid=None, started=started)
    except Exception as exc:  # the obsid whenever the header gave one
        return failed(getattr(exc, "obsid", None) or "?", exc, started)

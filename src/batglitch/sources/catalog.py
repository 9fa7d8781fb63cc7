"""GUANO planner: which observations have BAT event dumps in a date range, and where their event
files live.

The Swift API is reached through the real swifttools client. It has no paging, retries or
exceptions, and it silently skips its clock correction on large answers, so this module pages in
small windows, retries with backoff, checks every status and corrects times itself when needed.
swifttools is imported only inside plan(): importing it writes to the home directory, which
workers on read-only file systems (Lambda) must not do just to read a manifest.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import re
import threading
from collections.abc import Callable, Iterator, Sequence, Set
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import fsspec

from batglitch.errors import BatGlitchError, TransientError
from batglitch.science.grb import GLITCH
from batglitch.sources import retry as retry_policy
from batglitch.sources.fetch import write_atomically
from batglitch.sources.places import Places
from batglitch.sources.retry import RetryPolicy

HEASARC_HTTPS = "https://heasarc.gsfc.nasa.gov/FTP/"
API_URL_ENV = "SWIFT_TOO_API_URL"
MET_EPOCH = datetime(2001, 1, 1)
# swifttools clock-corrects a whole answer in one GET; above ~145 entries that URL is refused.
MAX_PAGE_SIZE = 100
MAX_PAGES_PER_WINDOW = 1000

_OBSID = re.compile(r"\d{11}")
_MONTH = re.compile(r"^swift/data/obs/(\d{4}_\d{2})/")
_client_lock = threading.RLock()  # re-entrant: plan() inside a swift_client() block
logger = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class ObsEntry:
    """One observation to process: its event-file URLs (alternatives, tried in order) and the
    metadata of every GUANO dump that falls in it.

    triggers: dicts with triggertype, triggertime (UTC ISO, clock-corrected), trigger_met,
    offset, duration, utcf, quadsaway. slew_urls is filled only when planned with slewing=True.
    label: the class of the entry's windows: GLITCH (its dumps' event file, searched for
    glitches) or GRB (a BAT trigger's bevshsp file, its window cut at TRIGTIME). bursts:
    catalogued bursts (sources.grbs.Burst.to_dict()) near the observation; for GRB, its own first.
    """

    obsid: str
    event_urls: tuple[str, ...]
    archived: bool
    month: str | None
    triggers: tuple[dict[str, Any], ...]
    slew_urls: tuple[str, ...] = ()
    label: str = GLITCH
    bursts: tuple[dict[str, Any], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ObsEntry:
        return cls.from_dict(json.loads(text))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ObsEntry:
        """From a manifest item; keys an orchestrator added (store, run_id) are ignored."""
        return cls(
            obsid=d["obsid"],
            event_urls=tuple(d["event_urls"]),
            archived=d["archived"],
            month=d["month"],
            triggers=tuple(d["triggers"]),
            slew_urls=tuple(d.get("slew_urls", ())),
            label=d.get("label", GLITCH),
            bursts=tuple(d.get("bursts", ())),
        )


def plan(
    begin: datetime | str,
    end: datetime | str,
    *,
    window_days: float = 7.0,
    page_size: int = MAX_PAGE_SIZE,
    slewing: bool = False,
    skip: Set[str] = frozenset(),
    skipped: set[str] | None = None,
    timeout_s: float = 60.0,
    retries: int = 4,
    backoff_s: float = 2.0,
    progress: Progress | None = None,
    api_url: str | None = None,
    roots: Sequence[str] | None = None,
    quicklook: Sequence[str] | None = None,
    workers: int = 4,
) -> list[ObsEntry]:
    """Observations with GUANO dumps triggered in [begin, end) (UTC), minus those in `skip`.

    The range is queried in windows of window_days, each paged by page_size; every request is
    tried 1 + retries times with exponential backoff (backoff_s, 2*backoff_s, ...) and a client
    timeout of timeout_s. Dumps are merged per obsid; event-file locations are resolved with
    `workers` concurrent Data requests. api_url defaults to env SWIFT_TOO_API_URL, then the
    client's own default; roots and quicklook: see sources.places (a quick-look URL the API
    gives outside the quick-look site is left out). progress(stage, done, total) is called
    after each window (stage "guano") and each resolved obsid (stage "data").
    Raises TransientError naming the window or obsid whose requests kept failing.
    """
    t0, t1 = _naive_utc(begin), _naive_utc(end)
    if not 0 < page_size <= MAX_PAGE_SIZE:
        raise ValueError(f"page_size must be in 1..{MAX_PAGE_SIZE}, got {page_size}")
    if window_days <= 0 or t1 <= t0:
        raise ValueError(f"need begin < end and window_days > 0, got {t0}, {t1}, {window_days}")
    from swifttools.swift_too import GUANO, Data

    retry = functools.partial(_retrying, retries=retries, backoff_s=backoff_s)
    locate = functools.partial(
        _locate, Data, slewing=slewing, places=Places.configured(roots, quicklook), retry=retry
    )
    with swift_client(api_url, timeout_s):
        dumps = _dumps_by_obsid(GUANO, t0, t1, window_days, page_size, retry, progress)
        if skipped is not None:
            skipped |= dumps.keys() & skip
        dumps = {o: d for o, d in dumps.items() if o not in skip}
        obsids = sorted(dumps, key=lambda o: (min(d["trigger_met"] for d in dumps[o]), o))
        entries = []
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for n, (obsid, where) in enumerate(
                zip(obsids, pool.map(locate, obsids), strict=True), 1
            ):
                entries.append(ObsEntry(obsid=obsid, triggers=tuple(dumps[obsid]), **where))
                _report(progress, "data", n, len(obsids))
    return entries


def write_manifest(
    entries: Sequence[ObsEntry], url: str, storage_options: dict[str, Any] | None = None
) -> None:
    """JSON lines, or one JSON array when the URL ends in .json (what Step Functions' item
    reader takes everywhere); never half a manifest for a reader to find."""
    fs, path = fsspec.url_to_fs(url, **(storage_options or {}))
    items = [e.to_dict() for e in entries]
    if path.endswith(".json"):
        text = json.dumps(items, sort_keys=True)
    else:
        text = "".join(json.dumps(item, sort_keys=True) + "\n" for item in items)
    write_atomically(fs, path, text.encode())


def read_manifest(url: str, storage_options: dict[str, Any] | None = None) -> list[ObsEntry]:
    """Either format of write_manifest."""
    fs, path = fsspec.url_to_fs(url, **(storage_options or {}))
    text = fs.cat_file(path).decode()
    if path.endswith(".json"):
        return [ObsEntry.from_dict(item) for item in json.loads(text)]
    return [ObsEntry.from_json(line) for line in text.splitlines() if line.strip()]


@contextmanager
def swift_client(api_url: str | None = None, timeout_s: float = 60.0) -> Iterator[None]:
    """Point the real swifttools client at api_url (default: env SWIFT_TOO_API_URL, then the
    client's own) with timeout_s, inside the block.

    swifttools reads SWIFT_TOO_API_URL once at import and keeps it, with its timeout, as class
    attributes of the base class that every query class (and its internal clock query)
    inherits. This is the one place that sets them, so a fake API on a random port works
    whenever swifttools was first imported. The lock keeps concurrent plans from mixing them.
    """
    from swifttools.swift_too.base.common import TOOAPIBaseclass as Base

    with _client_lock:
        saved = Base._api_base, Base._timeout
        Base._api_base = (api_url or os.environ.get(API_URL_ENV) or saved[0]).rstrip("/")
        Base._timeout = timeout_s
        try:
            yield
        finally:
            Base._api_base, Base._timeout = saved


class _Refused(Exception):
    """A Swift API answer whose status is not "Accepted" (swifttools reports, never raises)."""


def _accepted[T](call: Callable[[], T], what: str) -> T:
    answer = call()
    status = answer.status  # type: ignore[attr-defined]
    if status.status == "Accepted" and not status.errors:
        return answer
    problems = "; ".join(str(e) for e in status.errors) or f"status {status.status}"
    logger.warning("%s: %s", what, problems)
    raise _Refused(problems)


def _retrying[T](call: Callable[[], T], what: str, *, retries: int, backoff_s: float) -> T:
    """swifttools never raises on failure: timeouts, 5xx and bad JSON land in status.errors."""
    policy = RetryPolicy(attempts=retries + 1, backoff_s=backoff_s, timeout_s=60.0)
    return retry_policy.call(lambda: _accepted(call, what), what, policy)


def _dumps_by_obsid(
    guano: Callable[..., Any],
    t0: datetime,
    t1: datetime,
    window_days: float,
    page_size: int,
    retry: Callable[..., Any],
    progress: Progress | None,
) -> dict[str, list[dict[str, Any]]]:
    """Every dump per obsid, once each (windows and pages may overlap), sorted by trigger MET."""
    merged: dict[str, dict[tuple[float, str], dict[str, Any]]] = {}
    unusable = 0
    windows = _windows(t0, t1, timedelta(days=window_days))
    for i, (w0, w1) in enumerate(windows, 1):
        for entry in _window_entries(guano, w0, w1, page_size, retry):
            obsid = str(entry.obs_id) if entry.obs_id is not None else ""
            if not _OBSID.fullmatch(obsid) or entry.triggertime is None:
                unusable += 1  # dump not executed or not downlinked yet: nothing to read
                continue
            try:
                dump = _dump(entry)
            except TransientError as exc:  # one dump without a usable time: leave it for later
                logger.warning("%s; left out of this plan", exc)
                unusable += 1
                continue
            merged.setdefault(obsid, {})[(dump["trigger_met"], dump["triggertype"])] = dump
        _report(progress, "guano", i, len(windows))
    if unusable:
        logger.info("%d GUANO dumps without an observation id (pending) left out", unusable)
    return {o: sorted(d.values(), key=lambda x: x["trigger_met"]) for o, d in merged.items()}


def _window_entries(
    guano: Callable[..., Any],
    w0: datetime,
    w1: datetime,
    page_size: int,
    retry: Callable[..., Any],
) -> list[Any]:
    entries: list[Any] = []
    for page in range(MAX_PAGES_PER_WINDOW):
        offset = page * page_size
        what = f"GUANO window {w0.isoformat()}..{w1.isoformat()} offset {offset}"
        answer = retry(
            functools.partial(guano, begin=w0, end=w1, limit=page_size, offset=offset), what
        )
        entries += answer.entries
        if len(answer.entries) < page_size:
            return entries
    raise BatGlitchError(
        f"GUANO window {w0.isoformat()}..{w1.isoformat()} has more than "
        f"{MAX_PAGES_PER_WINDOW} pages of {page_size}: use smaller windows"
    )


def _dump(entry: Any) -> dict[str, Any]:
    """Trigger metadata of one dump, with the UTC trigger time = 2001-01-01 + MET + UTCF."""
    tt = entry.triggertime
    if getattr(tt, "isutc", False) and getattr(tt, "utcf", None) is not None:
        met, utcf = tt.met, tt.utcf  # swifttools' clock correction happened
    else:
        # Skipped silently (its clock request was too long): the time is still Swift time,
        # and the dump's GTI carries the UTCF.
        met = (tt - MET_EPOCH).total_seconds()
        utcf = entry.data.utcf if entry.data is not None else None
        if utcf is None:
            raise TransientError(
                f"GUANO dump of obsid {entry.obs_id} at {tt}: no clock correction and no UTCF"
            )
    met = round(float(met), 6)
    utc = MET_EPOCH + timedelta(seconds=met + float(utcf))
    return {
        "triggertype": entry.triggertype,
        "triggertime": utc.isoformat(timespec="microseconds"),
        "trigger_met": met,
        "offset": entry.offset,
        "duration": entry.duration,
        "utcf": float(utcf),
        "quadsaway": entry.quadsaway,
    }


def _locate(
    data: Callable[..., Any],
    obsid: str,
    *,
    slewing: bool,
    places: Places,
    retry: Callable[..., Any],
) -> dict[str, Any]:
    """event_urls, archived, month (and slew_urls) of one obsid, from its Data listing.

    An obsid whose listing keeps failing gets no location (its worker reports it not archived,
    and the next run plans it again) rather than failing the whole plan."""
    try:
        answer = retry(
            functools.partial(data, obs_id=obsid, bat=True, auxil=False, fetch=False),
            f"Data listing of obsid {obsid}",
        )
        urls, archived, month = _file_urls(answer.entries, f"sw{obsid}bevshpo_uf.evt.gz", places)
    except BatGlitchError as exc:
        logger.warning("obsid %s: no event-file location: %s", obsid, exc)
        return {"event_urls": (), "archived": False, "month": None}
    if not urls:
        logger.warning("obsid %s: no pointed BAT event file listed yet", obsid)
    where: dict[str, Any] = {"event_urls": urls, "archived": archived, "month": month}
    if slewing:
        where["slew_urls"] = _file_urls(answer.entries, f"sw{obsid}bevshsl_uf.evt.gz", places)[0]
    return where


def _file_urls(
    files: Sequence[Any], name: str, places: Places
) -> tuple[tuple[str, ...], bool, str | None]:
    """(URLs to try, archived, YYYY_MM) of one file; the archived copy wins over quick-look."""
    matches = sorted((f for f in files if f.filename == name), key=lambda f: bool(f.quicklook))
    if not matches:
        return (), False, None
    f = matches[0]
    if f.quicklook:  # the API's own URL: only read from the quick-look site
        return (places.check(f.url, quicklook=True),), False, None
    if not f.url.startswith(HEASARC_HTTPS):
        raise BatGlitchError(f"{name}: archive URL outside {HEASARC_HTTPS}: {f.url}")
    key = f.url.removeprefix(HEASARC_HTTPS)
    month = _MONTH.match(key)
    return (
        tuple(places.check(f"{root}/{key}") for root in places.roots),
        True,
        month.group(1) if month else None,
    )


def _windows(t0: datetime, t1: datetime, step: timedelta) -> list[tuple[datetime, datetime]]:
    starts = [t0 + i * step for i in range(int((t1 - t0) / step) + 1)]
    return [(s, min(s + step, t1)) for s in starts if s < t1]


def _naive_utc(t: datetime | str) -> datetime:
    """The client sends naive datetimes as UTC; aware ones are converted, strings parsed."""
    t = datetime.fromisoformat(t) if isinstance(t, str) else t
    return t.astimezone(UTC).replace(tzinfo=None) if t.tzinfo else t


def _report(progress: Progress | None, stage: str, done: int, total: int) -> None:
    if progress is not None:
        progress(stage, done, total)

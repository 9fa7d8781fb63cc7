"""GUANO client: every BAT event dump triggered in a time range, as typed Dump values.

Talks to the Swift API directly over one kept-alive httpx client (swifttools 4.0.5 opens a new
HTTPS connection per request, ~23 ms of CPU each, and its clock correction costs one extra request
listing every datetime and is silently skipped when that request fails). Facts used, from the
swifttools 4.0.5 source and recorded answers (DESIGN.md, "External systems"):
- GET {base}/swift/guano with begin, end, limit; the base URL from env SWIFT_TOO_API_URL,
  default the v2 API; answers carry `status` (an object, or a bare string on some endpoints)
  whose `status` is "Accepted" and `errors` empty when all went well;
- entries come newest first; whether `limit` is capped and whether `offset` is honoured is
  undocumented: this client never pages by offset and never relies on order. It queries time
  windows and splits a window in half whenever its answer may be full (see _WindowSplitter);
- times are raw: UTC in the recorded answers, Swift time if swifttools' assumption holds. The
  dump keeps them as answered with the UTCF of its GTIs; timebase.py decides per dump against
  the event file's own MET.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx

from batglitch.errors import BatGlitchError
from batglitch.sources import retry
from batglitch.sources.heasarc import EVENT_FILE, KINDS
from batglitch.sources.retry import HTTPStatusError, PermanentError, RetryPolicy

API_URL_ENV = "SWIFT_TOO_API_URL"
DEFAULT_API_URL = "https://www.swift.psu.edu/api/v2"  # swifttools 4.0.5 base/constants.py
_OBSID = re.compile(r"\d{11}")
_DURATION = re.compile(
    r"^P(?:(?P<d>\d+(?:\.\d+)?)D)?"
    r"(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)
logger = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class Dump:
    """One GUANO dump as the service answered it.

    Times are naive datetimes in the service's base, which is checked against the event file
    (timebase.py); utcf (s) comes from the dump's GTIs, None when the answer has none. kinds are
    the event-file kinds its data list (po, sp, sl); exposure_s is summed over its GTIs.
    """

    obsid: str
    triggertype: str
    triggertime: datetime
    offset: float = 0.0
    duration: float = 0.0
    begin: datetime | None = None
    end: datetime | None = None
    utcf: float | None = None
    kinds: tuple[str, ...] = ()
    exposure_s: float = 0.0
    quadsaway: int | None = None

    @property
    def key(self) -> tuple[str, datetime, str]:
        """Identity across overlapping windows and repeated answers."""
        return self.obsid, self.triggertime, self.triggertype

    def to_dict(self) -> dict[str, Any]:
        return {
            "obsid": self.obsid,
            "triggertype": self.triggertype,
            "triggertime": _iso(self.triggertime),
            "offset": self.offset,
            "duration": self.duration,
            "begin": _iso(self.begin),
            "end": _iso(self.end),
            "utcf": self.utcf,
            "kinds": list(self.kinds),
            "exposure_s": self.exposure_s,
            "quadsaway": self.quadsaway,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Dump:
        return cls(
            obsid=d["obsid"],
            triggertype=d["triggertype"],
            triggertime=datetime.fromisoformat(d["triggertime"]),
            offset=float(d["offset"]),
            duration=float(d["duration"]),
            begin=_time(d.get("begin")),
            end=_time(d.get("end")),
            utcf=None if d.get("utcf") is None else float(d["utcf"]),
            kinds=tuple(d.get("kinds", ())),
            exposure_s=float(d.get("exposure_s", 0.0)),
            quadsaway=d.get("quadsaway"),
        )


def parse_entry(entry: Mapping[str, Any]) -> Dump | None:
    """A Dump from one GUANO entry; None for a dump not executed or not downlinked yet."""
    obsid = str(entry.get("obs_id") or "")
    data = entry.get("data") or {}
    triggertime = _time(entry.get("triggertime"))
    if not _OBSID.fullmatch(obsid) or triggertime is None:
        return None
    gtis = [g for g in (data.get("all_gtis") or []) if g] or [data.get("gti") or {}]
    names = list(data.get("filenames") or [])
    for gti in gtis:
        name = gti.get("filename")
        names += name if isinstance(name, list) else [name] if name else []
    kinds = {m.group(2) for m in map(EVENT_FILE.search, names) if m and m.group(1) == obsid}
    utcfs = [g["utcf"] for g in gtis if g.get("utcf") is not None]
    begins = [t for t in (_time(g.get("begin")) for g in gtis) if t is not None]
    ends = [t for t in (_time(g.get("end")) for g in gtis) if t is not None]
    return Dump(
        obsid=obsid,
        triggertype=str(entry.get("triggertype") or ""),
        triggertime=triggertime,
        offset=float(entry.get("offset") or 0.0),  # null when unknown
        duration=float(entry.get("duration") or 0.0),
        begin=_time(data.get("begin")) or min(begins, default=None),
        end=_time(data.get("end")) or max(ends, default=None),
        utcf=float(utcfs[0]) if utcfs else None,
        kinds=tuple(k for k in KINDS if k in kinds),
        exposure_s=sum(duration_s(g.get("exposure")) for g in gtis),
        quadsaway=entry.get("quadsaway"),
    )


def duration_s(value: Any) -> float:
    """Seconds of an exposure: an ISO-8601 duration ("PT3M20.130886S") or a number."""
    if value is None:
        return 0.0
    if isinstance(value, int | float):
        return float(value)
    m = _DURATION.match(str(value))
    if m is None or not any(m.groupdict().values()):
        raise ValueError(f"not an ISO-8601 duration: {value!r}")
    parts = {k: float(v) for k, v in m.groupdict().items() if v}
    return (
        parts.get("d", 0) * 86400 + parts.get("h", 0) * 3600 + parts.get("m", 0) * 60
    ) + parts.get("s", 0.0)


class SwiftAPI:
    """JSON GETs to the Swift API over one kept-alive connection pool, under the retry policy.

    Thread-safe (httpx.Client is); use as a context manager. A refused request (status other
    than Accepted, with errors) is permanent; an HTTP error follows the retry policy.
    """

    def __init__(self, url: str | None = None, policy: RetryPolicy | None = None) -> None:
        self.url = (url or os.environ.get(API_URL_ENV) or DEFAULT_API_URL).rstrip("/")
        self.policy = policy or RetryPolicy(timeout_s=120.0)  # swifttools' own timeout
        self.requests: Counter[str] = Counter()  # per endpoint, retries included
        self._lock = threading.Lock()
        self._client = httpx.Client(
            timeout=httpx.Timeout(self.policy.timeout_s, connect=10.0),
            follow_redirects=True,
            limits=httpx.Limits(max_connections=16, max_keepalive_connections=16),
        )

    def __enter__(self) -> SwiftAPI:
        return self

    def __exit__(self, *exc: object) -> None:
        self._client.close()

    def get(self, endpoint: str, params: Mapping[str, Any], what: str) -> dict[str, Any]:
        return retry.call(lambda: self._get_once(endpoint, params), what, self.policy)

    def _get_once(self, endpoint: str, params: Mapping[str, Any]) -> dict[str, Any]:
        with self._lock:
            self.requests[endpoint] += 1
        response = self._client.get(f"{self.url}{endpoint}", params=dict(params))
        if response.status_code >= 300:
            raise HTTPStatusError(
                str(response.url), response.status_code, response.headers.get("Retry-After")
            )
        body = response.json()  # malformed JSON: ValueError, retried
        status = body.get("status")
        state = status.get("status") if isinstance(status, dict) else status
        errors = (status.get("errors") if isinstance(status, dict) else None) or []
        if state == "Accepted" and not errors:
            return body
        problem = "; ".join(map(str, errors)) or f"status {state}"
        if state in ("Rejected", "Error") or errors:
            raise PermanentError(f"{endpoint}: {problem}")
        raise RuntimeError(f"{endpoint}: {problem}")  # queued or unknown: worth another try

    def guano(self, begin: datetime, end: datetime, limit: int) -> list[dict[str, Any]]:
        params = {"begin": _iso(begin), "end": _iso(end), "limit": limit}
        what = f"GUANO window {_iso(begin)}..{_iso(end)}"
        return list(self.get("/swift/guano", params, what).get("entries") or [])

    def data_files(self, obsid: str) -> list[dict[str, Any]]:
        """The BAT files the Data API lists for one obsid (archive or quick-look URLs)."""
        params = {"obs_id": obsid, "bat": "true", "auxil": "false"}
        return list(self.get("/swift/data", params, f"Data listing of obsid {obsid}")["entries"])


@dataclass
class _WindowSplitter:
    """Which answers may be incomplete, learned as the plan goes, so no semantics are trusted.

    The service returns at most C entries per answer, C unknown (the page size asked, or a
    server cap below it). An answer of n entries is complete when n is below a count already
    proven complete (C is at least that), or below C once C is known. Otherwise its window is
    split in half and both halves asked: halves smaller than n are complete themselves, so if
    they add nothing, n was complete (proven); if they add dumps, the server cut the answer at
    n, which is then C. A half as large as the whole is examined the same way, down to
    min_window.
    """

    api: SwiftAPI
    page_size: int
    min_window: timedelta
    cap: int | None = None  # C, once an answer was seen cut
    proven: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def collect(
        self, w0: datetime, w1: datetime, got: dict[tuple, Dump] | None = None
    ) -> dict[tuple, Dump]:
        got = self._ask(w0, w1) if got is None else got
        n = len(got)
        with self._lock:
            complete = n < self.proven or (self.cap is not None and n < self.cap)
        if n == 0 or complete:
            return got
        if w1 - w0 <= self.min_window:
            logger.warning("GUANO window %s..%s may still be full at its minimum size", w0, w1)
            return got
        mid = w0 + (w1 - w0) / 2
        left, right = self._ask(w0, mid), self._ask(mid, w1)
        if len(left) < n and len(right) < n:
            if (left.keys() | right.keys()) <= got.keys():
                with self._lock:
                    self.proven = max(self.proven, n)
                return got
            with self._lock:
                self.cap = n if self.cap is None else min(self.cap, n)
            logger.info("GUANO answers are cut at %d entries: splitting windows", n)
        return got | self.collect(w0, mid, left) | self.collect(mid, w1, right)

    def _ask(self, w0: datetime, w1: datetime) -> dict[tuple, Dump]:
        dumps = (parse_entry(e) for e in self.api.guano(w0, w1, self.page_size))
        return {d.key: d for d in dumps if d is not None}


def fetch_dumps(
    api: SwiftAPI,
    windows: Iterable[tuple[datetime, datetime]],
    *,
    page_size: int = 100,
    min_window: timedelta = timedelta(minutes=5),
    workers: int = 4,
    progress: Progress | None = None,
) -> list[Dump]:
    """Every dump triggered in the windows (naive UTC datetimes), once each, sorted by time.

    Windows are asked `workers` at a time (the service sits on a job queue: 10-20 s a request).
    A window that keeps failing raises TransientError naming it.
    """
    if page_size < 1:
        raise ValueError(f"page_size must be positive, got {page_size}")
    spans = list(windows)
    splitter = _WindowSplitter(api, page_size, min_window)
    merged: dict[tuple, Dump] = {}
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for i, got in enumerate(pool.map(lambda w: splitter.collect(*w), spans), 1):
            merged |= got
            if progress is not None:
                progress("guano", i, len(spans))
    return sorted(merged.values(), key=lambda d: (d.triggertime, d.obsid, d.triggertype))


def time_windows(
    begin: datetime, end: datetime, step: timedelta
) -> Iterator[tuple[datetime, datetime]]:
    """[begin, end) in consecutive windows of `step` (the last one shorter)."""
    if step <= timedelta(0) or end <= begin:
        raise BatGlitchError(f"need begin < end and a positive window, got {begin}, {end}, {step}")
    t = begin
    while t < end:
        yield t, min(t + step, end)
        t += step


def _time(value: Any) -> datetime | None:
    if not value:
        return None
    t = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return t.replace(tzinfo=None) if t.tzinfo else t


def _iso(t: datetime | None) -> str | None:
    return None if t is None else t.isoformat(timespec="microseconds")

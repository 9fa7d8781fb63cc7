"""A local stand-in for the Swift API (GUANO, clock, data) that the real swifttools client can talk to.

Only the parts of the API that swifttools 4.0.5 uses for GUANO planning are served, with the
request parameters and JSON shapes that client sends and parses. Times in GUANO answers are Swift
(spacecraft) time, as on the real service, so the client's clock correction is exercised; the
request-line limit reproduces the real service's silent loss of that correction on large answers.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np

from batglitch.sources.catalog import HEASARC_HTTPS, MET_EPOCH
from batglitch.standins.localhttp import LocalHTTPServer

TRIGGER_TYPES = ("GBM", "IceCube", "LVK", "FRB", "SVOM", "EP")
# The real service refuses longer request lines; swifttools then skips its clock correction.
DEFAULT_MAX_URL_LENGTH = 65536


def utcf_at(met: float) -> float:
    """A smooth, time-dependent UTC correction factor (s) of the size Swift really has.

    Rounded to microseconds so MET + UTCF round-trips exactly through the API's datetimes.
    """
    return round(-20.0 - 2.0e-8 * met, 6)


def swift_time(met: float) -> datetime:
    """Spacecraft clock reading as a datetime: what GUANO answers carry before correction."""
    return MET_EPOCH + timedelta(seconds=met)


def met_of(swifttime: datetime) -> float:
    return round((swifttime - MET_EPOCH).total_seconds(), 6)


@dataclass(frozen=True)
class FakeDump:
    """One GUANO dump: BAT event data around an external trigger."""

    trigger_met: float
    triggertype: str = "GBM"
    offset: float = 0.0
    duration: float = 200.0
    quadsaway: int = 0

    @property
    def utcf(self) -> float:
        return utcf_at(self.trigger_met)

    @property
    def trigger_utc(self) -> datetime:
        """The clock-corrected trigger time: 2001-01-01 + MET + UTCF."""
        return MET_EPOCH + timedelta(seconds=self.trigger_met + self.utcf)

    @property
    def start_met(self) -> float:
        return self.trigger_met + self.offset - self.duration / 2


@dataclass(frozen=True)
class FakeObservation:
    """An observation with one or more GUANO dumps, and the state of its event file."""

    obsid: str
    dumps: tuple[FakeDump, ...]
    archived: bool = True
    corrupt: bool = False
    slewing: bool = False

    @property
    def month(self) -> str:
        """Archive folder YYYY_MM: the observation's month, taken from its first dump."""
        return min(d.trigger_utc for d in self.dumps).strftime("%Y_%m")

    def filename(self, kind: str) -> str:
        """Archive file name; kind is "po" (pointed events), "sl" (slewing events) or "hk"."""
        if kind == "hk":
            return f"sw{self.obsid}bdecb.hk.gz"
        return f"sw{self.obsid}bevsh{kind}_uf.evt.gz"

    def key(self, kind: str = "po") -> str:
        """Object key in the HEASARC layout, the same under the S3 bucket and the HTTPS archive."""
        folder = "hk" if kind == "hk" else "event"
        return f"swift/data/obs/{self.month}/{self.obsid}/bat/{folder}/{self.filename(kind)}"

    @property
    def bat_kinds(self) -> tuple[str, ...]:
        return ("po", "sl", "hk") if self.slewing else ("po", "hk")


def fake_observations(
    begin: datetime,
    end: datetime,
    n: int,
    seed: int = 0,
    *,
    multi_dump_fraction: float = 0.2,
    not_archived_fraction: float = 0.1,
    corrupt_fraction: float = 0.0,
    slewing_fraction: float = 0.0,
) -> list[FakeObservation]:
    """n observations with first triggers spread over [begin, end) (UTC), sorted by trigger time.

    Flag counts are exact (round(fraction * n)) so tests can rely on them; which observations get
    them is random. Extra dumps of multi-dump observations stay inside the range.
    """
    rng = np.random.default_rng(seed)
    met0 = (begin - MET_EPOCH).total_seconds()
    span = (end - begin).total_seconds()
    # Leave a margin so that UTCF (tens of seconds) cannot push a trigger out of the range.
    margin = min(120.0, span / 4)
    firsts = np.sort(rng.uniform(met0 + margin, met0 + span - margin, n))
    targets = rng.choice(16_777_216, size=n, replace=False)
    segments = rng.integers(0, 256, size=n)

    def pick(fraction: float) -> set[int]:
        return set(rng.choice(n, size=round(fraction * n), replace=False).tolist())

    multi, not_archived = pick(multi_dump_fraction), pick(not_archived_fraction)
    corrupt, slewing = pick(corrupt_fraction), pick(slewing_fraction)
    observations = []
    for i, first in enumerate(firsts):
        mets = [float(first)]
        if i in multi:
            room = met0 + span - margin - first
            extra = rng.uniform(0, min(room, 6 * 3600.0), int(rng.integers(1, 3)))
            mets += sorted(float(first + x) for x in extra)
        dumps = tuple(
            FakeDump(
                trigger_met=round(met, 3),
                triggertype=str(rng.choice(TRIGGER_TYPES)),
                offset=float(rng.choice([0.0, -50.0, 30.0])),
                duration=float(rng.choice([90.0, 200.0])),
            )
            for met in mets
        )
        observations.append(
            FakeObservation(
                obsid=f"{int(targets[i]):08d}{int(segments[i]):03d}",
                dumps=dumps,
                archived=i not in not_archived,
                corrupt=i in corrupt,
                slewing=i in slewing,
            )
        )
    return observations


@dataclass(frozen=True)
class Fault:
    """Misbehaviour for the first `count` requests to `path` (any path when None).

    delay_s sleeps before answering (client timeouts), status answers with that HTTP status,
    malformed answers 200 with a body that is not JSON. Otherwise the answer is normal.
    """

    path: str | None = None
    count: int = 1
    delay_s: float = 0.0
    status: int | None = None
    malformed: bool = False


@dataclass
class _FaultState:
    fault: Fault
    remaining: int


@dataclass
class _Catalog:
    """Index of the observations in the shapes the three endpoints answer with."""

    observations: Sequence[FakeObservation]
    quicklook_base: str
    overlap: timedelta
    dumps: list[tuple[FakeDump, FakeObservation]] = field(init=False)
    by_obsid: dict[str, FakeObservation] = field(init=False)

    def __post_init__(self) -> None:
        pairs = [(d, o) for o in self.observations for d in o.dumps]
        self.dumps = sorted(pairs, key=lambda p: (p[0].trigger_met, p[1].obsid))
        self.by_obsid = {o.obsid: o for o in self.observations}

    def guano(self, query: dict[str, list[str]]) -> dict[str, Any]:
        begin, end = _first_time(query, "begin"), _first_time(query, "end")
        offset = int(query.get("offset", ["0"])[0])
        limit = int(query["limit"][0]) if "limit" in query else None
        hits = [
            (d, o)
            for d, o in self.dumps
            if (begin is None or d.trigger_utc >= begin - self.overlap)
            and (end is None or d.trigger_utc < end + self.overlap)
        ]
        page = hits[offset:] if limit is None else hits[offset : offset + limit]
        return {"entries": [_guano_entry(d, o) for d, o in page], "status": "Accepted"}

    def data(self, query: dict[str, list[str]]) -> dict[str, Any]:
        obsid = query["obs_id"][0]
        obs = self.by_obsid.get(obsid)
        entries = []
        if obs is not None and _flag(query, "bat"):
            entries += [self._file(obs, kind) for kind in obs.bat_kinds]
        if obs is not None and _flag(query, "auxil", default=True):
            name = f"sw{obsid}sat.fits.gz"
            entries.append(self._entry(obs, f"auxil/{name}", name, "Spacecraft attitude file"))
        return {"obs_id": obsid, "entries": entries, "status": "Accepted"}

    def _file(self, obs: FakeObservation, kind: str) -> dict[str, Any]:
        folder = "hk" if kind == "hk" else "event"
        name = obs.filename(kind)
        what = "BAT housekeeping" if kind == "hk" else "BAT event file"
        return self._entry(obs, f"bat/{folder}/{name}", name, what)

    def _entry(self, obs: FakeObservation, rel: str, name: str, what: str) -> dict[str, Any]:
        if obs.archived:
            url = f"{HEASARC_HTTPS}swift/data/obs/{obs.month}/{obs.obsid}/{rel}"
        else:
            url = f"{self.quicklook_base}/{obs.obsid}/{rel}"
        path = f"{obs.obsid}/{rel.rsplit('/', 1)[0]}"
        return {
            "filename": name,
            "path": path,
            "url": url,
            "quicklook": not obs.archived,
            "type": what,
        }


def _flag(query: dict[str, list[str]], name: str, default: bool = False) -> bool:
    return query[name][0].lower() == "true" if name in query else default


def _first_time(query: dict[str, list[str]], name: str) -> datetime | None:
    return datetime.fromisoformat(query[name][0]) if name in query else None


def _iso(t: datetime) -> str:
    return t.isoformat(timespec="microseconds")


def _guano_entry(dump: FakeDump, obs: FakeObservation) -> dict[str, Any]:
    """One GUANO entry as the service sends it: every time in Swift time, UTCF in the GTI."""
    start = dump.start_met
    gti = {
        "filename": obs.filename("po").removesuffix(".gz"),
        "acs": "pointing",
        "begin": _iso(swift_time(start)),
        "end": _iso(swift_time(start + dump.duration)),
        "utcf": dump.utcf,
        "exposure": dump.duration,
    }
    return {
        "triggertype": dump.triggertype,
        "triggertime": _iso(swift_time(dump.trigger_met)),
        "offset": dump.offset,
        "duration": dump.duration,
        "obs_id": obs.obsid,
        "exectime": _iso(swift_time(dump.trigger_met + 600.0)),
        "quadsaway": dump.quadsaway,
        "data": {
            "obs_id": obs.obsid,
            "triggertime": _iso(swift_time(dump.trigger_met)),
            "filenames": [gti["filename"]],
            "acs": "pointing",
            "begin": gti["begin"],
            "end": gti["end"],
            "exposure": dump.duration,
            "gti": gti,
            "all_gtis": [gti],
        },
    }


def _clock(query: dict[str, list[str]]) -> dict[str, Any]:
    """Answer MET or Swift-time lists with MET, UTCF and the time base, like /swift/clock."""
    if "met" in query:
        mets = [float(v) for v in query["met"]]
    else:
        mets = [met_of(datetime.fromisoformat(v)) for v in query.get("swifttime", [])]
    entries = [{"met": m, "utcf": utcf_at(m), "isutc": False} for m in mets]
    return {"entries": entries, "status": "Accepted"}


class FakeSwiftAPI:
    """Threaded HTTP server on 127.0.0.1 answering /swift/guano, /swift/clock and /swift/data.

    Point the planner at `url` (plan(api_url=...)). `requests` records (path, query) of every
    request, for tests that check paging. Use as a context manager or call start()/stop().
    max_url_length: longer request lines get 414, as on the real service (the clock trap).
    overlap_s: GUANO also returns dumps up to this far outside the asked range, as a service
    matching on dump extent would, so adjacent windows overlap.
    """

    def __init__(
        self,
        observations: Iterable[FakeObservation],
        faults: Iterable[Fault] = (),
        *,
        quicklook_base: str | None = None,
        max_url_length: int = DEFAULT_MAX_URL_LENGTH,
        overlap_s: float = 0.0,
    ) -> None:
        self._observations = list(observations)
        self._faults = [_FaultState(f, f.count) for f in faults]
        self._quicklook_base = quicklook_base
        self.max_url_length = max_url_length
        self._overlap = timedelta(seconds=overlap_s)
        self.requests: list[tuple[str, dict[str, list[str]]]] = []
        self._lock = threading.Lock()
        self._server: LocalHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._catalog: _Catalog | None = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeSwiftAPI is not running")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def quicklook_url(self) -> str:
        """Where its quick-look URLs point: the place a run against it must allow."""
        return self._quicklook_base or f"{self.url}/ql"

    def start(self) -> FakeSwiftAPI:
        server = LocalHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server = server
        # Quick-look URLs point back at this server by default, so they stay local (and 404).
        self._catalog = _Catalog(self._observations, self.quicklook_url, self._overlap)
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeSwiftAPI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def count(self, path: str) -> int:
        """Number of requests received for a path."""
        with self._lock:
            return sum(p == path for p, _ in self.requests)

    def _take_fault(self, path: str) -> Fault | None:
        with self._lock:
            for state in self._faults:
                if state.remaining > 0 and state.fault.path in (None, path):
                    state.remaining -= 1
                    return state.fault
        return None

    def _answer(self, path: str, query: dict[str, list[str]]) -> tuple[int, bytes]:
        with self._lock:
            self.requests.append((path, query))
        assert self._catalog is not None
        fault = self._take_fault(path)
        if fault is not None:
            time.sleep(fault.delay_s)
            if fault.status is not None:
                return fault.status, b'{"detail": "injected failure"}'
            if fault.malformed:
                return HTTPStatus.OK, b'{"entries": [ {"obs_id": '
        routes = {
            "/swift/guano": self._catalog.guano,
            "/swift/data": self._catalog.data,
            "/swift/clock": _clock,
        }
        if path not in routes:
            return HTTPStatus.NOT_FOUND, b'{"detail": "Not Found"}'
        try:
            body = routes[path](query)
        except (KeyError, ValueError) as err:
            msg = {"detail": [{"loc": ["query", str(err)], "msg": "invalid parameter"}]}
            return HTTPStatus.UNPROCESSABLE_ENTITY, json.dumps(msg).encode()
        return HTTPStatus.OK, json.dumps(body).encode()


def _handler_for(api: FakeSwiftAPI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            if len(self.path) > api.max_url_length:
                self._send(HTTPStatus.REQUEST_URI_TOO_LONG, b'{"detail": "URI too long"}')
                return
            parts = urlsplit(self.path)
            query = parse_qs(parts.query, keep_blank_values=True)
            status, body = api._answer(parts.path.rstrip("/"), query)
            self._send(status, body)

        def _send(self, status: int, body: bytes) -> None:
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up first (an injected delay beyond its timeout)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: tests read `api.requests` instead of stderr."""

    return Handler

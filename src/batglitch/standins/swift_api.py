"""A local stand-in for the Swift API (GUANO and Data) shaped like its recorded answers.

Shapes follow the recorded responses of 2022 and Oct 2025 and the swifttools 4.0.5 schemas
(DESIGN.md, "External systems"): status as an object with a job number, ra/dec -1 when unknown,
queue, lastcommand/guanostatus and the echoed parameters at the top level; per dump, `data` with
filenames (no .gz) of the kinds it has, gti (null now and then) whose filename is a list for
mixed dumps, 1-6 all_gtis with ISO-8601 exposures and the UTCF.
What the real service may do but nobody documented is a knob, so the planner can be shown to
give the same plan whichever way it goes: entry order (newest first as recorded, or oldest
first), a server-side cap on `limit`, `offset` ignored, per-request latency, and the time base
of every datetime (UTC as recorded, or Swift time as swifttools assumes).
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

from batglitch.sources.heasarc import ENABLE_MAP, HEASARC_HTTPS, bat_file_name, bat_path
from batglitch.sources.timebase import MET_EPOCH, SWIFT, UTC
from batglitch.standins.localhttp import LocalHTTPServer

TRIGGER_TYPES = ("GBM GRB", "IceCube", "LVK", "FRB", "SVOM", "EP")
# Which event files a dump has, and how often (Oct 2025 sample: 4 of 10 with slewing files).
KIND_SETS = (("po",), ("po", "sl"), ("sp",), ("sl",))
DEFAULT_MAX_URL_LENGTH = 65536


def utcf_at(met: float) -> float:
    """A smooth UTC correction (s) of the size Swift has had (-28 s in 2022, -36.5 s in 2025);
    rounded to microseconds so MET + UTCF round-trips exactly through the API's datetimes."""
    return round(-20.0 - 2.2e-8 * met, 6)


def utc_at(met: float) -> datetime:
    """The UTC of a MET on the fakes' clock: 2001-01-01 + MET + UTCF."""
    return MET_EPOCH + timedelta(seconds=met + utcf_at(met))


def swift_time(met: float) -> datetime:
    """Spacecraft clock reading as a datetime."""
    return MET_EPOCH + timedelta(seconds=met)


def met_of(swifttime: datetime) -> float:
    return round((swifttime - MET_EPOCH).total_seconds(), 6)


def iso_duration(seconds: float) -> str:
    """ISO-8601 duration as the service writes exposures: "PT3M20.130886S"."""
    minutes, rest = divmod(round(seconds, 6), 60)
    return f"PT{int(minutes)}M{rest:.6f}S" if minutes else f"PT{rest:.6f}S"


@dataclass(frozen=True)
class FakeDump:
    """One GUANO dump: BAT event data around an external trigger (times in MET)."""

    trigger_met: float
    triggertype: str = "GBM GRB"
    offset: float = 0.0
    duration: float = 200.0
    quadsaway: int = 0

    @property
    def utcf(self) -> float:
        return utcf_at(self.trigger_met)

    @property
    def trigger_utc(self) -> datetime:
        return utc_at(self.trigger_met)

    @property
    def start_met(self) -> float:
        return self.trigger_met + self.offset - self.duration / 2


@dataclass(frozen=True)
class FakeObservation:
    """An observation with one or more GUANO dumps, and the state of its event files.

    kinds: its event files (po pointed, sp slewing+pointing, sl slewing); lead_s: how long
    before its first dump it began (its archive month is the month it began); version: the
    quick-look version (sw<obsid>.<version>) while not archived.
    """

    obsid: str
    dumps: tuple[FakeDump, ...]
    archived: bool = True
    corrupt: bool = False
    kinds: tuple[str, ...] = ("po",)
    lead_s: float = 0.0
    version: int = 1
    # A BAT trigger's observation: its one "dump" is the trigger (trigger_met, file length as
    # duration); its bevshsp file holds the burst, and GUANO does not list it.
    bat_trigger: bool = False
    # Its detector enable/disable map (bat/hk/sw<obsid>bdecb.hk.gz) is there: the SDC makes one
    # for every observation (science.detmask); off, one it failed to make.
    enable_map: bool = True

    @property
    def start_utc(self) -> datetime:
        return min(d.trigger_utc for d in self.dumps) - timedelta(seconds=self.lead_s)

    @property
    def month(self) -> str:
        """Archive folder YYYY_MM: the month the observation began."""
        return self.start_utc.strftime("%Y_%m")

    def filename(self, kind: str) -> str:
        """Archive file name; kind is an event kind (po, sp, sl) or ENABLE_MAP."""
        return bat_file_name(self.obsid, kind)

    def relpath(self, kind: str) -> str:
        return bat_path(self.obsid, kind)

    def key(self, kind: str = "po") -> str:
        """Object key in the HEASARC layout, the same under the S3 bucket and the HTTPS archive."""
        return f"swift/data/obs/{self.month}/{self.obsid}/{self.relpath(kind)}"

    def quicklook_key(self, kind: str = "po") -> str:
        """Path under the quick-look site: versioned, it changes on reprocessing."""
        return f"sw{self.obsid}.{self.version:03d}/{self.relpath(kind)}"

    @property
    def bat_kinds(self) -> tuple[str, ...]:
        """Every BAT file it has: its event files and its enable map."""
        return (*self.kinds, ENABLE_MAP) if self.enable_map else self.kinds


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
    sp_fraction: float = 0.0,
    slewing_only_fraction: float = 0.0,
    early_start_fraction: float = 0.0,
) -> list[FakeObservation]:
    """n observations with first triggers spread over [begin, end) (UTC), sorted by trigger time.

    Flag counts are exact (round(fraction * n)) so tests can rely on them; which observations get
    them is random, and the kind flags (slewing: po+sl, sp: sp only, slewing_only: sl only) go to
    different observations. early_start: the observation began in the month before its first
    trigger. Extra dumps of multi-dump observations stay inside the range.
    """
    rng = np.random.default_rng(seed)
    met0 = (begin - MET_EPOCH).total_seconds()
    span = (end - begin).total_seconds()
    # Leave a margin so that UTCF (tens of seconds) cannot push a trigger out of the range.
    margin = min(120.0, span / 4)
    firsts = np.sort(rng.uniform(met0 + margin, met0 + span - margin, n))
    targets = rng.choice(16_777_216, size=n, replace=False)
    segments = rng.integers(0, 256, size=n)

    def pick(fraction: float, among: np.ndarray) -> set[int]:
        return set(rng.choice(among, size=round(fraction * n), replace=False).tolist())

    everyone = np.arange(n)
    multi, not_archived = pick(multi_dump_fraction, everyone), pick(not_archived_fraction, everyone)
    corrupt, early = pick(corrupt_fraction, everyone), pick(early_start_fraction, everyone)
    order = rng.permutation(n)
    n_sl, n_sp, n_slo = (
        round(f * n) for f in (slewing_fraction, sp_fraction, slewing_only_fraction)
    )
    kinds = dict.fromkeys(order[:n_sl].tolist(), ("po", "sl"))
    kinds |= dict.fromkeys(order[n_sl : n_sl + n_sp].tolist(), ("sp",))
    kinds |= dict.fromkeys(order[n_sl + n_sp : n_sl + n_sp + n_slo].tolist(), ("sl",))
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
                quadsaway=int(rng.integers(0, 5)),
            )
            for met in mets
        )
        first_utc = dumps[0].trigger_utc
        # into the month before: past the start of the trigger's month, plus up to two days
        lead = first_utc - first_utc.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        observations.append(
            FakeObservation(
                obsid=f"{int(targets[i]):08d}{int(segments[i]):03d}",
                dumps=dumps,
                archived=i not in not_archived,
                corrupt=i in corrupt,
                kinds=kinds.get(i, ("po",)),
                lead_s=lead.total_seconds() + float(rng.uniform(60, 2 * 86400))
                if i in early
                else 0.0,
            )
        )
    return observations


@dataclass(frozen=True)
class Fault:
    """Misbehaviour for the first `count` requests to `path` (any path when None).

    delay_s sleeps before answering (client timeouts), status answers with that HTTP status
    (with retry_after as its Retry-After header), malformed answers 200 with a body that is not
    JSON, refused answers 200 with status "Rejected". Otherwise the answer is normal.
    """

    path: str | None = None
    count: int = 1
    delay_s: float = 0.0
    status: int | None = None
    retry_after: str | None = None
    malformed: bool = False
    refused: bool = False


@dataclass(frozen=True)
class Knobs:
    """What the real service may do that no document settles (see the module docstring).

    order: "newest" (recorded) or "oldest" first; max_limit: the most entries one answer
    carries whatever `limit` asks (None: no cap); honour_offset: False ignores `offset`;
    latency_s: every request waits this long (the real API sits on a job queue: 10-20 s);
    time_base: "utc" (recorded) or "swift" for every datetime in and out.
    """

    order: str = "newest"
    max_limit: int | None = None
    honour_offset: bool = True
    latency_s: float = 0.0
    time_base: str = UTC


@dataclass(frozen=True)
class _Answer:
    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


@dataclass
class _Catalog:
    """Index of the observations in the shapes the endpoints answer with."""

    observations: Sequence[FakeObservation]
    quicklook_base: str
    overlap: timedelta
    knobs: Knobs
    dumps: list[tuple[FakeDump, FakeObservation]] = field(init=False)
    by_obsid: dict[str, FakeObservation] = field(init=False)

    def __post_init__(self) -> None:
        pairs = [(d, o) for o in self.observations if not o.bat_trigger for d in o.dumps]
        self.dumps = sorted(pairs, key=lambda p: (p[0].trigger_met, p[1].obsid))
        self.by_obsid = {o.obsid: o for o in self.observations}

    def when(self, met: float) -> datetime:
        """A MET as the service writes it, in the knob's time base."""
        if self.knobs.time_base == SWIFT:
            return swift_time(met)
        return utc_at(met)

    def guano(self, query: dict[str, list[str]], job: int) -> dict[str, Any]:
        begin, end = _first_time(query, "begin"), _first_time(query, "end")
        offset = int(query.get("offset", ["0"])[0]) if self.knobs.honour_offset else 0
        limit = int(query["limit"][0]) if "limit" in query else 1000
        if self.knobs.max_limit is not None:
            limit = min(limit, self.knobs.max_limit)
        hits = [
            (d, o)
            for d, o in self.dumps
            if (begin is None or self.when(d.trigger_met) >= begin - self.overlap)
            and (end is None or self.when(d.trigger_met) < end + self.overlap)
        ]
        if self.knobs.order == "newest":
            hits.reverse()
        page = hits[offset : offset + limit]
        echoed = {k: v[0] for k, v in query.items()}
        return {
            **echoed,
            "entries": [self._guano_entry(d, o, i) for i, (d, o) in enumerate(page)],
            "status": _status(job),
            # swifttools 4.0.5 parses these as a datetime and a boolean
            "lastcommand": _iso(self.when(self.dumps[-1][0].trigger_met + 600.0))
            if self.dumps
            else None,
            "guanostatus": True,
        }

    def _gti(self, names: list[str], acs: str, start: float, stop: float, utcf: float) -> dict:
        return {
            "filename": names[0] if len(names) == 1 else names,
            "acs": acs,
            "begin": _iso(self.when(start)),
            "end": _iso(self.when(stop)),
            "utcf": utcf,
            "exposure": iso_duration(stop - start),
        }

    def _guano_entry(self, dump: FakeDump, obs: FakeObservation, i: int) -> dict[str, Any]:
        """One GUANO entry: a dump with slewing data gets a slewing GTI before its pointed one,
        a mixed dump one GTI naming both files; every fifth has gti null (all_gtis carry it)."""
        start, stop = dump.start_met, dump.start_met + dump.duration
        names = [obs.filename(k).removesuffix(".gz") for k in obs.kinds]
        split = start + min(40.0, dump.duration / 4)
        slewing = [n for n, k in zip(names, obs.kinds, strict=True) if k == "sl"]
        pointed = [n for n, k in zip(names, obs.kinds, strict=True) if k != "sl"]
        if slewing and pointed:
            gtis = [
                self._gti(slewing, "slewing", start, split, dump.utcf),
                self._gti(pointed, "pointing", split, stop, dump.utcf),
            ]
            acs, main = "mixed", self._gti(names, "mixed", start, stop, dump.utcf)
        else:
            acs = "slewing" if slewing else "pointing"
            main = self._gti(names, acs, start, stop, dump.utcf)
            gtis = [main]
        trigger = _iso(self.when(dump.trigger_met))
        return {
            "triggertype": dump.triggertype,
            "triggertime": trigger,
            "offset": dump.offset,
            "duration": dump.duration,
            "obs_id": obs.obsid,
            "exectime": _iso(self.when(dump.trigger_met + 600.0)),
            "ra": -1.0,
            "dec": -1.0,
            "quadsaway": dump.quadsaway,
            "queue": 0,
            "data": {
                "obs_id": obs.obsid,
                "triggertime": trigger,
                "filenames": names,
                "acs": acs,
                "begin": _iso(self.when(start)),
                "end": _iso(self.when(stop)),
                "exposure": dump.duration,
                "gti": None if (int(dump.trigger_met) + i) % 5 == 4 else main,
                "all_gtis": gtis,
            },
        }

    def data(self, query: dict[str, list[str]], job: int) -> dict[str, Any]:
        obsid = query["obs_id"][0]
        obs = self.by_obsid.get(obsid)
        entries = []
        if obs is not None and _flag(query, "bat"):
            entries += [self._file(obs, kind) for kind in obs.bat_kinds]
        if obs is not None and _flag(query, "auxil", default=True):
            name = f"sw{obsid}sat.fits.gz"
            entries.append(
                {
                    "filename": name,
                    "path": f"{obsid}/auxil",
                    "url": f"{HEASARC_HTTPS}swift/data/obs/{obs.month}/{obsid}/auxil/{name}",
                    "quicklook": not obs.archived,
                    "type": "Spacecraft attitude file",
                }
            )
        return {"obs_id": obsid, "entries": entries, "status": _status(job)}

    def _file(self, obs: FakeObservation, kind: str) -> dict[str, Any]:
        if obs.archived:
            url = f"{HEASARC_HTTPS}{obs.key(kind)}"
        else:
            url = f"{self.quicklook_base}/{obs.quicklook_key(kind)}"
        return {
            "filename": obs.filename(kind),
            "path": f"{obs.obsid}/{obs.relpath(kind).rsplit('/', 1)[0]}",
            "url": url,
            "quicklook": not obs.archived,
            "type": "BAT housekeeping" if kind == ENABLE_MAP else "BAT event file",
        }


def _status(job: int) -> dict[str, Any]:
    return {"status": "Accepted", "jobnumber": job, "errors": [], "warnings": []}


def _flag(query: dict[str, list[str]], name: str, default: bool = False) -> bool:
    return query[name][0].lower() == "true" if name in query else default


def _first_time(query: dict[str, list[str]], name: str) -> datetime | None:
    return datetime.fromisoformat(query[name][0]) if name in query else None


def _iso(t: datetime) -> str:
    return t.isoformat(timespec="microseconds")


class FakeSwiftAPI:
    """Threaded HTTP server on 127.0.0.1 answering /swift/guano and /swift/data.

    Point the planner at `url`. `requests` records (path, query) of every request. Use as a
    context manager or call start()/stop(); `observations` may be replaced while it runs (the
    world changes: an observation gets archived). quicklook_base: where quick-look URLs point
    (a local directory works; default: this server, which answers 404).
    overlap_s: GUANO also returns dumps up to this far outside the asked range, as a service
    matching on dump extent would, so adjacent windows overlap.
    """

    def __init__(
        self,
        observations: Iterable[FakeObservation],
        faults: Iterable[Fault] = (),
        *,
        knobs: Knobs | None = None,
        quicklook_base: str | None = None,
        max_url_length: int = DEFAULT_MAX_URL_LENGTH,
        overlap_s: float = 0.0,
    ) -> None:
        self._observations = list(observations)
        self._faults = [[f, f.count] for f in faults]
        self.knobs = knobs or Knobs()
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
        """Where its quick-look URLs point: the place a run against it must allow (by default
        back at this server, so they stay local, and 404)."""
        return (self._quicklook_base or f"{self.url}/ql").rstrip("/")

    @property
    def observations(self) -> list[FakeObservation]:
        return list(self._observations)

    @observations.setter
    def observations(self, observations: Iterable[FakeObservation]) -> None:
        self._observations = list(observations)
        if self._server is not None:
            self._catalog = self._index()

    def _index(self) -> _Catalog:
        return _Catalog(self._observations, self.quicklook_url, self._overlap, self.knobs)

    def start(self) -> FakeSwiftAPI:
        server = LocalHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server = server
        self._catalog = self._index()
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
                if state[1] > 0 and state[0].path in (None, path):
                    state[1] -= 1
                    return state[0]
        return None

    def _answer(self, path: str, query: dict[str, list[str]]) -> _Answer:
        with self._lock:
            self.requests.append((path, query))
            job = len(self.requests)
        catalog = self._catalog
        assert catalog is not None
        time.sleep(self.knobs.latency_s)
        fault = self._take_fault(path)
        if fault is not None:
            time.sleep(fault.delay_s)
            if fault.status is not None:
                headers = (("Retry-After", fault.retry_after),) if fault.retry_after else ()
                return _Answer(fault.status, b'{"detail": "injected failure"}', headers)
            if fault.malformed:
                return _Answer(HTTPStatus.OK, b'{"entries": [ {"obs_id": ')
            if fault.refused:
                status = {**_status(job), "status": "Rejected", "errors": ["injected refusal"]}
                return _Answer(HTTPStatus.OK, json.dumps({"status": status}).encode())
        routes = {"/swift/guano": catalog.guano, "/swift/data": catalog.data}
        if path not in routes:
            return _Answer(HTTPStatus.NOT_FOUND, b'{"detail": "Not Found"}')
        try:
            body = routes[path](query, job)
        except (KeyError, ValueError) as err:
            msg = {"detail": [{"loc": ["query", str(err)], "msg": "invalid parameter"}]}
            return _Answer(HTTPStatus.UNPROCESSABLE_ENTITY, json.dumps(msg).encode())
        return _Answer(HTTPStatus.OK, json.dumps(body).encode())


def _handler_for(api: FakeSwiftAPI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            if len(self.path) > api.max_url_length:
                self._send(_Answer(HTTPStatus.REQUEST_URI_TOO_LONG, b'{"detail": "URI too long"}'))
                return
            parts = urlsplit(self.path)
            query = parse_qs(parts.query, keep_blank_values=True)
            self._send(api._answer(parts.path.rstrip("/"), query))

        def _send(self, answer: _Answer) -> None:
            try:
                self.send_response(answer.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer.body)))
                for name, value in answer.headers:
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(answer.body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up first (an injected delay beyond its timeout)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: tests read `api.requests` instead of stderr."""

    return Handler

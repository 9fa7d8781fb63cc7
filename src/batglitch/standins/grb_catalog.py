"""A local stand-in for the UKSSDC API's BAT GRB catalogue that the real swifttools client talks to.

Serves the two calls ``GRBQuery(cat="BAT_GRB")`` makes (swifttools 4.0.5, ukssdc/main.py and
query/dataquery_base.py): POST JSON with ``APIFunc`` "getMetadata" (answer: ``metadata`` with
``columns`` and ``metadata`` rows) and "queryDB" (``constraints`` as the client's filter dicts,
``firstRow``/``numRows`` paging; answer: ``Results`` as row dicts and ``NumRows``), each with
``OK``. Column names and types follow the catalogue's documented answers. Knobs: a server-side row
cap per answer (the client pages on its own), answers that fail (HTTP 500 or an ``ERROR`` body)
and a delay, so tests can set each assumption both ways.
"""

from __future__ import annotations

import json
import operator
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import Any

import numpy as np

from batglitch.sources.grbs import (
    GRB_FILE_KIND,
    NAME,
    T90,
    TRIGGER_ID,
    TRIGGER_MET,
    TRIGGER_UTC,
    trigger_obsid,
)
from batglitch.sources.timebase import MET_EPOCH
from batglitch.standins.localhttp import LocalHTTPServer
from batglitch.standins.swift_api import FakeDump, FakeObservation, utc_at, utcf_at

METADATA_COLUMNS = ("ColName", "IsError", "Class", "Description", "Type", "Nullable", "Fstring",
                    "IsTargetCol", "IsNameCol")  # fmt: skip
_COLUMNS = (  # ColName, Type, IsTargetCol, IsNameCol
    (NAME, "TXT", 0, 1),
    (TRIGGER_ID, "NUM", 1, 0),
    (TRIGGER_UTC, "UTC", 0, 0),
    (TRIGGER_MET, "NUM", 0, 0),
    ("RA_ground", "COORDH", 0, 0),
    ("DEC_ground", "COORDD", 0, 0),
    (T90, "NUM", 0, 0),
)
TRIGGER_FILE_S = 120.0  # length of a synthetic trigger file; real ones are longer
_COMPARE = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
            "=": operator.eq, "!=": operator.ne}  # fmt: skip


@dataclass(frozen=True)
class FakeBurst:
    """A catalogued burst and what its trigger event file holds."""

    name: str
    trigger_id: int
    trigger_met: float
    t90: float
    ra: float = 0.0
    dec: float = 0.0

    @property
    def obsid(self) -> str:
        return trigger_obsid(self.trigger_id)

    @property
    def trigger_utc(self) -> datetime:
        return utc_at(self.trigger_met)

    def observation(self, archived: bool = True) -> FakeObservation:
        """The trigger's observation as the fake HEASARC tree holds it: a bevshsp file of
        TRIGGER_FILE_S around the trigger, its burst at TRIGTIME."""
        dump = FakeDump(
            trigger_met=self.trigger_met, triggertype="BAT GRB", duration=TRIGGER_FILE_S
        )
        return FakeObservation(
            self.obsid, (dump,), archived=archived, kinds=(GRB_FILE_KIND,), bat_trigger=True
        )

    def row(self) -> dict[str, Any]:
        return {
            NAME: self.name,
            TRIGGER_ID: self.trigger_id,
            TRIGGER_UTC: self.trigger_utc.strftime("%Y-%m-%d %H:%M:%S"),
            TRIGGER_MET: self.trigger_met,
            "RA_ground": self.ra,
            "DEC_ground": self.dec,
            T90: self.t90,
        }


def fake_bursts(
    begin: datetime, end: datetime, n: int, seed: int | np.random.SeedSequence = 0
) -> list[FakeBurst]:
    """n bursts spread over [begin, end) with names, trigger ids and T90s of the real kind."""
    rng = np.random.default_rng(seed)
    span = (end - begin).total_seconds()
    offsets = np.sort(rng.uniform(0.0, span, n))
    bursts, per_day = [], {}
    for k, offset in enumerate(offsets):
        utc = begin + timedelta(seconds=float(offset))
        day = utc.strftime("%y%m%d")
        letter = "ABCDEFGHIJ"[per_day.get(day, 0)]
        per_day[day] = per_day.get(day, 0) + 1
        met = round((utc - MET_EPOCH).total_seconds(), 3)
        met = round(met - utcf_at(met), 3)  # the MET whose UTC is this moment
        bursts.append(
            FakeBurst(
                name=f"GRB {day}{letter}",
                trigger_id=1_200_000 + 37 * k + int(rng.integers(0, 30)),
                trigger_met=met,
                t90=round(float(np.exp(rng.normal(3.0, 1.3))), 2),
                ra=round(float(rng.uniform(0, 360)), 3),
                dec=round(float(np.degrees(np.arcsin(rng.uniform(-1, 1)))), 3),
            )
        )
    return bursts


class FakeGRBCatalog:
    """The UKSSDC API on 127.0.0.1 for a fixed list of bursts; use as a context manager.

    max_rows caps every answer (the real server's own cap is unknown; the client pages while an
    answer is full); fail_first answers that many requests with fail_status (500) or, when
    fail_status is 200, an ERROR body; delay_s holds every answer back.
    """

    def __init__(
        self,
        bursts: Sequence[FakeBurst],
        *,
        max_rows: int = 1000,
        fail_first: int = 0,
        fail_status: int = HTTPStatus.INTERNAL_SERVER_ERROR,
        delay_s: float = 0.0,
    ) -> None:
        self.bursts = list(bursts)
        self.max_rows = max_rows
        self.delay_s = delay_s
        self._fail_left = fail_first
        self._fail_status = fail_status
        self._lock = threading.Lock()
        self.requests: list[dict[str, Any]] = []
        self._server = LocalHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """What swifttools.ukssdc.main.APIURL should be."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/API/main.php"

    def __enter__(self) -> FakeGRBCatalog:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def answer(self, request: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.requests.append(request)
            failing = self._fail_left > 0
            self._fail_left -= failing
        if self.delay_s:
            time.sleep(self.delay_s)
        if failing:
            if self._fail_status == HTTPStatus.OK:
                return HTTPStatus.OK, {"ERROR": 1, "ERRORTEXT": "catalogue busy"}
            return self._fail_status, {}
        if request.get("table") != "BATGRBCat":
            return HTTPStatus.OK, {"ERROR": 2, "ERRORTEXT": f"unknown table {request.get('table')}"}
        if request.get("APIFunc") == "getMetadata":
            rows = [[name, 0, "BASIC", name, kind, 1, "%s", target, is_name]
                    for name, kind, target, is_name in _COLUMNS]  # fmt: skip
            return HTTPStatus.OK, {"OK": 1, "metadata": {"columns": list(METADATA_COLUMNS),
                                                          "metadata": rows}}  # fmt: skip
        if request.get("APIFunc") == "queryDB":
            rows = [b.row() for b in self.bursts if _matches(b.row(), request.get("constraints"))]
            first = int(request.get("firstRow", 0))
            count = min(int(request.get("numRows", self.max_rows)), self.max_rows)
            wanted = request.get("cols") or [c for c, *_ in _COLUMNS]
            page = [{c: row[c] for c in wanted} for row in rows[first : first + count]]
            return HTTPStatus.OK, {"OK": 1, "Results": page, "NumRows": len(page)}
        return HTTPStatus.OK, {"ERROR": 3, "ERRORTEXT": "unknown function"}


def _matches(row: dict[str, Any], constraints: list[dict[str, Any]] | None) -> bool:
    for c in constraints or ():
        value = row[c["colName"]]
        hits = [_test(value, c["filter"], c["val"])]
        if c.get("combiner"):
            hits.append(_test(value, c["filter2"], c["val2"]))
            if not (all(hits) if c["combiner"] == "AND" else any(hits)):
                return False
        elif not hits[0]:
            return False
    return True


def _test(value: Any, kind: str, operand: Any) -> bool:
    if kind == "BETWEEN":
        return operand[0] <= value <= operand[1]
    return bool(_COMPARE[kind](value, operand))


def _handler_for(catalog: FakeGRBCatalog) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            status, body = catalog.answer(json.loads(self.rfile.read(length) or b"{}"))
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler

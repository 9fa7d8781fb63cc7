"""The BAT GRB catalogue: which bursts BAT triggered on in a date range, through the real client.

``swifttools.ukssdc.query.GRBQuery(cat="BAT_GRB")`` (table BATGRBCat) posts JSON to the UKSSDC API
(module global ``swifttools.ukssdc.main.APIURL``) with ``requests.post`` and no timeout, and raises
RuntimeError on a refused answer (swifttools 4.0.5 source). This module is the one place that
points the client elsewhere (a local fake) and bounds its requests; retries use the planner's
policy (sources/retry.py). Column names are those of the catalogue's documented answers (GRBname, Trig_ID,
Trig_time_UTC, Trig_time_met, T90; swifttools' APIDocs/ukssdc/query/GRB.md).

A burst's trigger observation is its trigger id zero-padded to 8 digits + "000" and its event file
is the ``bevshsp`` kind (DESIGN.md); both come from here so the planner defines them once.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import requests

from batglitch.errors import BatGlitchError
from batglitch.sources import retry
from batglitch.sources.retry import RetryPolicy
from batglitch.sources.timebase import MET_EPOCH

CATALOGUE = "BAT_GRB"
NAME, TRIGGER_ID, TRIGGER_UTC, TRIGGER_MET, T90 = (
    "GRBname", "Trig_ID", "Trig_time_UTC", "Trig_time_met", "T90",
)  # fmt: skip
COLUMNS = (NAME, TRIGGER_ID, TRIGGER_UTC, TRIGGER_MET, T90)
GRB_API_URL_ENV = "BATGLITCH_GRB_API_URL"  # the UKSSDC API, e.g. a local fake
GRB_FILE_KIND = "sp"  # sw<obsid>bevshsp_uf.evt.gz: the trigger's event file
# A glitch this close to a burst (before its trigger, after its T90) is still suspect; bursts
# without a T90 count as this long.
BURST_MARGIN_S = 10.0
DEFAULT_T90_S = 100.0

MAX_PAGES = 100
_client_lock = threading.Lock()


@dataclass(frozen=True)
class Burst:
    """One catalogued BAT-triggered GRB."""

    name: str  # e.g. "GRB 240301A"
    trigger_id: int
    trigger_met: float  # MET s, the catalogue's trigger time
    trigger_utc: str  # ISO UTC
    t90: float | None

    @property
    def obsid(self) -> str:
        """The trigger's observation: trigger id zero-padded to 8 digits + "000"."""
        return trigger_obsid(self.trigger_id)

    @property
    def span(self) -> tuple[float, float]:
        """MET interval in which a glitch candidate is suspect of being this burst."""
        t90 = self.t90 if self.t90 is not None and math.isfinite(self.t90) else DEFAULT_T90_S
        return self.trigger_met - BURST_MARGIN_S, self.trigger_met + t90 + BURST_MARGIN_S

    @property
    def trigger_time(self) -> datetime:
        """Naive UTC trigger time: the catalogue's, or from its MET when it gave none (then
        without UTCF, off by ~30 s: close enough to find the archive month and nearby dumps)."""
        try:
            return datetime.fromisoformat(self.trigger_utc)
        except ValueError:
            return MET_EPOCH + timedelta(seconds=self.trigger_met)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON for manifests, with the suspect span as begin/end."""
        begin, end = self.span
        return {**dataclasses.asdict(self), "begin": begin, "end": end}


def trigger_obsid(trigger_id: int) -> str:
    if not 0 <= int(trigger_id) < 10**8:
        raise ValueError(f"BAT trigger id out of range: {trigger_id}")
    return f"{int(trigger_id):08d}000"


@contextmanager
def ukssdc_client(api_url: str | None, timeout_s: float) -> Iterator[None]:
    """Point swifttools' UKSSDC client at api_url (default: env BATGLITCH_GRB_API_URL, then its
    own) with a timeout on every
    request, inside the block. The client calls ``requests.post`` through its module's
    ``requests`` name without a timeout; the lock keeps concurrent queries from mixing settings."""
    from swifttools.ukssdc import main

    bounded = type("BoundedRequests", (), {"post": staticmethod(
        functools.partial(requests.post, timeout=timeout_s)
    )})  # fmt: skip
    with _client_lock:
        saved = main.APIURL, main.requests
        main.APIURL = api_url or os.environ.get(GRB_API_URL_ENV) or saved[0]
        main.requests = bounded
        try:
            yield
        finally:
            main.APIURL, main.requests = saved


def list_bursts(
    begin: datetime | str,
    end: datetime | str,
    *,
    api_url: str | None = None,
    policy: RetryPolicy | None = None,
) -> list[Burst]:
    """Catalogued BAT GRBs triggered in [begin, end) UTC, by trigger time. Rows without a usable
    trigger id or time are left out (they have no trigger event file to read).

    Every request times out after policy.timeout_s; raises TransientError when the catalogue
    keeps failing."""
    t0, t1 = (_utc_text(t) for t in (begin, end))
    policy = policy or RetryPolicy()
    rows = retry.call(
        lambda: _query(t0, t1, api_url, policy.timeout_s), f"BAT GRB catalogue {t0}..{t1}", policy
    )
    bursts = [b for b in map(_burst, rows) if b is not None]
    return sorted(bursts, key=lambda b: (b.trigger_met, b.trigger_id))


def _query(t0: str, t1: str, api_url: str | None, timeout_s: float) -> list[dict[str, Any]]:
    """Every row, paged until an empty answer: the client stops at the first answer shorter than
    it asked for (1,000 rows), so a server that caps its answers lower would silently cut the
    list short."""
    from swifttools.ukssdc.query import GRBQuery

    rows: list[dict[str, Any]] = []
    with ukssdc_client(api_url, timeout_s):
        query = GRBQuery(cat=CATALOGUE, silent=True)
        query.addFilter((TRIGGER_UTC, ">=", t0, "AND", "<", t1))
        for column in COLUMNS:
            query.addCol(column)
        for _ in range(MAX_PAGES):
            query.unlock()
            query.firstRow = len(rows)
            query.submit()
            page = [] if query.results is None else query.results.to_dict("records")
            if not page:
                return rows
            rows += page
    raise BatGlitchError(f"BAT GRB catalogue {t0}..{t1}: more than {MAX_PAGES} pages")


def _burst(row: dict[str, Any]) -> Burst | None:
    try:
        trigger_id = int(row[TRIGGER_ID])
        met = float(row[TRIGGER_MET])
        trigger_obsid(trigger_id)
    except (KeyError, TypeError, ValueError):
        return None
    if not math.isfinite(met) or met <= 0:
        return None
    t90 = row.get(T90)
    return Burst(
        name=str(row.get(NAME) or f"trigger {trigger_id}"),
        trigger_id=trigger_id,
        trigger_met=met,
        trigger_utc=str(row.get(TRIGGER_UTC, "")),
        t90=float(t90) if t90 is not None and not _missing(t90) else None,
    )


def _missing(value: Any) -> bool:
    try:
        return math.isnan(float(value))
    except (TypeError, ValueError):
        return True


def _utc_text(t: datetime | str) -> str:
    moment = datetime.fromisoformat(t) if isinstance(t, str) else t
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment.strftime("%Y-%m-%d %H:%M:%S")

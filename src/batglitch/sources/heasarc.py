"""Where BAT event files live: the HEASARC archive roots, listed per month, and quick-look.

Facts (DESIGN.md, "External systems"): archived files sit at
swift/data/obs/YYYY_MM/<obsid>/bat/event/sw<obsid>bevsh{po,sl,sp}_uf.evt.gz, the same paths in
the public bucket s3://nasa-heasarc (anonymous ListObjectsV2 works, as astroquery uses it) and
under https://heasarc.gsfc.nasa.gov/FTP/ (complete; the bucket has "some selections"). YYYY_MM is
the month the observation started: the trigger's month or an earlier one. Recent data live only on
the quick-look site, which only the Swift Data API lists.
So a plan lists each root's month folders once (a few listings for the whole plan instead of
one Data request per obsid) and asks the Data API only about obsids found nowhere.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import fsspec

from batglitch.errors import BatGlitchError
from batglitch.sources import retry
from batglitch.sources.fetch import storage_options_for
from batglitch.sources.places import Places
from batglitch.sources.retry import RetryPolicy

if TYPE_CHECKING:
    from batglitch.sources.guano import SwiftAPI

HEASARC_HTTPS = "https://heasarc.gsfc.nasa.gov/FTP/"
OBS_PREFIX = "swift/data/obs"
_OBSID = re.compile(r"\d{11}")
KINDS = ("po", "sp", "sl")  # pointed, slewing+pointing, slewing: sw<obsid>bevsh<kind>_uf.evt
# The detector enable/disable map every observation has next to its housekeeping
# (bat/hk/sw<obsid>bdecb.hk.gz; science.detmask), located like an event file of this kind.
ENABLE_MAP = "decb"
EVENT_FILE = re.compile(r"sw(\d{11})bevsh(po|sp|sl)_uf\.evt(?:\.gz)?$")
_MONTH = re.compile(r"^swift/data/obs/(\d{4}_\d{2})/")
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Location:
    """URLs to try in order for one file; month (YYYY_MM) only for archived files."""

    urls: tuple[str, ...]
    archived: bool
    month: str | None = None


def bat_file_name(obsid: str, kind: str) -> str:
    """An archived BAT file's name: an event file of a kind in KINDS, or the ENABLE_MAP."""
    return f"sw{obsid}bdecb.hk.gz" if kind == ENABLE_MAP else f"sw{obsid}bevsh{kind}_uf.evt.gz"


def bat_path(obsid: str, kind: str) -> str:
    """Where that file sits inside its observation's folder."""
    return f"bat/{'hk' if kind == ENABLE_MAP else 'event'}/{bat_file_name(obsid, kind)}"


def kind_of(url: str) -> str:
    """po, sp or sl from an event file's name; "" for a file named otherwise (hand-ingested)."""
    m = EVENT_FILE.search(url)
    return m.group(2) if m else ""


def bat_key(month: str, obsid: str, kind: str) -> str:
    """Object key of an archived BAT file, the same under every root."""
    return f"{OBS_PREFIX}/{month}/{obsid}/{bat_path(obsid, kind)}"


def candidate_months(trigger: datetime) -> tuple[str, ...]:
    """Archive months an obsid with this trigger can sit in: the trigger's month first, then
    the month before (the observation began earlier); a minute either way covers either base
    of GUANO times."""
    months: list[str] = []
    for t in (trigger + timedelta(minutes=1), trigger - timedelta(minutes=1)):
        before = (t.replace(day=1) - timedelta(days=1)).strftime("%Y_%m")
        months += [m for m in (t.strftime("%Y_%m"), before) if m not in months]
    return tuple(sorted(months, reverse=True))


class ArchiveListing:
    """The obsids each root holds per month, each (root, month) listed at most once per plan.

    Thread-safe: concurrent lookups of the same (root, month) wait for one listing. A listing
    that keeps failing counts as empty for that root (the next root or the Data API decides),
    and is logged.
    """

    def __init__(self, roots: Sequence[str], policy: RetryPolicy | None = None) -> None:
        self.roots = tuple(roots)
        self.policy = policy or RetryPolicy()
        self._lock = threading.Lock()
        self._listings: dict[tuple[str, str], Future[frozenset[str]]] = {}

    @property
    def listings(self) -> int:
        """(root, month) pairs listed so far."""
        return len(self._listings)

    def obsids(self, root: str, month: str) -> frozenset[str]:
        with self._lock:
            future = self._listings.get((root, month))
            mine = future is None
            if future is None:
                future = self._listings[(root, month)] = Future()
        if mine:
            try:
                future.set_result(self._list(root, month))
            except Exception as exc:
                logger.warning("listing %s/%s/%s failed: %s", root, OBS_PREFIX, month, exc)
                future.set_result(frozenset())
        return future.result()

    def locate(
        self, obsid: str, kinds: Iterable[str], months: Sequence[str], places: Places
    ) -> dict[str, Location]:
        """Every kind's archive location, if some root lists the obsid in one of the months:
        URLs under every root, in root order (a root that lacks the file answers not-found and
        the worker tries the next), each checked against the allowed places."""
        for root in self.roots:
            for month in months:
                if obsid in self.obsids(root, month):
                    return {
                        kind: Location(
                            tuple(
                                places.check(f"{r}/{bat_key(month, obsid, kind)}", obsid)
                                for r in self.roots
                            ),
                            archived=True,
                            month=month,
                        )
                        for kind in kinds
                    }
        return {}

    def _list(self, root: str, month: str) -> frozenset[str]:
        fs, path = fsspec.url_to_fs(
            root, **storage_options_for(root, timeout_s=self.policy.timeout_s)
        )
        folder = f"{path.rstrip('/')}/{OBS_PREFIX}/{month}"

        def ls() -> list[str]:
            try:
                return fs.ls(folder, detail=False)
            except FileNotFoundError:
                return []  # no observation of that month in this root

        names = retry.call(ls, f"listing {root}/{OBS_PREFIX}/{month}", self.policy)
        return frozenset(
            n for n in (p.rstrip("/").rsplit("/", 1)[-1] for p in names) if _OBSID.fullmatch(n)
        )


def locate_with_data_api(
    api: SwiftAPI, obsid: str, kinds: Iterable[str], places: Places
) -> dict[str, Location]:
    """Locations the Data API gives for an obsid no listing found (recent: quick-look).

    The archived copy wins over quick-look; an archive URL is mapped onto every root. A kind the
    API does not list is left out (the observation is not there yet). A quick-look URL must lie
    on the quick-look site (RefusedLocation otherwise: the API's answer is not trusted); a
    refused enable map is only left out (logged): the event files do not depend on it.
    """
    files: list[dict[str, Any]] = api.data_files(obsid)
    found: dict[str, Location] = {}
    for kind in kinds:
        name = bat_file_name(obsid, kind)
        matches = sorted(
            (f for f in files if f.get("filename") in (name, name.removesuffix(".gz"))),
            key=lambda f: bool(f.get("quicklook")),
        )
        if not matches:
            continue
        try:
            found[kind] = _api_location(matches[0], obsid, name, places)
        except BatGlitchError as exc:
            if kind != ENABLE_MAP:
                raise
            logger.warning("%s (detector states will be unknown)", exc)
    return found


def _api_location(f: dict[str, Any], obsid: str, name: str, places: Places) -> Location:
    """One file of the Data API's answer as a Location every worker accepts."""
    url = str(f["url"])
    if f.get("quicklook"):
        return Location((places.check(url, obsid, quicklook=True),), False)
    if not url.startswith(HEASARC_HTTPS):
        raise BatGlitchError(f"obsid {obsid}: {name}: archive URL outside {HEASARC_HTTPS}: {url}")
    key = url.removeprefix(HEASARC_HTTPS)
    month = _MONTH.match(key)
    return Location(
        tuple(places.check(f"{root}/{key}", obsid) for root in places.roots),
        archived=True,
        month=month.group(1) if month else None,
    )


def locate(
    obsid: str,
    kinds: Iterable[str],
    trigger: datetime,
    listing: ArchiveListing,
    places: Places,
    api: SwiftAPI | None = None,
) -> dict[str, Location]:
    """Where this obsid's event files of these kinds are: the archive listings of the trigger's
    months first, then (when an API is given) the Data API for an obsid found in no listing.
    Kinds found nowhere are absent from the answer; every URL passed places.check."""
    kinds = tuple(kinds)
    found = listing.locate(obsid, kinds, candidate_months(trigger), places)
    if not found and api is not None:
        found = locate_with_data_api(api, obsid, kinds, places)
    return found

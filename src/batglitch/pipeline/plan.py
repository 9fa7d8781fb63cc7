"""Planning: which observations to process, and where their event files are.

Three steps, the middle one pure:
1. dumps: GUANO's own answers for the range (sources.guano), plus the dumps the archive recorded
   for obsids whose rows came from quick-look (re-planned until their archived files exist,
   whatever the range);
2. select(): group the dumps per obsid, leave out what the archive already holds, choose the file
   kinds to read (po and sp by default, sl with slewing);
3. locate: archive listings per (root, month) shared by the whole plan, the Data API only for
   obsids found in no listing (sources.heasarc), `workers` at a time; each obsid's detector
   enable/disable map is located with its event files, at no extra request.
With grbs, the BAT GRB catalogue's bursts of the range (sources.grbs) join step 2 as GRB entries
(the trigger's bevshsp file, located in step 3 like any other) and name themselves to the glitch
entries near them, whose windows in a burst's span are then flagged (select_bursts()).
The manifest (one JSON array of ObsEntry) is what every orchestrator hands its workers.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import fsspec

from batglitch.errors import TransientError
from batglitch.science.grb import GLITCH, GRB
from batglitch.sources.fetch import write_atomically
from batglitch.sources.grbs import GRB_FILE_KIND, Burst, list_bursts
from batglitch.sources.guano import Dump, SwiftAPI, fetch_dumps, time_windows
from batglitch.sources.heasarc import ENABLE_MAP, ArchiveListing, Location, locate
from batglitch.sources.places import Places
from batglitch.sources.retry import RetryPolicy
from batglitch.store.schema import Completion

DEFAULT_KINDS = ("po", "sp")
SLEWING_KIND = "sl"
# A glitch entry is matched with the catalogued bursts this close to its dumps' trigger times
# (their data span trigger + offset -/+ duration / 2, a few hundred seconds; the dumps' time base
# may be off by UTCF, ~30 s): the worker then flags the windows inside each burst's span.
BURST_SEARCH = timedelta(minutes=30)
logger = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class PlanOptions:
    """How a plan reaches the outside world; one object for every orchestrator.

    window_days: GUANO windows (split further whenever an answer may be full); workers: how
    many GUANO windows, listings and Data requests run at once; api_url: default env
    SWIFT_TOO_API_URL; roots and quicklook: see sources.places (None: the configured ones);
    grbs: also the GRB windows of the BAT GRB catalogue's bursts (grb_api_url: default env
    BATGLITCH_GRB_API_URL, then the client's own).
    """

    slewing: bool = False
    grbs: bool = False
    api_url: str | None = None
    grb_api_url: str | None = None
    roots: tuple[str, ...] | None = None
    quicklook: tuple[str, ...] | None = None
    window_days: float = 14.0
    page_size: int = 100
    workers: int = 4
    policy: RetryPolicy = field(default_factory=lambda: RetryPolicy(timeout_s=120.0))
    progress: Progress | None = field(default=None, compare=False)

    @property
    def kinds(self) -> tuple[str, ...]:
        return (*DEFAULT_KINDS, SLEWING_KIND) if self.slewing else DEFAULT_KINDS

    @property
    def places(self) -> Places:
        """Where a plan made with these options reads from: its workers read only there."""
        return Places.configured(self.roots, self.quicklook)


@dataclass(frozen=True)
class PlannedFile:
    kind: str  # po, sp or sl
    urls: tuple[str, ...]  # tried in order
    archived: bool

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "urls": list(self.urls), "archived": self.archived}


@dataclass(frozen=True)
class ObsEntry:
    """One observation to process: its dumps and the event files to read, each on its own.

    A kind that was wanted but located nowhere has no URLs: the worker reports the obsid not
    archived yet, and a later plan asks again. label: the class of its windows, GLITCH (its
    dumps' files, searched for glitches) or GRB (a BAT trigger's bevshsp file, its window cut at
    TRIGTIME; no dumps). bursts: catalogued bursts (sources.grbs.Burst.to_dict()) near the
    observation; for GRB, its own first. enable_map: where its detector enable/disable map
    should be, tried in order (none there: its rows' detector states are unknown).
    """

    obsid: str
    dumps: tuple[Dump, ...]
    files: tuple[PlannedFile, ...]
    label: str = GLITCH
    bursts: tuple[dict[str, Any], ...] = ()
    enable_map: tuple[str, ...] = ()

    @property
    def archived(self) -> bool:
        """Every file comes from the archive proper (not quick-look, not missing)."""
        return bool(self.files) and all(f.archived and f.urls for f in self.files)

    def to_dict(self) -> dict[str, Any]:
        return {
            "obsid": self.obsid,
            "dumps": [d.to_dict() for d in self.dumps],
            "files": [f.to_dict() for f in self.files],
            "label": self.label,
            "bursts": list(self.bursts),
            "enable_map": list(self.enable_map),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ObsEntry:
        """From a manifest item; keys an orchestrator added (store, run_id) are ignored."""
        return cls(
            obsid=d["obsid"],
            dumps=tuple(Dump.from_dict(x) for x in d["dumps"]),
            files=tuple(
                PlannedFile(f["kind"], tuple(f["urls"]), bool(f["archived"])) for f in d["files"]
            ),
            label=d.get("label", GLITCH),
            bursts=tuple(d.get("bursts", ())),
            enable_map=tuple(d.get("enable_map", ())),
        )


@dataclass(frozen=True)
class Wanted:
    """An obsid select() chose: its dumps and the kinds of file to read."""

    obsid: str
    dumps: tuple[Dump, ...]
    kinds: tuple[str, ...]
    redo_quicklook: bool = False  # its rows came from quick-look: redo only from the archive
    label: str = GLITCH
    bursts: tuple[Burst, ...] = ()  # catalogued bursts near it; a GRB entry's own first

    @property
    def time(self) -> datetime:
        """When the observation was triggered: its first dump's or its burst's trigger time."""
        return self.dumps[0].triggertime if self.dumps else self.bursts[0].trigger_time


@dataclass(frozen=True)
class Selection:
    wanted: tuple[Wanted, ...]
    complete: tuple[str, ...]  # already in the archive (from the archive proper)
    slewing_only: tuple[str, ...]  # only slewing files and no slewing asked: reported, not read


@dataclass(frozen=True)
class Plan:
    entries: tuple[ObsEntry, ...]
    selection: Selection
    waiting: tuple[str, ...]  # rows from quick-look whose archived files are not there yet
    api_requests: int
    listings: int
    data_requests: int


def select(
    dumps: Iterable[Dump],
    completions: Mapping[str, Completion],
    kinds: Sequence[str],
    *,
    force: bool = False,
) -> Selection:
    """What to process, from the range's dumps and the archive's records (pure).

    Dumps are merged per obsid (once each); the quick-look obsids' recorded dumps join them.
    Complete obsids are left out unless forced, except those complete from quick-look. A dump
    that lists no event file is assumed to have a pointed one, as the planner always did.
    """
    merged: dict[str, dict[tuple, Dump]] = defaultdict(dict)
    for dump in dumps:
        merged[dump.obsid][dump.key] = dump
    for c in completions.values():
        if c.from_quicklook:
            for dump in recorded_dumps(c):
                merged[c.obsid].setdefault(dump.key, dump)
    wanted, complete, slewing_only = [], [], []
    for obsid, by_key in merged.items():
        record = completions.get(obsid)
        if record is not None and not record.from_quicklook and not force:
            complete.append(obsid)
            continue
        own = tuple(sorted(by_key.values(), key=lambda d: (d.triggertime, d.triggertype)))
        listed = {k for d in own for k in d.kinds} or {DEFAULT_KINDS[0]}
        chosen = tuple(k for k in kinds if k in listed)
        if not chosen:
            slewing_only.append(obsid)
            continue
        redo = record is not None and record.from_quicklook and not force
        wanted.append(Wanted(obsid, own, chosen, redo_quicklook=redo))
    wanted.sort(key=lambda w: (w.dumps[0].triggertime, w.obsid))
    return Selection(tuple(wanted), tuple(sorted(complete)), tuple(sorted(slewing_only)))


def select_bursts(
    selection: Selection,
    bursts: Sequence[Burst],
    completions: Mapping[str, Completion],
    *,
    force: bool = False,
) -> Selection:
    """The selection with the catalogue's bursts (pure): each glitch entry names the bursts
    within BURST_SEARCH of its dumps, and each burst whose trigger obsid is not complete (unless
    forced) and not already a GUANO obsid becomes a GRB entry reading the trigger's bevshsp file.
    """
    wanted = [
        dataclasses.replace(
            w,
            bursts=tuple(
                b
                for b in bursts
                if w.dumps[0].triggertime - BURST_SEARCH
                <= b.trigger_time
                <= w.dumps[-1].triggertime + BURST_SEARCH
            ),
        )
        for w in selection.wanted
    ]
    taken, complete = {w.obsid for w in wanted}, list(selection.complete)
    for b in bursts:
        record = completions.get(b.obsid)
        if b.obsid in taken:
            continue
        if record is not None and not record.from_quicklook and not force:
            complete.append(b.obsid)
            continue
        taken.add(b.obsid)
        redo = record is not None and not force  # from quick-look: redo only from the archive
        wanted.append(
            Wanted(b.obsid, (), (GRB_FILE_KIND,), redo_quicklook=redo, label=GRB, bursts=(b,))
        )
    return dataclasses.replace(
        selection, wanted=tuple(wanted), complete=tuple(sorted(set(complete)))
    )


def dumps_record(dumps: Iterable[Dump]) -> str:
    """Dumps as the archive keeps them with an obsid's rows (the fragment_dumps column)."""
    return json.dumps([d.to_dict() for d in dumps])


def recorded_dumps(completion: Completion) -> tuple[Dump, ...]:
    """The dumps an obsid's rows were planned from, as dumps_record wrote them."""
    return tuple(Dump.from_dict(d) for d in json.loads(completion.dumps or "[]"))


def plan(
    begin: datetime | str,
    end: datetime | str,
    options: PlanOptions | None = None,
    completions: Mapping[str, Completion] | None = None,
    *,
    force: bool = False,
) -> Plan:
    """Observations with GUANO dumps triggered in [begin, end) (UTC), plus quick-look re-plans,
    minus what the archive holds; each with the locations of its event files.

    Raises TransientError naming the GUANO window whose requests kept failing; an obsid whose
    files cannot be located is planned without URLs (reported not archived, asked again later).
    """
    options = options or PlanOptions()
    completions = completions or {}
    t0, t1 = naive_utc(begin), naive_utc(end)
    windows = list(time_windows(t0, t1, timedelta(days=options.window_days)))
    with SwiftAPI(options.api_url, options.policy) as api:
        dumps = fetch_dumps(
            api,
            windows,
            page_size=options.page_size,
            workers=options.workers,
            progress=options.progress,
        )
        selection = select(dumps, completions, options.kinds, force=force)
        if options.grbs:
            selection = select_bursts(selection, _bursts(t0, t1, options), completions, force=force)
        for obsid in selection.slewing_only:
            logger.warning("obsid %s: only slewing data (planned with --slewing to read it)", obsid)
        places = options.places
        listing = ArchiveListing(places.roots, options.policy)
        located = _locate_all(selection.wanted, listing, places, api, options)
        entries, waiting = [], []
        for w, where in zip(selection.wanted, located, strict=True):
            files = tuple(
                PlannedFile(
                    k, where[k].urls if k in where else (), k in where and where[k].archived
                )
                for k in w.kinds
            )
            bursts = tuple(b.to_dict() for b in w.bursts)
            map_urls = where[ENABLE_MAP].urls if ENABLE_MAP in where else ()
            entry = ObsEntry(w.obsid, w.dumps, files, w.label, bursts, enable_map=map_urls)
            if w.redo_quicklook and not entry.archived:
                waiting.append(w.obsid)  # done from quick-look; the archive copy is not there yet
                continue
            entries.append(entry)
        return Plan(
            entries=tuple(entries),
            selection=selection,
            waiting=tuple(waiting),
            api_requests=api.requests.total(),
            listings=listing.listings,
            data_requests=api.requests["/swift/data"],
        )


def _bursts(t0: datetime, t1: datetime, options: PlanOptions) -> list[Burst]:
    """The catalogue's bursts of the range; none when it keeps failing: the glitch windows
    still land, and the next run plans the bursts (their obsids are not complete)."""
    try:
        return list_bursts(t0, t1, api_url=options.grb_api_url, policy=options.policy)
    except TransientError as exc:
        logger.warning("no GRB windows this run: %s", exc)
        return []


def _locate_all(
    wanted: Sequence[Wanted],
    listing: ArchiveListing,
    places: Places,
    api: SwiftAPI,
    options: PlanOptions,
) -> list[dict[str, Location]]:
    """Locations of every wanted obsid, `workers` at a time; a failure costs only its obsid."""

    def one(w: Wanted) -> dict[str, Location]:
        try:
            return locate(w.obsid, (*w.kinds, ENABLE_MAP), w.time, listing, places, api)
        except Exception as exc:  # one obsid's lookup must not fail the plan
            logger.warning("obsid %s: no event-file location: %s", w.obsid, exc)
            return {}

    out = []
    with ThreadPoolExecutor(max_workers=max(1, options.workers)) as pool:
        for n, where in enumerate(pool.map(one, wanted), 1):
            out.append(where)
            if options.progress is not None:
                options.progress("locate", n, len(wanted))
    return out


def write_manifest(
    entries: Sequence[ObsEntry], url: str, storage_options: dict[str, Any] | None = None
) -> None:
    """One JSON array (what Step Functions' item reader takes); never half a manifest."""
    fs, path = fsspec.url_to_fs(url, **(storage_options or {}))
    write_atomically(fs, path, json.dumps([e.to_dict() for e in entries], sort_keys=True).encode())


def read_manifest(url: str, storage_options: dict[str, Any] | None = None) -> list[ObsEntry]:
    """A JSON array (write_manifest), or JSON lines when the URL ends in .jsonl (entries picked
    by hand for an array job, docs/architecture.md)."""
    fs, path = fsspec.url_to_fs(url, **(storage_options or {}))
    text = fs.cat_file(path).decode()
    if path.endswith(".jsonl"):
        items = [json.loads(line) for line in text.splitlines() if line.strip()]
    else:
        items = json.loads(text)
    return [ObsEntry.from_dict(item) for item in items]


def naive_utc(t: datetime | str) -> datetime:
    """Naive datetimes mean UTC; aware ones are converted, strings parsed."""
    t = datetime.fromisoformat(t) if isinstance(t, str) else t
    return t.astimezone(UTC).replace(tzinfo=None) if t.tzinfo else t

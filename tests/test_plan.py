"""Planning: the pure selection step, and whole plans against the fake Swift API and HEASARC."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime
from pathlib import Path

import pytest
from test_guano import KNOBS

from batglitch.pipeline.plan import (
    ObsEntry,
    PlanOptions,
    dumps_record,
    plan,
    read_manifest,
    recorded_dumps,
    select,
    write_manifest,
)
from batglitch.sources.guano import Dump
from batglitch.sources.heasarc import ENABLE_MAP, HEASARC_HTTPS
from batglitch.sources.retry import RetryPolicy
from batglitch.sources.timebase import SWIFT
from batglitch.standins import FakeObservation, FakeSwiftAPI, fake_observations
from batglitch.store.schema import Completion

BEGIN, END = datetime(2024, 3, 1), datetime(2024, 3, 21)
FAST = RetryPolicy(attempts=2, backoff_s=0.01, timeout_s=5.0)


def dump(obsid: str, hour: int, kinds: tuple[str, ...] = ("po",), kind: str = "GBM GRB") -> Dump:
    return Dump(obsid, kind, datetime(2024, 3, 2, hour), duration=200.0, kinds=kinds)


def completion(obsid: str, from_quicklook: bool = False, dumps: tuple[Dump, ...] = ()):
    """The archive's record of one published obsid (only what planning reads is set)."""
    return Completion(
        obsid, 1, "", 0, "", "", "", "", from_quicklook=from_quicklook, dumps=dumps_record(dumps)
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> tuple[list[FakeObservation], Path]:
    """Observations of every kind (a few begun the month before, a few only on quick-look),
    and a local archive root holding the archived ones' folders."""
    observations = fake_observations(
        BEGIN,
        END,
        30,
        seed=3,
        multi_dump_fraction=0.3,
        not_archived_fraction=0.2,
        slewing_fraction=0.2,
        sp_fraction=0.1,
        slewing_only_fraction=0.1,
        early_start_fraction=0.2,
    )
    root = tmp_path_factory.mktemp("heasarc")
    for o in observations:
        if o.archived:
            for kind in o.bat_kinds:
                path = root / o.key(kind)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(b"")
    return observations, root


def run_plan(api: FakeSwiftAPI, root: Path, completions=None, **options):
    """Planned with the filled root first and an empty mirror second (no network in tests)."""
    mirror = root.parent / "mirror"
    opts = PlanOptions(
        api_url=api.url,
        roots=(str(root), str(mirror)),
        quicklook=(api.quicklook_url,),
        policy=FAST,
    )
    opts = PlanOptions(**{**opts.__dict__, **options})
    return plan(BEGIN, END, opts, completions)


def test_select_merges_per_obsid_and_chooses_kinds():
    dumps = [
        dump("00000000001", 1, ("po", "sl")),
        dump("00000000001", 1, ("po", "sl")),  # the same dump from an overlapping window
        dump("00000000001", 5, ("po",), kind="LVK"),
        dump("00000000002", 2, ("sp",)),
        dump("00000000003", 3, ("sl",)),
        dump("00000000004", 4, ()),  # lists no file: assumed to have a pointed one
    ]
    plain = select(dumps, {}, ("po", "sp"))
    assert [(w.obsid, w.kinds, len(w.dumps)) for w in plain.wanted] == [
        ("00000000001", ("po",), 2),
        ("00000000002", ("sp",), 1),
        ("00000000004", ("po",), 1),
    ]
    assert plain.slewing_only == ("00000000003",)
    slewing = select(dumps, {}, ("po", "sp", "sl"))
    assert [w.kinds for w in slewing.wanted] == [("po", "sl"), ("sp",), ("sl",), ("po",)]
    assert slewing.slewing_only == ()


def test_select_leaves_out_complete_obsids_and_adds_quicklook_ones():
    old = dump("00000000009", 0)
    records = {
        "00000000001": completion("00000000001"),
        "00000000002": completion("00000000002", from_quicklook=True),
        "00000000009": completion("00000000009", from_quicklook=True, dumps=(old,)),
    }
    dumps = [dump("00000000001", 1), dump("00000000002", 2)]
    chosen = select(dumps, records, ("po", "sp"))
    assert chosen.complete == ("00000000001",)
    assert [(w.obsid, w.redo_quicklook) for w in chosen.wanted] == [
        ("00000000009", True),
        ("00000000002", True),
    ]
    assert chosen.wanted[0].dumps == (old,) == recorded_dumps(records["00000000009"])
    forced = select(dumps, records, ("po", "sp"), force=True)
    assert forced.complete == () and not any(w.redo_quicklook for w in forced.wanted)


def test_plan_locates_files_by_listing_and_asks_data_only_for_the_rest(world):
    observations, root = world
    with FakeSwiftAPI(observations) as api:
        result = run_plan(api, root)
        asked = sorted(q["obs_id"][0] for p, q in api.requests if p == "/swift/data")
        ql = f"{api.url}/ql"
    by_obsid = {o.obsid: o for o in observations}
    readable = [o for o in observations if o.kinds != ("sl",)]
    assert sorted(e.obsid for e in result.entries) == sorted(o.obsid for o in readable)
    assert sorted(result.selection.slewing_only) == sorted(
        o.obsid for o in observations if o.kinds == ("sl",)
    )
    for e in result.entries:
        o = by_obsid[e.obsid]
        assert [f.kind for f in e.files] == [k for k in ("po", "sp") if k in o.kinds]
        assert e.archived is o.archived
        assert len(e.dumps) == len(o.dumps)
        for f in e.files:
            if o.archived:  # the month it began, under every root in order
                assert f.urls == tuple(
                    f"{r}/{o.key(f.kind)}" for r in (root, root.parent / "mirror")
                )
            else:
                assert f.urls == (f"{ql}/{o.quicklook_key(f.kind)}",)
    # Data requests only for what no listing found: the quick-look observations
    assert asked == sorted(e.obsid for e in result.entries if not by_obsid[e.obsid].archived)
    assert any(o.month != o.dumps[0].trigger_utc.strftime("%Y_%m") for o in readable if o.archived)
    # one listing per (root, month) for the whole plan: Feb and Mar under both roots
    assert result.listings == 4


def test_slewing_reads_slewing_files_even_without_a_pointed_one(world):
    observations, root = world
    with FakeSwiftAPI(observations) as api:
        result = run_plan(api, root, slewing=True)
    assert result.selection.slewing_only == ()
    kinds = {e.obsid: tuple(f.kind for f in e.files) for e in result.entries}
    for o in observations:
        assert kinds[o.obsid] == tuple(k for k in ("po", "sp", "sl") if k in o.kinds)


@pytest.mark.parametrize("knobs", KNOBS.values(), ids=KNOBS.keys())
def test_the_plan_is_the_same_under_every_knob(world, knobs):
    observations, root = world
    with FakeSwiftAPI(observations) as api:
        reference = run_plan(api, root, page_size=10)
    with FakeSwiftAPI(observations, knobs=knobs) as api:
        got = run_plan(api, root, page_size=10)
    shape = [(e.obsid, len(e.dumps), [(f.kind, f.archived) for f in e.files]) for e in got.entries]
    assert shape == [
        (e.obsid, len(e.dumps), [(f.kind, f.archived) for f in e.files]) for e in reference.entries
    ]
    archived = [(e.obsid, e.files) for e in got.entries if e.archived]
    assert archived == [(e.obsid, e.files) for e in reference.entries if e.archived]
    if knobs.time_base == SWIFT:  # the raw times differ by UTCF; the worker decides which
        assert got.entries[0].dumps[0].triggertime != reference.entries[0].dumps[0].triggertime


def test_a_listing_that_fails_falls_back_to_the_data_api(world, tmp_path):
    observations, _ = world
    missing_root = tmp_path / "not-a-root"  # every listing says "no such folder"
    with FakeSwiftAPI(observations) as api:
        result = run_plan(api, missing_root)
        data = api.count("/swift/data")
    assert data == len(result.selection.wanted)
    for e in result.entries:
        if e.archived:
            assert all(f.urls[0].startswith(str(missing_root)) for f in e.files)


def test_progress_reports_windows_and_lookups(world):
    observations, root = world
    calls = []
    with FakeSwiftAPI(observations) as api:
        result = run_plan(api, root, window_days=10.0, progress=lambda *a: calls.append(a))
    assert [c for c in calls if c[0] == "guano"] == [("guano", 1, 2), ("guano", 2, 2)]
    n = len(result.selection.wanted)
    assert [c for c in calls if c[0] == "locate"] == [("locate", i, n) for i in range(1, n + 1)]


def test_manifest_round_trip(world, tmp_path):
    observations, root = world
    with FakeSwiftAPI(observations) as api:
        entries = run_plan(api, root, slewing=True).entries
    url = str(tmp_path / "runs" / "manifest.json")
    write_manifest(entries, url)
    assert len(json.loads(Path(url).read_text())) == len(entries)  # one array: Step Functions
    assert tuple(read_manifest(url)) == entries
    lines = tmp_path / "picked.jsonl"  # entries picked by hand for an array job
    lines.write_text("".join(json.dumps(e.to_dict()) + "\n" for e in entries[:2]))
    assert tuple(read_manifest(str(lines))) == entries[:2]
    assert ObsEntry.from_dict({**entries[0].to_dict(), "run_id": "x"}) == entries[0]


def test_archive_urls_from_the_data_api_map_onto_every_root(world):
    observations, _ = world
    o = next(o for o in observations if o.archived and o.kinds == ("po",))
    with FakeSwiftAPI([o]) as api:  # no root lists anything: the Data API answers
        [entry] = run_plan(api, Path("/nonexistent"), roots=("/r1", "/r2")).entries
    assert entry.files[0].urls == (f"/r1/{o.key()}", f"/r2/{o.key()}")
    assert HEASARC_HTTPS not in entry.files[0].urls[0]


def test_every_planned_url_lies_in_a_place_its_workers_may_read(world):
    """The plan hands out only URLs that pass the workers' check; a quick-look URL the Data API
    gives outside the configured quick-look site leaves that obsid without a location."""
    observations, root = world
    with FakeSwiftAPI(observations) as api:
        good = run_plan(api, root)
        elsewhere = run_plan(api, root, quicklook=("https://quicklook.example/data",))
        places = PlanOptions(
            roots=(str(root), str(root.parent / "mirror")), quicklook=(api.quicklook_url,)
        ).places
    for e in good.entries:
        assert all(places.check(u, e.obsid) == u for f in e.files for u in f.urls)
    quicklook = {e.obsid for e in good.entries if not e.archived}
    assert quicklook and all(f.urls for e in good.entries for f in e.files)
    assert all(not f.urls for e in elsewhere.entries if e.obsid in quicklook for f in e.files)
    assert [e for e in elsewhere.entries if e.obsid not in quicklook] == [
        e for e in good.entries if e.obsid not in quicklook
    ]


def test_each_entry_carries_where_its_enable_map_is_at_no_extra_request(world):
    """Archived obsids: the map's key under every root, from the same month listing as their
    event files; quick-look obsids: the map the Data API lists on the quick-look site, or none
    when it lists none (the fake's enable_map knob off)."""
    observations, root = world
    recent = next(o for o in observations if not o.archived)
    without = dataclasses.replace(recent, obsid="00055555001", enable_map=False)
    with FakeSwiftAPI([*observations, without]) as api:
        result = run_plan(api, root)
        quicklook = api.quicklook_url
    mirror = root.parent / "mirror"
    by_obsid = {e.obsid: e for e in result.entries}
    checked = [o for o in observations if o.obsid in by_obsid]
    assert any(o.archived for o in checked) and not all(o.archived for o in checked)
    for o in checked:
        e = by_obsid[o.obsid]
        if o.archived:
            assert e.enable_map == (f"{root}/{o.key(ENABLE_MAP)}", f"{mirror}/{o.key(ENABLE_MAP)}")
        else:
            assert e.enable_map == (f"{quicklook}/{o.quicklook_key(ENABLE_MAP)}",)
    assert by_obsid[without.obsid].enable_map == () and by_obsid[without.obsid].files[0].urls
    # the Data API was asked about quick-look obsids only, as without maps
    assert result.data_requests == sum(1 for e in result.entries if not e.archived)

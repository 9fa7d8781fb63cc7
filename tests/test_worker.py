"""One observation at a time: planned against the fake Swift API, read from a fake HEASARC tree."""

from __future__ import annotations

import dataclasses
import gzip
import json
import re
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from test_guano import KNOBS

from batglitch.errors import EventFileError, TransientError
from batglitch.pipeline.job import process_item
from batglitch.pipeline.plan import ObsEntry, PlanOptions, plan
from batglitch.pipeline.worker import (
    DONE,
    FAILED,
    NOT_ARCHIVED,
    ObsResult,
    failed,
    ingest_file,
    process_entry,
)
from batglitch.science.config import detector_plane
from batglitch.sources.places import Places
from batglitch.sources.retry import RetryPolicy
from batglitch.standins import FakeSwiftAPI, Fault, Knobs, fake_observations, fill_heasarc
from batglitch.standins.synth import SynthSpec, enable_map_bytes, write_event_file
from batglitch.store.archive import Archive
from batglitch.store.reader import open_archive
from batglitch.store.schema import FLAG_DISABLED, FLAG_ENABLED, FLAG_GAP, FLAG_UNKNOWN

BEGIN, END = datetime(2024, 3, 1), datetime(2024, 3, 8)
FAST = RetryPolicy(timeout_s=10.0, attempts=2, backoff_s=0.01)


@dataclasses.dataclass(frozen=True)
class World:
    """Planned entries by role, the fake HEASARC root and what was injected."""

    entries: dict[str, ObsEntry]  # good, other, corrupt, missing, not_archived
    heasarc: str
    truths: dict
    places: Places  # the fake HEASARC root and the fake API's quick-look site


def url(entry: ObsEntry) -> str:
    """The first location of the entry's first file."""
    return entry.files[0].urls[0]


def with_urls(entry: ObsEntry, *urls: str, archived: bool = True) -> ObsEntry:
    """The entry with its first file's locations replaced."""
    first = dataclasses.replace(entry.files[0], urls=urls, archived=archived)
    return dataclasses.replace(entry, files=(first, *entry.files[1:]))


def planned(api: FakeSwiftAPI, heasarc, **options) -> list[ObsEntry]:
    return list(
        plan(BEGIN, END, PlanOptions(api_url=api.url, roots=(str(heasarc),), **options)).entries
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    heasarc = tmp_path_factory.mktemp("heasarc")
    observations = fake_observations(
        BEGIN, END, 5, seed=4, not_archived_fraction=0.2, corrupt_fraction=0.2
    )
    truths = fill_heasarc(str(heasarc), observations, rate_hz=500.0, duration=90.0, n_glitches=2)
    not_archived = next(o for o in observations if not o.archived)
    corrupt = next(o for o in observations if o.corrupt and o.archived)
    good, other, missing = (o for o in observations if o.archived and not o.corrupt)
    (heasarc / missing.key("po")).unlink()  # listed as archived, but the file is not there
    roles = {"good": good, "other": other, "corrupt": corrupt, "missing": missing}
    roles["not_archived"] = not_archived
    # The API stays up: quick-look URLs of unarchived observations point at it (and 404 there).
    with FakeSwiftAPI(observations) as api:
        places = Places.configured([str(heasarc)], [api.quicklook_url])
        by_obsid = {e.obsid: e for e in planned(api, heasarc, quicklook=places.quicklook)}
        yield World({r: by_obsid[o.obsid] for r, o in roles.items()}, str(heasarc), truths, places)


def marked(archive: Archive) -> set[str]:
    """Obsids a worker completed (their markers wait for publish)."""
    return {m["obsid"] for m in archive.pending()}


def test_an_archived_observation_lands_with_its_glitches(world, tmp_path):
    entry = world.entries["good"]
    archive = Archive(str(tmp_path / "a.zarr"))
    result = process_entry(entry, archive, policy=FAST, places=world.places)
    truth = world.truths[(entry.obsid, "po")]
    assert (result.obsid, result.status, result.source) == (entry.obsid, DONE, url(entry))
    assert result.n_events == truth.n_events
    with open(url(entry), "rb") as f:
        assert result.bytes_read == len(f.read())
    [marker] = archive.pending()
    assert (marker["obsid"], marker["n_windows"]) == (entry.obsid, result.n_windows)
    assert result.n_windows > 0

    archive.publish()
    ds = open_archive(archive.url)
    assert set(ds.obsid.values) == {entry.obsid} and ds.sizes["window"] == result.n_windows
    # Every injected glitch gives the window that starts one pad before its 16 ms bin.
    assert set(truth.glitch_times - 0.024) <= set(ds.window_start.values)


def test_a_corrupt_file_raises_naming_obsid_and_file(world, tmp_path):
    entry = world.entries["corrupt"]
    archive = Archive(str(tmp_path / "a.zarr"))
    with pytest.raises(EventFileError) as caught:
        process_entry(entry, archive, policy=FAST, places=world.places)
    assert (caught.value.obsid, caught.value.source) == (entry.obsid, url(entry))
    assert entry.obsid in str(caught.value) and url(entry) in str(caught.value)
    record = failed(entry.obsid, caught.value, 0.0)
    assert record.status == FAILED and not record.retryable
    assert record.error == str(caught.value)
    assert marked(archive) == set()


def test_an_unarchived_observation_is_not_archived_and_leaves_no_marker(world, tmp_path):
    """No marker: the next run plans the observation again."""
    entry = world.entries["not_archived"]
    assert not entry.archived and url(entry)  # a quick-look URL that answers 404
    archive = Archive(str(tmp_path / "a.zarr"))
    result = process_entry(entry, archive, policy=FAST, places=world.places)
    assert (result.obsid, result.status, result.n_windows) == (entry.obsid, NOT_ARCHIVED, 0)
    assert url(entry) in result.error
    assert marked(archive) == set()


def test_a_missing_archived_file_is_reported_as_a_failure(world, tmp_path):
    entry = world.entries["missing"]
    assert entry.archived
    archive = Archive(str(tmp_path / "a.zarr"))
    result = process_item(entry, archive, None, places=world.places)
    assert (result.obsid, result.status) == (entry.obsid, FAILED)
    assert entry.obsid in result.error and url(entry) in result.error
    assert marked(archive) == set()


def test_locations_are_tried_in_order(world, tmp_path):
    good = world.entries["good"]
    nowhere = f"{world.heasarc}/nowhere{url(good).removeprefix(world.heasarc)}"
    entry = with_urls(good, nowhere, *good.files[0].urls)
    result = process_entry(
        entry, Archive(str(tmp_path / "a.zarr")), policy=FAST, places=world.places
    )
    assert (result.status, result.source) == (DONE, url(good))


def test_a_file_of_another_observation_is_refused(world, tmp_path):
    good, other = world.entries["good"], world.entries["other"]
    misplaced = with_urls(other, *good.files[0].urls)
    archive = Archive(str(tmp_path / "a.zarr"))
    with pytest.raises(EventFileError, match=f"header OBS_ID is {good.obsid}") as caught:
        process_entry(misplaced, archive, policy=FAST, places=world.places)
    assert caught.value.obsid == other.obsid
    assert marked(archive) == set()


def test_a_failing_http_server_is_retried_then_transient(world, tmp_path):
    path = "/ql/sw00000000001bevshpo_uf.evt.gz"
    with FakeSwiftAPI([], faults=[Fault(path=path, status=503, count=100)]) as api:
        entry = with_urls(world.entries["good"], f"{api.url}{path}", archived=False)
        entry = dataclasses.replace(entry, enable_map=())  # only the event file, on quick-look
        with pytest.raises(TransientError, match=entry.obsid) as caught:
            places = Places.configured([], [api.quicklook_url])
            process_entry(entry, Archive(str(tmp_path / "a.zarr")), policy=FAST, places=places)
        assert api.count(path) >= FAST.attempts
    assert failed(entry.obsid, caught.value, 0.0).retryable


def test_uncalibrated_energies_are_refused_unless_allowed(tmp_path):
    path = str(tmp_path / "uncalibrated.evt.gz")
    spec = SynthSpec(obsid="00077000001", duration=90.0, rate_hz=500.0, gainapp=False)
    write_event_file(path, spec)
    archive = Archive(str(tmp_path / "a.zarr"))
    refused = ingest_file(path, archive)
    assert refused.status == FAILED and "GAINAPP" in refused.error and path in refused.error
    assert marked(archive) == set()
    accepted = ingest_file(path, archive, allow_uncalibrated=True)
    assert (accepted.obsid, accepted.status) == (spec.obsid, DONE)
    assert marked(archive) == {spec.obsid}


def test_ingesting_a_damaged_file_reports_it(world, tmp_path):
    bad = url(world.entries["corrupt"])
    result = ingest_file(bad, Archive(str(tmp_path / "a.zarr")))
    assert result.status == FAILED and bad in result.error and "truncated" in result.error
    assert not result.retryable


def test_ingest_takes_the_map_a_downloaded_observation_keeps_in_bat_hk(world, tmp_path):
    """<obsid>/bat/event/<file> finds <obsid>/bat/hk/sw<obsid>bdecb.hk.gz; a file on its own
    has no map: unknown."""
    entry = world.entries["good"]
    lone = tmp_path / "lone.evt.gz"
    lone.write_bytes(Path(url(entry)).read_bytes())
    archive = Archive(str(tmp_path / "a.zarr"))
    assert ingest_file(url(entry), archive).status == DONE
    archive.publish()
    flags = open_archive(archive.url).detector_flags.values
    assert ((flags == FLAG_ENABLED) == world.truths[(entry.obsid, "po")].enabled).all()
    alone = Archive(str(tmp_path / "b.zarr"))
    assert ingest_file(str(lone), alone).status == DONE
    alone.publish()
    flags = open_archive(alone.url).detector_flags.values
    assert set(np.unique(flags)) == {FLAG_UNKNOWN, FLAG_GAP}


def test_results_survive_json(world, tmp_path):
    result = process_entry(
        world.entries["good"], Archive(str(tmp_path / "a.zarr")), policy=FAST, places=world.places
    )
    again = ObsResult(**json.loads(json.dumps(result.to_dict())))
    assert again == result
    assert np.isfinite(again.seconds) and again.seconds > 0


def test_slewing_files_are_searched_on_their_own_and_share_the_fragment(tmp_path):
    """Planned with slewing: both event files of the obsid are read, each searched as the
    reference searches one file, and their windows form one fragment, each row naming its file."""
    heasarc = tmp_path / "heasarc"
    [obs] = fake_observations(BEGIN, END, 1, seed=21, slewing_fraction=1.0, not_archived_fraction=0)
    fill_heasarc(str(heasarc), [obs], rate_hz=500.0, duration=90.0, n_glitches=2)
    with FakeSwiftAPI([obs]) as api:
        [pointed_only] = planned(api, heasarc)
        [entry] = planned(api, heasarc, slewing=True)
    assert [f.kind for f in pointed_only.files] == ["po"]
    assert [f.kind for f in entry.files] == ["po", "sl"]
    per_file = {
        f.urls[0]: ingest_file(f.urls[0], Archive(str(tmp_path / f"{f.kind}.zarr")))
        for f in entry.files
    }
    assert all(r.status == DONE for r in per_file.values())
    archive = Archive(str(tmp_path / "both.zarr"))
    result = process_entry(entry, archive, policy=FAST, places=Places.configured([str(heasarc)]))
    assert result.n_windows == sum(r.n_windows for r in per_file.values())
    assert result.n_events == sum(r.n_events for r in per_file.values())
    assert result.bytes_read == sum(r.bytes_read for r in per_file.values())
    archive.publish()
    ds = open_archive(archive.url)
    by_file = {u: int((ds.source_file.values == u).sum()) for u in per_file}
    assert by_file == {u: r.n_windows for u, r in per_file.items()}
    kinds = {u: set(ds.source_kind.values[ds.source_file.values == u]) for u in per_file}
    assert kinds == {f.urls[0]: {f.kind} for f in entry.files if per_file[f.urls[0]].n_windows}
    assert np.all(np.diff(ds.window_start.values) >= 0)  # one obsid: sorted by window_start


@pytest.fixture(scope="module")
def every_kind(tmp_path_factory):
    """An sp-only, a slewing-only and a mixed (po + sl) observation, archived."""
    heasarc = tmp_path_factory.mktemp("kinds")
    base = fake_observations(BEGIN, END, 3, seed=31, not_archived_fraction=0.0)
    observations = [
        dataclasses.replace(o, kinds=k)
        for o, k in zip(base, [("sp",), ("sl",), ("po", "sl")], strict=True)
    ]
    fill_heasarc(str(heasarc), observations, rate_hz=500.0, duration=90.0, n_glitches=2)
    return observations, heasarc


@pytest.mark.parametrize("knobs", [Knobs(), *KNOBS.values()], ids=["plain", *KNOBS.keys()])
def test_every_dump_kind_is_archived_with_the_same_trigger_times_under_every_knob(
    every_kind, tmp_path, knobs
):
    """Whatever order, cap or paging the service has and whichever base it speaks (the file
    decides it), the archive's trigger times are the true ones (within 1 ms), and every kind's
    windows land, labelled with their kind."""
    observations, heasarc = every_kind
    time_base = knobs.time_base
    archive = Archive(str(tmp_path / "a.zarr"))
    with FakeSwiftAPI(observations, knobs=knobs) as api:
        entries = planned(api, heasarc, slewing=True, page_size=2)
    assert sorted(e.obsid for e in entries) == sorted(o.obsid for o in observations)
    places = Places.configured([str(heasarc)])
    for entry in entries:
        assert process_entry(entry, archive, policy=FAST, places=places).status == DONE
    archive.publish()
    ds = open_archive(archive.url)
    epoch = np.datetime64("2001-01-01T00:00:00", "ns")
    for o in observations:
        rows = ds.obsid.values == o.obsid
        assert set(ds.source_kind.values[rows]) == set(o.kinds)
        assert set(ds.trigger_time_base.values[rows]) == {time_base}
        truth = np.datetime64(o.dumps[0].trigger_utc, "ns")
        assert np.all(abs(ds.trigger_time_utc.values[rows] - truth) <= np.timedelta64(1, "ms"))
        start = ds.window_start.values[rows] + o.dumps[0].utcf  # MET + UTCF = UTC
        utc = epoch + (start * 1e9).astype("timedelta64[ns]")
        assert np.all(abs(ds.window_start_utc.values[rows] - utc) <= np.timedelta64(1, "ms"))
    decided = [json.loads(c.time_base) for c in archive.completions().values()]
    assert len(decided) == len(observations)
    assert all(d[0] == {**d[0], "base": time_base, "checked": True} for d in decided)


def test_rows_carry_the_enable_map_or_say_unknown(tmp_path):
    """The fake archive's enable_map knob both ways. With the map, every row of both files of a
    po + sl observation flags the detectors its files were made with, and no count lies off an
    enabled detector; without it, every detector is UNKNOWN and the gaps are still gaps."""
    heasarc = tmp_path / "heasarc"
    mapped, unmapped = fake_observations(
        BEGIN, END, 2, seed=22, slewing_fraction=0.5, not_archived_fraction=0
    )
    mapped, unmapped = sorted((mapped, unmapped), key=lambda o: -len(o.kinds))
    unmapped = dataclasses.replace(unmapped, enable_map=False)
    truths = fill_heasarc(str(heasarc), [mapped, unmapped], rate_hz=500.0, duration=90.0)
    with FakeSwiftAPI([mapped, unmapped]) as api:
        entries = planned(api, heasarc, slewing=True)
    archive = Archive(str(tmp_path / "a.zarr"))
    for entry in entries:
        result = process_entry(
            entry, archive, policy=FAST, places=Places.configured([str(heasarc)])
        )
        assert result.status == DONE and result.n_windows > 0
    archive.publish()
    ds = open_archive(archive.url)
    plane = detector_plane()
    flags = ds.detector_flags.sel(obsid=mapped.obsid).values
    kinds = set(ds.sel(obsid=mapped.obsid).source_kind.values)
    assert mapped.kinds == ("po", "sl") and kinds == {"po", "sl"}
    for kind in mapped.kinds:  # both files were made with the one map of their folder
        assert ((flags == FLAG_ENABLED) == truths[(mapped.obsid, kind)].enabled).all(), kind
    assert ((flags == FLAG_DISABLED) == (plane & ~truths[(mapped.obsid, "po")].enabled)).all()
    assert ((flags == FLAG_GAP) == ~plane).all()
    counts = ds.dpi.sel(obsid=mapped.obsid).values
    assert counts.sum() > 0 and counts[flags != FLAG_ENABLED].sum() == 0
    unknown = ds.detector_flags.sel(obsid=unmapped.obsid).values
    assert (unknown[:, plane] == FLAG_UNKNOWN).all() and (unknown[:, ~plane] == FLAG_GAP).all()


def test_each_window_takes_the_map_in_force_at_its_start(world, tmp_path):
    """A map that changes during the observation: windows before the change keep the first,
    windows after take the second (batdetmask's rule, science.detmask)."""
    entry = world.entries["good"]
    first = Archive(str(tmp_path / "first"))
    process_entry(entry, first, policy=FAST, places=world.places)
    first.publish()
    starts = open_archive(first.url).window_start.values
    assert len(starts) >= 2
    change = (starts[0] + starts[-1]) / 2
    before = world.truths[(entry.obsid, "po")].enabled
    after = before.copy()
    after[:18] = False  # the first sandwich column switched off
    path = tmp_path / "maps" / f"sw{entry.obsid}bdecb.hk.gz"
    path.parent.mkdir()
    path.write_bytes(
        enable_map_bytes(entry.obsid, [starts[0] - 100.0, change], np.stack([before, after]))
    )
    places = Places.configured([world.heasarc, str(tmp_path / "maps")], world.places.quicklook)
    archive = Archive(str(tmp_path / "a"))
    process_entry(
        dataclasses.replace(entry, enable_map=(str(path),)), archive, policy=FAST, places=places
    )
    archive.publish()
    ds = open_archive(archive.url)
    flags = ds.detector_flags.values
    late = ds.window_start.values > change
    assert late.any() and (~late).any()
    assert ((flags[~late] == FLAG_ENABLED) == before).all()
    assert ((flags[late] == FLAG_ENABLED) == after).all()


def test_a_bad_or_missing_map_costs_only_the_detector_states(world, tmp_path, caplog):
    """An unreadable map, a map of another obsid, a gzip bomb and no map at all: the windows
    land all the same with their detectors unknown; each bad one is one warning line naming the
    obsid and the file."""
    entry = world.entries["good"]
    places = Places.configured([world.heasarc, str(tmp_path)], world.places.quicklook)
    other = world.entries["other"].obsid
    bad = {
        "garbled.hk.gz": (b"SIMPLE  =  not a map", r"\(truncated FITS\)"),
        "foreign.hk.gz": (
            enable_map_bytes(other, [0.0], detector_plane()[None]),
            f"enable map of OBS_ID {other}",
        ),
        "bomb.hk.gz": (gzip.compress(bytes(200 * 1024**2)), "over the cap"),  # MAX_MAP_BYTES
        "nowhere.hk.gz": (None, None),
    }
    plane = detector_plane()
    for name, (payload, problem) in bad.items():
        path = tmp_path / name
        if payload is not None:
            path.write_bytes(payload)
        caplog.clear()
        archive = Archive(str(tmp_path / name.replace(".", "_")))
        mapped = dataclasses.replace(entry, enable_map=(str(path),))
        result = process_entry(mapped, archive, policy=FAST, places=places)
        assert result.status == DONE and result.n_windows > 0, name
        archive.publish()
        flags = open_archive(archive.url).detector_flags.values
        assert (flags[:, plane] == FLAG_UNKNOWN).all() and (flags[:, ~plane] == FLAG_GAP).all()
        warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
        if problem is None:
            assert warnings == [], name
        else:
            [line] = warnings
            assert re.search(f"obsid {entry.obsid}, {path}: .*{problem}", line), line
            assert "\n" not in line

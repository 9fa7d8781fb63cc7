"""GRB windows through the pipeline: bursts of the BAT GRB catalogue planned beside the GUANO
dumps, a BAT trigger entry cut by the worker as the GRB notebook cut it and archived beside the
glitch windows, labelled; evaluate and export read both."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from reference import reference_grb_file

from batglitch.cli import main
from batglitch.pipeline.plan import (
    ObsEntry,
    PlannedFile,
    PlanOptions,
    plan,
    select,
    select_bursts,
)
from batglitch.pipeline.worker import BAT_TRIGGER, DONE, process_entry
from batglitch.science.grb import GLITCH, GRB, burst_columns
from batglitch.sources.grbs import GRB_FILE_KIND, Burst
from batglitch.sources.guano import Dump
from batglitch.sources.heasarc import kind_of
from batglitch.sources.places import Places
from batglitch.sources.retry import RetryPolicy
from batglitch.standins import FakeSwiftAPI, fake_observations
from batglitch.standins.grb_catalog import FakeGRBCatalog, fake_bursts
from batglitch.standins.synth import SynthSpec, write_event_file
from batglitch.store.archive import Archive
from batglitch.store.reader import open_archive, training_set
from batglitch.store.schema import Completion

T0 = 7.0e8
N_EACH = 3  # observations per class: grouped folds need more than one obsid of each


def burst(k: int, trigger_met: float) -> Burst:
    return Burst(f"GRB 240301{'ABC'[k]}", 1_200_000 + k, trigger_met, "", t90=20.0)


def entry(path: Path, obsid: str, label: str = GLITCH, bursts: tuple = ()) -> ObsEntry:
    """A planned entry as the planner writes it: the file's URL and the bursts near it."""
    planned = PlannedFile(kind_of(str(path)), (str(path),), archived=True)
    return ObsEntry(obsid, (), (planned,), label=label, bursts=bursts)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    """N_EACH glitch observations and N_EACH BAT trigger files; the first burst's span covers the
    start of the first glitch file, whose glitches may fall in it."""
    root = tmp_path_factory.mktemp("heasarc")
    entries, bursts = [], []
    for k in range(N_EACH):
        tstart = T0 + 1e4 * k
        obsid = f"000310{k:02d}001"
        path = root / f"sw{obsid}bevshpo_uf.evt.gz"
        write_event_file(path, SynthSpec(obsid=obsid, tstart=tstart, duration=40.0,
                                         rate_hz=1500.0, n_glitches=4, seed=k))  # fmt: skip
        b = burst(k, tstart + 5.0e3)
        trigger = root / f"sw{b.obsid}bevshsp_uf.evt.gz"
        write_event_file(trigger, SynthSpec(obsid=b.obsid, tstart=b.trigger_met - 20.0,
                                            duration=40.0, rate_hz=1500.0, n_glitches=0,
                                            n_grbs=1, trigger_met=b.trigger_met, seed=10 + k))  # fmt: skip
        near = (b.to_dict(),) if k else ({**b.to_dict(), "begin": tstart, "end": tstart + 20},)
        entries += [entry(path, obsid, bursts=near), entry(trigger, b.obsid, GRB, (b.to_dict(),))]
        bursts.append(b)
    archive = Archive(str(tmp_path_factory.mktemp("store") / "archive"))
    places = Places.configured([str(root)])
    for e in entries:
        assert process_entry(e, archive, places=places).status == DONE, e.obsid
    archive.publish()
    return {"root": root, "bursts": bursts, "entries": entries, "store": archive.url}


def test_grb_windows_land_labelled_and_equal_to_the_notebook(world):
    ds = open_archive(world["store"])
    for b in world["bursts"]:
        [row] = np.flatnonzero(ds.obsid.values == b.obsid)
        got = ds.isel(window=int(row))
        expected = reference_grb_file(world["root"] / f"sw{b.obsid}bevshsp_uf.evt.gz")
        assert np.array_equal(got.dpi.values, expected["dpi"])
        assert np.array_equal(got.dpi_lowres.values, expected["dpi_lowres"])
        assert float(got.window_start) == expected["window_start"] == b.trigger_met
        assert str(got.label.values) == GRB and str(got.burst_name.values) == b.name
        assert int(got.trigger_id) == b.trigger_id and bool(got.in_burst)
        assert str(got.trigger_type.values) == BAT_TRIGGER
        assert np.isnan(float(got.snr_low))  # nothing was flagged: the window is the trigger's
    glitch = ds.label.values == GLITCH
    assert glitch.sum() >= N_EACH and (ds.label.values == GRB).sum() == N_EACH
    first = world["entries"][0]
    suspect = ds.in_burst.values & glitch
    # only the first glitch file's windows within its burst's span are flagged, naming it
    assert set(ds.obsid.values[suspect]) <= {first.obsid}
    span = first.bursts[0]
    inside = (
        glitch & (ds.window_stop.values >= span["begin"]) & (ds.window_start.values <= span["end"])
    )
    assert np.array_equal(suspect, inside) and suspect.any()
    assert set(ds.burst_name.values[suspect]) == {span["name"]}
    assert (ds.trigger_id.values[glitch & ~suspect] == -1).all()
    data = training_set(ds, "lowres")
    assert np.array_equal(data.y, ds.label.values.astype(str))


def test_burst_columns_flag_glitches_in_a_burst_and_name_a_grb_window():
    bursts = [
        {"name": "GRB A", "trigger_id": 7, "begin": 100.0, "end": 150.0},
        {"name": "GRB B", "trigger_id": 9, "begin": 140.0, "end": 300.0},
    ]
    start = np.array([50.0, 99.97, 120.0, 145.0, 200.0, 300.1])
    columns = burst_columns(start, start + 0.064, GLITCH, bursts)
    assert columns["in_burst"].tolist() == [False, True, True, True, True, False]
    assert columns["burst_name"].tolist() == ["", "GRB A", "GRB A", "GRB A", "GRB B", ""]
    assert columns["trigger_id"].tolist() == [-1, 7, 7, 7, 9, -1]
    assert set(columns["label"]) == {GLITCH}
    grb = burst_columns(start[:1], start[:1] + 0.064, GRB, bursts[1:])
    assert (grb["label"][0], grb["burst_name"][0], grb["trigger_id"][0]) == (GRB, "GRB B", 9)
    assert burst_columns(start[:1], start[:1], GRB)["trigger_id"].tolist() == [-1]
    with pytest.raises(ValueError, match="label"):
        burst_columns(start, start, "NOISE")


def test_export_writes_the_labels(world, tmp_path, capsys):
    out = tmp_path / "train.npz"
    assert main(["export", world["store"], "--out", str(out), "--resolution", "original"]) == 0
    ds = open_archive(world["store"])
    with np.load(out) as saved:
        assert saved["X"].shape == (ds.sizes["window"], 286 * 173)
        assert saved["y"].tolist() == ds.label.values.tolist()
        assert saved["obsid"].tolist() == ds.obsid.values.tolist()
    assert f"{N_EACH} GRB" in capsys.readouterr().out


def test_evaluate_reports_both_resolutions_and_draws_the_picture(world, tmp_path, capsys):
    picture = tmp_path / "evaluation.png"
    assert main(["evaluate", world["store"], "--out", str(picture)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[:2]] == ["original", "lowres"]
    for line in lines[:2]:
        assert "accuracy" in line and "ROC AUC" in line and f"{N_EACH} GRB" in line
        assert f"{N_EACH}-fold grouped" in line  # one GRB obsid per fold
    assert lines[-1] == f"picture: {picture}" and picture.read_bytes()[:4] == b"\x89PNG"


def test_evaluate_says_why_a_one_class_archive_cannot_train(world, tmp_path, capsys):
    archive = Archive(str(tmp_path / "glitches"))
    [first] = world["entries"][:1]
    process_entry(first, archive, places=Places.configured([str(world["root"])]))
    archive.publish()
    assert main(["evaluate", archive.url, "--out", str(tmp_path / "e.png")]) == 1
    err = capsys.readouterr().err
    assert "no GRB windows" in err and archive.url in err


# -- planning ------------------------------------------------------------------------------------
BEGIN, END = datetime(2024, 3, 1), datetime(2024, 3, 8)


def at(hour: float) -> Burst:
    moment = datetime(2024, 3, 2) + timedelta(hours=hour)
    return Burst(f"GRB h{hour}", 1_300_000 + int(hour * 10), 7.3e8 + hour * 3600, str(moment), 5.0)


def test_select_bursts_names_nearby_bursts_and_adds_one_grb_entry_per_new_trigger():
    shared = Burst("GRB shared", 1_300_031, 7.3e8, "2024-03-02 05:55:00", None)
    guano = Dump(shared.obsid, "GBM GRB", datetime(2024, 3, 2, 6), duration=200.0, kinds=("po",))
    done, redo, fresh, far = at(6.2), at(12.0), at(18.0), at(7.0)
    records = {
        done.obsid: Completion(done.obsid, 1, "", 0, "", "", "", "", from_quicklook=False),
        redo.obsid: Completion(redo.obsid, 1, "", 0, "", "", "", "", from_quicklook=True),
    }
    selection = select([guano], {}, ("po", "sp"))
    chosen = select_bursts(selection, [shared, done, far, redo, fresh], records)
    by_obsid = {w.obsid: w for w in chosen.wanted}
    # within 30 min of its dump: 05:55 and 06:12, not 07:00; GUANO's obsid stays a glitch entry
    assert [b.name for b in by_obsid[guano.obsid].bursts] == ["GRB shared", "GRB h6.2"]
    assert by_obsid[guano.obsid].label == GLITCH and by_obsid[guano.obsid].kinds == ("po",)
    assert chosen.complete == (done.obsid,) and done.obsid not in by_obsid
    for b in (far, redo, fresh):
        w = by_obsid[b.obsid]
        assert (w.label, w.kinds, w.dumps, w.bursts) == (GRB, (GRB_FILE_KIND,), (), (b,))
        assert w.time == b.trigger_time
    assert by_obsid[redo.obsid].redo_quicklook and not by_obsid[fresh.obsid].redo_quicklook
    forced = select_bursts(selection, [done], records, force=True)
    assert [w.obsid for w in forced.wanted] == [guano.obsid, done.obsid] and not forced.complete


@pytest.fixture(scope="module")
def sky(tmp_path_factory):
    """GUANO observations and catalogued bursts (one just before the range, so not planned, and
    one at the first GUANO dump), with every archived file present under a local root."""
    observations = fake_observations(BEGIN, END, 4, seed=8, not_archived_fraction=0.0)
    (before,) = fake_bursts(datetime(2024, 2, 29, 12), BEGIN, 1, seed=2)
    bursts = [before, *fake_bursts(BEGIN, END, 3, seed=3)]
    first = observations[0].dumps[0]
    bursts[1] = dataclasses.replace(bursts[1], trigger_met=first.trigger_met + 5.0)
    root = tmp_path_factory.mktemp("heasarc")
    world = observations + [b.observation() for b in bursts]
    for o in world:
        for kind in o.bat_kinds:
            (root / o.key(kind)).parent.mkdir(parents=True, exist_ok=True)
            (root / o.key(kind)).write_bytes(b"")
    return observations, bursts, world, root


def plan_with(sky, **knobs):
    _, bursts, world, root = sky
    policy = RetryPolicy(attempts=2, backoff_s=0.01, timeout_s=5.0)
    with FakeSwiftAPI(world) as api, FakeGRBCatalog(bursts, **knobs) as catalogue:
        options = PlanOptions(
            api_url=api.url, roots=(str(root),), grbs=True, grb_api_url=catalogue.url, policy=policy
        )
        return plan(BEGIN, END, options).entries


def test_plan_adds_the_ranges_bursts_located_like_glitch_files(sky):
    observations, bursts, _, root = sky
    entries = plan_with(sky)
    grb = [e for e in entries if e.label == GRB]
    planned = sorted(bursts[1:], key=lambda b: b.trigger_met)  # not the one before the range
    assert [e.obsid for e in grb] == [b.obsid for b in planned]
    for entry, b in zip(grb, planned, strict=True):
        [planned] = entry.files
        assert planned.kind == GRB_FILE_KIND and planned.archived
        assert planned.urls == (str(root / b.observation().key(GRB_FILE_KIND)),)
        assert [(x["name"], x["trigger_id"]) for x in entry.bursts] == [(b.name, b.trigger_id)]
        assert entry.bursts[0]["begin"] < b.trigger_met < entry.bursts[0]["end"]
    glitch = {e.obsid: e for e in entries if e.label == GLITCH}
    assert set(glitch) == {o.obsid for o in observations}  # trigger files are no GUANO dumps
    assert [x["name"] for x in glitch[observations[0].obsid].bursts] == [bursts[1].name]
    assert ObsEntry.from_dict(grb[0].to_dict()) == grb[0]  # through the manifest


def test_a_failing_catalogue_leaves_the_glitch_plan_intact(sky):
    observations, *_ = sky
    entries = plan_with(sky, fail_first=100)
    assert {e.label for e in entries} == {GLITCH} and len(entries) == len(observations)

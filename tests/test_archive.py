"""The archive: fragments written without coordination, published as Icechunk versions, and the
contract downstream readers rely on (plain icechunk + xarray, reference DPI layout, provenance)."""

from __future__ import annotations

import datetime as dt
import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timedelta
from pathlib import Path

import icechunk
import numpy as np
import pytest
import xarray as xr
import zarr
from hypothesis import given
from hypothesis import strategies as st
from reference import reference_file

from batglitch.errors import BatGlitchError
from batglitch.pipeline.worker import DONE, NO_GLITCHES, ingest_file
from batglitch.science.config import DetectionConfig
from batglitch.standins.rows import fragment
from batglitch.standins.synth import UTCF_S, SynthSpec, write_event_file
from batglitch.store.archive import Archive, Fragment
from batglitch.store.keys import FRAGMENTS, PENDING, marker_key, new_attempt_id
from batglitch.store.publish import place
from batglitch.store.reader import open_archive, open_provenance, training_set
from batglitch.store.schema import WINDOW_COLUMNS

MET_EPOCH = datetime(2001, 1, 1)
# Written out of obsid order on purpose.
SPECS = (
    SynthSpec(obsid="00031000002", tstart=7.1e8, duration=90.0, rate_hz=500.0, n_glitches=3, seed=2),
    SynthSpec(obsid="00031000001", tstart=7.0e8, duration=90.0, rate_hz=500.0, n_glitches=2,
              n_grbs=1, seed=1),
    SynthSpec(obsid="00031000003", tstart=7.2e8, duration=90.0, rate_hz=500.0, n_glitches=0, seed=3),
)  # fmt: skip


def plain_open(store: str) -> xr.Dataset:
    """The README's one line for readers with only icechunk and xarray installed."""
    storage = icechunk.local_filesystem_storage(f"{store}/repo")
    session = icechunk.Repository.open(storage).readonly_session("main")
    return xr.open_zarr(session.store, consolidated=False)


def rows_of(ds: xr.Dataset, obsid: str) -> xr.Dataset:
    return ds.isel(window=np.flatnonzero(ds.obsid.values == obsid))


def expected_rows(frag: Fragment, name: str) -> np.ndarray:
    """An obsid's rows as the archive holds them: in window_start order."""
    return frag.rows[name][np.argsort(frag.rows["window_start"], kind="stable")]


def leftovers(archive: Archive) -> list[str]:
    """Fragment and marker objects still in the store (publish clears what it consumed)."""
    root = Path(archive.path(""))
    return sorted(
        str(p.relative_to(root))
        for prefix in (FRAGMENTS, PENDING)
        for p in (root / prefix).rglob("*")
        if p.is_file()
    )


@pytest.fixture(scope="module")
def ingested(tmp_path_factory) -> tuple[str, dict[str, Path], list]:
    """An archive made from synthetic event files through the worker, published."""
    root = tmp_path_factory.mktemp("contract")
    files = {}
    for spec in SPECS:
        files[spec.obsid] = root / f"sw{spec.obsid}bevshpo_uf.evt.gz"
        write_event_file(files[spec.obsid], spec)
    store = str(root / "archive")
    archive = Archive(store)
    results = [ingest_file(str(path), archive) for path in files.values()]
    archive.publish()
    return store, files, results


def test_ingested_files_are_published_with_their_provenance(ingested):
    store, files, results = ingested
    assert [r.status for r in results] == [DONE, DONE, NO_GLITCHES]
    archive = Archive(store)
    completions = archive.completions()
    assert sorted(completions) == sorted(files)
    for r in results:
        done = completions[r.obsid]
        assert done.n_windows == r.n_windows and done.source == str(files[r.obsid])
        assert done.size == files[r.obsid].stat().st_size and not done.from_quicklook
    assert leftovers(archive) == []  # consumed fragments and markers are cleared


def test_view_rows_equal_the_reference_workflow(ingested):
    """Same windows, same numbers, and dpi[i].ravel() == np.ravel(reference array)."""
    store, files, _ = ingested
    ds = plain_open(store)
    for obsid, path in files.items():
        expected = reference_file(path)
        got = rows_of(ds, obsid)
        assert got.sizes["window"] == len(expected)
        for i, ref in enumerate(expected):
            row = got.isel(window=i)
            for name in ("window_start", "window_stop", "snr_low", "snr_ratio", "n_events"):
                assert row[name].item() == ref[name], (obsid, i, name)
            assert np.array_equal(row.dpi.values.ravel(), np.ravel(ref["dpi"]))
            assert np.array_equal(row.dpi_lowres.values.ravel(), np.ravel(ref["dpi_lowres"]))
    assert ds.sizes["window"] == sum(len(reference_file(p)) for p in files.values()) > 0


def test_view_follows_the_contract_for_plain_readers(ingested):
    store, files, _ = ingested
    ds = plain_open(store)  # icechunk + xarray, no project code
    n = ds.sizes["window"]
    assert ds.dpi.dims == ("window", "detx", "dety")
    assert ds.dpi.shape == (n, 286, 173)
    assert ds.dpi_lowres.dims == ("window", "sand_y", "sand_x", "energy_band")
    assert ds.dpi_lowres.shape == (n, 16, 16, 2)
    for name in ("window_start", "window_stop", "snr_low", "snr_ratio"):
        assert ds[name].dims == ("window",) and ds[name].dtype == np.float64
    assert ds.n_events.dims == ("window",) and np.issubdtype(ds.n_events.dtype, np.integer)
    assert np.array_equal(ds.n_events.values, ds.dpi.values.sum(axis=(1, 2)))
    assert ds.attrs["n_windows"] == n
    assert json.loads(ds.attrs["algorithm"]) == DetectionConfig().as_attrs()  # netCDF-ready
    assert ds.dpi.attrs["long_name"] and ds.window_start.attrs["units"] == "s"

    session = icechunk.Repository.open(icechunk.local_filesystem_storage(f"{store}/repo"))
    group = zarr.open_group(session.readonly_session("main").store, mode="r")  # plain zarr
    assert group["dpi"].shape == (n, 286, 173)
    # Variable-length UTF-8 strings, but the always-11-digit obsid fixed-width (schema.py)
    for name in ("trigger_type", "source_file", "provenance/source"):
        assert group[name].metadata.to_dict()["data_type"] == "string", name
    for name in ("obsid", "provenance/obsid"):
        assert group[name].metadata.to_dict()["data_type"]["name"] == "fixed_length_utf32", name
    assert all(len(o) == 11 and o.isdigit() for o in group["obsid"][...])

    # Provenance apart from the training dataset: one row per complete obsid, the glitch-free
    # one included, in its own group that plain xarray opens too.
    assert "fragment" not in ds.dims
    provenance = xr.open_zarr(group.store, group="provenance", consolidated=False)
    assert sorted(provenance.obsid.values) == sorted(files)
    by_obsid = dict(zip(provenance.obsid.values, provenance.n_windows.values, strict=True))
    assert by_obsid["00031000003"] == 0


def test_rows_come_in_publish_order_and_sort_in_one_line(ingested):
    ds = open_archive(ingested[0])
    keys = list(zip(ds.obsid.values, ds.window_start.values, strict=True))
    assert len(set(keys)) == len(keys)
    # one publish: obsid order, window_start order within an obsid
    assert keys == sorted(keys)
    ordered = ds.sortby(["obsid", "window_start"])  # the documented sorted view
    assert list(zip(ordered.obsid.values, ordered.window_start.values, strict=True)) == keys


def test_utc_coordinates_decode_to_epoch_plus_met_plus_utcf(ingested):
    ds = open_archive(ingested[0])
    assert ds.window_start_utc.dtype.kind == "M"
    for met, utc in zip(ds.window_start.values, ds.window_start_utc.values, strict=True):
        expected = np.datetime64(MET_EPOCH + timedelta(seconds=float(met) + UTCF_S), "ns")
        assert abs(utc - expected) <= np.timedelta64(1, "us")
    # Hand-ingested files belong to no GUANO dump.
    assert set(ds.trigger_type.values) == {""}
    assert np.isnat(ds.trigger_time_utc.values).all()


def test_training_set_feeds_a_scikit_learn_estimator_and_names_its_version(ingested):
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold

    ds = open_archive(ingested[0])
    data = training_set(ds)
    n = ds.sizes["window"]
    assert data.X.shape == (n, 16 * 16 * 2) and data.X.dtype == np.float32
    assert np.array_equal(data.X[0], ds.dpi_lowres[0].values.ravel())
    original = training_set(ds, "original")
    assert original.X.shape == (n, 286 * 173)
    assert np.array_equal(original.X[-1], ds.dpi[-1].values.ravel())
    assert data.version == ds.attrs["snapshot_id"] == Archive(ingested[0]).versions()[0].snapshot_id

    labels = data.obsid == data.obsid[0]  # any two classes will do to show the shapes fit
    model = LogisticRegression(max_iter=200).fit(data.X, labels)
    assert model.predict(data.X).shape == (n,)
    for train, test in GroupKFold(n_splits=2).split(data.X, labels, data.groups):
        assert not set(data.groups[train]) & set(data.groups[test])


def test_the_view_is_cf_style_and_round_trips_through_netcdf(ingested, tmp_path):
    """Units and long names on every window variable, coordinate values on every image
    dimension, MET time references, attributes netCDF can hold: to_netcdf() writes it and
    reads it back equal."""
    ds = open_archive(ingested[0])
    assert ds.attrs["Conventions"].startswith("CF-")
    assert json.loads(ds.attrs["algorithm"]) == DetectionConfig().as_attrs()
    for name, var in ds.variables.items():
        if name == "energy_band_bounds":  # CF: bounds take the coordinate's
            continue
        assert "long_name" in var.attrs, name
        unitless = var.dtype.kind in "OUM" or "flag_values" in var.attrs  # strings, times, flags
        assert "units" in var.attrs or unitless or "units" in var.encoding, name
    assert ds.detector_flags.attrs["flag_meanings"] == "unknown enabled disabled gap"
    assert list(ds.energy_band.values) == [15.0, 50.0] and ds.energy_band.attrs["units"] == "keV"
    assert ds.energy_band_bounds.values.tolist() == [[15.0, 50.0], [50.0, 350.0]]
    assert ds.detx.values[-1] == 285 and ds.dety.values[-1] == 172 and len(ds.sand_x) == 16
    assert ds.lc_bin.attrs["units"] == "s" and ds.lc_bin.values[32] == 0.0
    assert np.isclose(ds.lc_bin.values[33], 0.016)
    assert ds.window_start.attrs["timesys"] == "TT" and ds.window_start.attrs["mjdrefi"] == 51910
    assert set(ds.dpi.coords) - set(ds.dims) == {"obsid", "window_start"}  # short plot titles

    path = tmp_path / "view.nc"
    ds.to_netcdf(path, engine="h5netcdf")
    back = xr.open_dataset(path, engine="h5netcdf").load()
    xr.testing.assert_identical(back.set_xindex("obsid"), ds.load())


def test_strings_are_plain_python_strings_that_numpy_and_xarray_accept(ingested, tmp_path):
    ds = open_archive(ingested[0])
    assert ds.obsid.dtype == np.dtype("<U11")
    for name in ("trigger_type", "source_file"):
        values = ds[name].values
        assert values.dtype == object and all(type(v) is str for v in values), name
        assert values.astype(str).dtype.kind == "U"
    obsid = ds.obsid.values[0]
    assert ds.sel(obsid=obsid).sizes["window"] == int((ds.obsid == obsid).sum()) > 0
    assert ds.where(ds.obsid == obsid, drop=True).sizes["window"] > 0
    np.savez(tmp_path / "ids.npz", obsid=ds.obsid.values.astype(str))
    with np.load(tmp_path / "ids.npz") as saved:  # allow_pickle stays False: no objects inside
        assert list(saved["obsid"]) == list(ds.obsid.values)
    plain = plain_open(ingested[0]).set_xindex("obsid")  # the README's one-liner
    assert plain.sel(obsid=obsid).sizes["window"] == ds.sel(obsid=obsid).sizes["window"]


@pytest.mark.parametrize("opener", [open_archive, plain_open], ids=["open_archive", "plain"])
def test_group_k_fold_straight_from_the_archive(ingested, opener, tmp_path):
    """The README's training example, with the groups taken from the dataset itself, through
    batglitch and through the plain xarray one-liner alike; the obsids save without pickling."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold, cross_val_score

    ds = opener(ingested[0])
    assert ds.obsid.dtype == np.dtype("<U11")
    np.savez(tmp_path / "ids.npz", obsid=ds.obsid.values)
    with np.load(tmp_path / "ids.npz") as saved:  # allow_pickle stays False
        assert list(saved["obsid"]) == list(ds.obsid.values)
    X = ds.dpi_lowres.values.reshape(ds.sizes["window"], -1)
    y = ds.snr_low.values > np.median(ds.snr_low.values)
    scores = cross_val_score(
        LogisticRegression(max_iter=500), X, y, groups=ds.obsid.values, cv=GroupKFold(n_splits=2)
    )
    assert len(scores) == 2 and np.isfinite(scores).all()
    for train, test in GroupKFold(n_splits=2).split(X, y, groups=ds.obsid.values):
        assert not set(ds.obsid.values[train]) & set(ds.obsid.values[test])


def test_plain_readers_write_netcdf_too(ingested, tmp_path):
    """The one-liner's dataset (variable-length strings as numpy StringDType, obsid as <U11)
    goes through to_netcdf and back with every value."""
    ds = plain_open(ingested[0])
    assert ds.trigger_type.dtype.kind == "T"  # what zarr gives plain readers
    path = tmp_path / "plain.nc"
    ds.to_netcdf(path, engine="h5netcdf")
    back = xr.open_dataset(path, engine="h5netcdf").load()
    for name, var in ds.variables.items():
        want = var.values.astype(object) if var.dtype.kind == "T" else var.values
        np.testing.assert_array_equal(back[name].values, want, err_msg=name)  # NaT == NaT here
    assert back.attrs == ds.attrs


def test_empty_archive_still_opens(tmp_path):
    archive = Archive(str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match="no archive has been published"):
        open_archive(archive.url)
    summary = archive.publish()
    assert (summary.n_obsids, summary.n_windows) == (0, 0)
    ds = plain_open(archive.url)
    assert ds.sizes["window"] == 0 and ds.dpi.shape == (0, 286, 173)
    assert training_set(ds).X.shape == (0, 16 * 16 * 2)
    assert training_set(ds, "original").X.shape == (0, 286 * 173)

    # An observation without glitches is complete but adds no rows: a marker, no fragment.
    archive.write_fragment(fragment("00000000007", 0))
    assert leftovers(archive) == [marker_key("00000000007", archive.pending()[0]["attempt"])]
    assert archive.publish().n_obsids == 1
    assert open_archive(archive.url).sizes["window"] == 0
    provenance = open_provenance(archive.url)
    assert list(provenance.obsid.values) == ["00000000007"]
    assert provenance.sel(obsid="00000000007").n_windows.item() == 0


@given(
    n_rows=st.integers(0, 40),
    data=st.data(),
    n_new=st.integers(0, 40),
)
def test_placement_keeps_every_live_row_once_and_moves_only_what_it_must(n_rows, data, n_new):
    dropped = np.array(
        sorted(data.draw(st.sets(st.integers(0, max(n_rows - 1, 0)))) if n_rows else [])
    )
    dropped = dropped.astype(np.int64)
    p = place(n_rows, dropped, n_new)
    live = np.setdiff1d(np.arange(n_rows), dropped)
    assert p.length == len(live) + n_new
    assert len(p.move_from) == len(p.move_to) <= max(len(dropped) - n_new, 0)
    # after the moves, the live rows sit at: their own index, or where they were moved to
    kept = np.setdiff1d(live, p.move_from)
    final = np.concatenate([kept, p.move_to, p.targets])
    assert sorted(final.tolist()) == list(range(p.length))  # dense, nothing twice
    assert set(p.move_to) <= set(dropped.tolist())  # only dropped slots are overwritten
    assert set(p.targets.tolist()) <= set(dropped.tolist()) | set(range(n_rows, p.length))


def test_a_rerun_replaces_an_obsids_rows_and_touches_no_other(tmp_path):
    archive = Archive(str(tmp_path / "a"))
    first = {
        f"0000000000{i}": fragment(f"0000000000{i}", n, seed=i) for i, n in [(1, 5), (2, 3), (3, 4)]
    }
    for frag in first.values():
        archive.write_fragment(frag)
    archive.publish()
    before = open_archive(archive.url).load()
    newer = {  # fewer rows than before (rows move in), and more (rows are appended)
        "00000000001": fragment("00000000001", 2, seed=11),
        "00000000003": fragment("00000000003", 6, seed=13),
    }
    archive.write_fragment(fragment("00000000001", 9, seed=99))  # superseded by the next one
    for frag in newer.values():
        archive.write_fragment(frag)
    summary = archive.publish()
    assert (summary.n_obsids, summary.n_windows, summary.added, summary.replaced) == (3, 11, 0, 2)
    ds = open_archive(archive.url)
    for obsid, frag in {**first, **newer}.items():
        rows = rows_of(ds, obsid)
        for name in ("window_start", "dpi", "lightcurve", "n_events"):
            assert np.array_equal(rows[name].values, expected_rows(frag, name)), (obsid, name)
    assert same_rows(rows_of(ds, "00000000002"), rows_of(before, "00000000002"))
    table = archive.completions()
    assert table["00000000001"].n_windows == 2 and table["00000000003"].n_windows == 6
    assert leftovers(archive) == []


def test_publish_refuses_fragments_of_different_configurations(tmp_path):
    archive = Archive(str(tmp_path / "a"))
    archive.write_fragment(fragment("00000000001", 2, seed=1))
    archive.publish()
    archive.write_fragment(
        fragment("00000000002", 2, seed=2, config=DetectionConfig(z_low_min=8.0))
    )
    with pytest.raises(BatGlitchError, match="different algorithm configurations"):
        archive.publish()
    # The refused publish left the previous version as it was.
    assert list(np.unique(open_archive(archive.url).obsid.values)) == ["00000000001"]
    assert len(archive.versions()) == 1
    # Re-running the odd one out with the common configuration resolves it.
    archive.write_fragment(fragment("00000000002", 2, seed=2))
    assert archive.publish().n_obsids == 2


# Runs in a child process: writes a fragment, and stalls after its rows reached the store but
# before its marker did, so that the parent can SIGKILL it at that point.
STALLING_WRITER = textwrap.dedent(
    """
    import pickle, sys, time
    from pathlib import Path
    from batglitch.store.archive import Archive

    store, fragment_file, flag = sys.argv[1:4]

    def stall(self, key, value):
        Path(flag).touch()
        time.sleep(600)

    Archive.put_json = stall
    Archive(store).write_fragment(pickle.loads(Path(fragment_file).read_bytes()))
    """
)


def kill_mid_write(store: str, big: Fragment, tmp_path: Path) -> None:
    fragment_file, flag = tmp_path / "fragment.pickle", tmp_path / "rows-written"
    fragment_file.write_bytes(pickle.dumps(big))
    child = subprocess.Popen(
        [sys.executable, "-c", STALLING_WRITER, store, str(fragment_file), str(flag)]
    )
    try:
        deadline = time.monotonic() + 60
        while not flag.exists():
            assert child.poll() is None, "the writer ended before writing its rows"
            assert time.monotonic() < deadline, "no rows written within 60 s"
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL


def test_worker_killed_mid_write_leaves_nothing_visible_and_a_rerun_completes(tmp_path):
    archive = Archive(str(tmp_path / "a"))
    archive.write_fragment(fragment("00000000001", 3, seed=1))
    big = fragment("00000000002", 200, seed=2)
    kill_mid_write(archive.url, big, tmp_path)

    [dead] = [key for key in leftovers(archive) if "/00000000002/" in key]
    assert dead.startswith(f"{FRAGMENTS}/00000000002/")  # its rows, and no marker
    summary = archive.publish()  # default grace: the attempt might belong to a live worker
    assert (summary.n_obsids, summary.n_windows, summary.pruned) == (1, 3, 0)
    published = set(open_archive(archive.url).obsid.values)
    assert "00000000002" not in published | set(open_provenance(archive.url).obsid.values)
    assert leftovers(archive) == [dead]

    archive.write_fragment(big)  # the re-run
    summary = archive.publish(prune_grace_s=0.0)  # grace period over
    assert (summary.n_obsids, summary.n_windows, summary.pruned) == (2, 203, 1)
    rows = rows_of(open_archive(archive.url), "00000000002")
    assert np.array_equal(rows.window_start.values, expected_rows(big, "window_start"))
    assert np.array_equal(rows.dpi.values, expected_rows(big, "dpi"))
    assert leftovers(archive) == []


def test_an_attempt_already_published_is_not_published_again(tmp_path):
    """A publish killed after its commit but before clearing leaves markers the next one skips."""
    archive = Archive(str(tmp_path / "a"))
    frag = fragment("00000000001", 3, seed=1)
    marker = archive.write_fragment(frag)
    archive.publish()
    archive.put_json(marker_key("00000000001", marker["attempt"]), marker)  # as if not cleared
    summary = archive.publish()
    assert (summary.added, summary.replaced, summary.n_windows) == (0, 0, 3)
    assert leftovers(archive) == []


def test_pending_survives_a_marker_cleared_while_it_is_read(tmp_path, monkeypatch):
    archive = Archive(str(tmp_path / "a"))
    first = archive.write_fragment(fragment("00000000001", 1, seed=1))
    archive.write_fragment(fragment("00000000001", 1, seed=2))
    listing = archive.fs.glob

    def list_then_clear(pattern, **kwargs):
        found = listing(pattern, **kwargs)
        # Another process's publish clears the first attempt right now.
        Path(archive.path(marker_key("00000000001", first["attempt"]))).unlink(missing_ok=True)
        return found

    monkeypatch.setattr(archive.fs, "glob", list_then_clear)
    [left] = archive.pending()
    assert left["attempt"] > first["attempt"]


def same_rows(a: xr.Dataset, b: xr.Dataset) -> bool:
    return a.sizes["window"] == b.sizes["window"] and all(
        np.array_equal(a[name].values, b[name].values, equal_nan=a[name].dtype.kind in "fmM")
        for name in WINDOW_COLUMNS
    )


def test_a_reader_during_finalize_sees_the_old_view_or_the_new(tmp_path, monkeypatch):
    archive = Archive(str(tmp_path / "a"))
    archive.write_fragment(fragment("00000000001", 3, seed=1))
    archive.publish()
    old = open_archive(archive.url).load()
    archive.write_fragment(fragment("00000000002", 2, seed=2))
    archive.write_fragment(fragment("00000000001", 1, seed=3))
    load, seen = archive._load, []

    def read_meanwhile(markers):
        for item in load(markers):
            seen.append(plain_open(archive.url).load())  # a reader, while publish writes
            yield item
        seen.append(open_archive(archive.url).load())

    monkeypatch.setattr(archive, "_load", read_meanwhile)
    archive.publish()
    new = open_archive(archive.url).load()
    assert len(seen) == 3 and not same_rows(old, new)
    for view in seen:
        assert same_rows(view, old)  # nothing of a publish shows before its commit


def test_two_publishes_at_once_are_settled_by_conflict_detection(tmp_path, monkeypatch):
    """The second publish commits first; the first one's commit conflicts, and it starts again
    from the new tip: both publishes' obsids end up in the archive, once each."""
    archive = Archive(str(tmp_path / "a"))
    archive.write_fragment(fragment("00000000001", 3, seed=1))
    other = Archive(archive.url)
    load, raced = archive._load, []

    def another_publish_meanwhile(markers):
        yield from load(markers)
        if not raced:
            raced.append(True)
            other.write_fragment(fragment("00000000002", 2, seed=2))
            other.publish()

    monkeypatch.setattr(archive, "_load", another_publish_meanwhile)
    summary = archive.publish()
    assert (summary.n_obsids, summary.n_windows) == (2, 5)
    assert [v.n_obsids for v in archive.versions()] == [2, 2]
    assert sorted(open_provenance(archive.url).obsid.values) == ["00000000001", "00000000002"]
    assert open_archive(archive.url).sizes["window"] == 5


def test_versions_reopen_exactly_and_expire_with_garbage_collection(tmp_path):
    archive = Archive(str(tmp_path / "a"))
    runs, views = [new_attempt_id() for _ in range(3)], []
    for i, run_id in enumerate(runs):
        archive.write_fragment(fragment("00000000001", 2 + i, seed=i))  # replaced every time
        archive.write_fragment(fragment(f"0000000001{i}", 1, seed=10 + i))
        archive.publish(run_id=run_id)
        views.append(open_archive(archive.url).load())
    listed = archive.versions()
    assert [v.run_id for v in listed] == runs[::-1]
    assert [(v.n_obsids, v.n_windows) for v in listed] == [(4, 7), (3, 5), (2, 3)]
    for run_id, version, view in zip(runs, listed[::-1], views, strict=True):
        for name in (run_id, version.snapshot_id):
            again = open_archive(archive.url, version=name).load()
            assert again.drop_attrs().equals(view.drop_attrs()), name

    time.sleep(0.05)
    expired, gc = archive.expire(dt.datetime.now(dt.UTC))
    assert expired == 2 and gc.chunks_deleted > 0  # the replaced rows' chunks are gone
    assert [v.run_id for v in archive.versions()] == [runs[-1]]
    for gone in (runs[0], listed[-1].snapshot_id):
        with pytest.raises(FileNotFoundError, match="not found"):
            open_archive(archive.url, version=gone)
    assert open_archive(archive.url).drop_attrs().equals(views[-1].drop_attrs())

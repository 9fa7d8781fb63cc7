"""The command line: ingest a download tree, preview, export, and the array-job commands."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from matplotlib.image import imread

import batglitch as batglitch_package
from batglitch.cli import main, utc_time
from batglitch.preview import DPI, ROW_IN, WIDTH_IN
from batglitch.standins import FakeSwiftAPI, fake_observations, fill_heasarc
from batglitch.store.archive import Archive
from batglitch.store.reader import open_archive, open_provenance, training_set

OBSIDS = ("00042000001", "00042000002", "00042000003")
PROVENANCE = ["attempt", "completed_at"]  # differ between any two runs


@pytest.fixture(scope="module")
def downloads(tmp_path_factory) -> tuple[Path, Path]:
    """The old workflow's download tree, made with `batglitch synth`, plus one truncated file."""
    root = tmp_path_factory.mktemp("downloads")
    for n, obsid in enumerate(OBSIDS):
        folder = root / obsid / "bat" / "event"
        folder.mkdir(parents=True)
        out = folder / f"sw{obsid}bevshpo_uf.evt.gz"
        argv = ["synth", str(out), "--obsid", obsid, "--tstart", str(7.0e8 + 1e4 * n),
                "--duration", "90", "--rate", "500", "--glitches", "2", "--seed", str(n)]  # fmt: skip
        assert main(argv) == 0
    good = root / OBSIDS[0] / "bat" / "event" / f"sw{OBSIDS[0]}bevshpo_uf.evt.gz"
    bad = root / "00042000009" / "bat" / "event" / "sw00042000009bevshpo_uf.evt.gz"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(good.read_bytes()[:50_000])
    (root / "README.txt").write_text("not an event file: ingest must not pick it up")
    return root, bad


@pytest.fixture(scope="module")
def store(downloads, tmp_path_factory) -> str:
    store = str(tmp_path_factory.mktemp("cli") / "archive")
    assert main(["ingest", str(downloads[0]), "--store", store]) == 1  # the bad file is in there
    return store


def test_ingest_reports_the_bad_file_and_archives_the_rest(downloads, tmp_path, capsys):
    root, bad = downloads
    store = str(tmp_path / "a.zarr")
    assert main(["ingest", str(root), "--store", store]) == 1  # one bad file: scripts notice
    out = capsys.readouterr().out
    [failed] = [line for line in out.splitlines() if line.startswith("failed")]
    assert str(bad) in failed and "truncated" in failed
    assert sum(line.startswith("done") for line in out.splitlines()) == len(OBSIDS)
    ds = open_archive(store)
    assert sorted(set(ds.obsid.values)) == list(OBSIDS)
    assert f"{ds.sizes['window']} windows from {len(OBSIDS)} obsids" in out

    # Running again supersedes every fragment with an identical one: the same archive.
    assert main(["ingest", str(root), "--store", store]) == 1
    again = open_archive(store)
    xr.testing.assert_equal(again, ds)
    provenance = [open_provenance(store, v.snapshot_id) for v in Archive(store).versions()]
    xr.testing.assert_equal(*(p.drop_vars(PROVENANCE) for p in provenance))
    assert not list(Path(store, "fragments").glob("*/*"))  # published fragments are cleared

    # Each publish is a version: listed, and exported again exactly by its snapshot id.
    capsys.readouterr()
    assert main(["versions", store]) == 0
    listed = capsys.readouterr().out.splitlines()[1:]
    first, second = Archive(store).versions()[::-1]
    assert [line.split()[0] for line in listed] == [second.snapshot_id, first.snapshot_id]
    assert all(line.split()[-2:] == [str(ds.sizes["window"]), str(len(OBSIDS))] for line in listed)
    out = tmp_path / "first.npz"
    assert main(["export", store, "--out", str(out), "--version", first.snapshot_id]) == 0
    with np.load(out) as exported:
        assert str(exported["version"]) == first.snapshot_id
        assert np.array_equal(exported["X"], training_set(ds).X)


def test_ingest_exits_non_zero_when_nothing_lands(downloads, tmp_path):
    """The real process exit status, as a shell script sees it."""
    store = str(tmp_path / "a.zarr")
    command = [sys.executable, "-m", "batglitch.cli", "ingest", str(downloads[1]), "--store", store]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert str(downloads[1]) in done.stdout
    assert open_archive(store).sizes["window"] == 0


def test_preview_writes_a_real_image(store, tmp_path, capsys):
    out = tmp_path / "preview.png"
    assert main(["preview", store, "--out", str(out), "-n", "3"]) == 0
    assert f"{out}: 3 windows" in capsys.readouterr().out
    image = imread(out)
    assert image.shape == (round(3 * ROW_IN * DPI), round(WIDTH_IN * DPI), 4)
    assert image[..., :3].std() > 0.05


@pytest.mark.parametrize(("resolution", "features"), [("lowres", 512), ("original", 286 * 173)])
def test_export_writes_the_training_matrix(store, tmp_path, resolution, features):
    out = tmp_path / "train.npz"
    assert main(["export", store, "--out", str(out), "--resolution", resolution]) == 0
    ds = open_archive(store)
    with np.load(out) as saved:
        assert saved["X"].shape == (ds.sizes["window"], features)
        images = ds["dpi" if resolution == "original" else "dpi_lowres"].values
        assert np.array_equal(saved["X"], images.reshape(len(images), -1))
        assert list(saved["obsid"]) == list(ds.obsid.values)
        assert np.array_equal(saved["window_start"], ds.window_start.values)
        assert list(saved["y"]) == list(ds.label.values) and set(saved["y"]) == {"GLITCH"}


@pytest.fixture
def services(tmp_path, monkeypatch):
    """Three observations (one not archived yet) behind the fake API, found through the env."""
    observations = fake_observations(
        datetime(2024, 3, 1), datetime(2024, 3, 5), 3, seed=2, not_archived_fraction=0.34
    )
    heasarc = tmp_path / "heasarc"
    fill_heasarc(str(heasarc), observations, rate_hz=500.0, duration=90.0, n_glitches=2)
    monkeypatch.setenv("BATGLITCH_ARCHIVE_ROOTS", str(heasarc))
    with FakeSwiftAPI(observations) as api:
        monkeypatch.setenv("SWIFT_TOO_API_URL", api.url)
        monkeypatch.setenv("BATGLITCH_QUICKLOOK_URL", api.quicklook_url)
        yield observations


def test_array_job_commands(services, tmp_path, capsys, monkeypatch):
    """plan -> process (one index per job, from AWS_BATCH_JOB_ARRAY_INDEX) -> finalize."""
    store = str(tmp_path / "a.zarr")
    assert main(["plan", "--begin", "2024-03-01", "--end", "2024-03-05", "--store", store]) == 0
    out = capsys.readouterr().out
    assert "3 obsids" in out
    run_id = out.split()[1].rstrip(":")
    manifest = next(line.split()[1] for line in out.splitlines() if line.startswith("manifest:"))
    statuses = {}
    for index in range(3):
        monkeypatch.setenv("AWS_BATCH_JOB_ARRAY_INDEX", str(index))
        argv = ["process", "--manifest", manifest, "--store", store, "--run-id", run_id]
        assert main(argv) == 0
        result = json.loads(capsys.readouterr().out)
        statuses[result["obsid"]] = result["status"]
    assert statuses == {o.obsid: "done" if o.archived else "not_archived" for o in services}
    assert main(["process", "--manifest", manifest, "--store", store, "--index", "3"]) == 2
    assert main(["finalize", "--store", store, "--run-id", run_id]) == 0
    report = capsys.readouterr().out
    assert "obsids in this run       3" in report and "not yet archived       1" in report
    assert set(open_archive(store).obsid.values) == {o.obsid for o in services if o.archived}
    assert Archive(store).completed_obsids() == {o.obsid for o in services if o.archived}


def test_run_command_plans_processes_finalizes_and_previews(services, tmp_path):
    store, png = str(tmp_path / "a.zarr"), tmp_path / "run.png"
    argv = ["run", "--begin", "2024-03-01", "--end", "2024-03-05", "--store", store,
            "--workers", "1", "--preview", str(png)]  # fmt: skip

    def last_report() -> dict:
        reports = sorted(Path(store, "runs").glob("*/report.json"))
        return json.loads(reports[-1].read_text())

    assert main(argv) == 0
    report = last_report()
    assert (report["planned"], report["done"], report["not_archived"]) == (3, 2, 1)
    assert imread(png).shape[1] == round(WIDTH_IN * DPI)
    shutil.rmtree(tmp_path / "heasarc")  # nothing left to read: only the complete are skipped
    assert main(argv) == 0
    report = last_report()
    assert (report["skipped_complete"], report["planned"], report["not_archived"]) == (2, 1, 1)


# -- the command line as a user types it: one line per mistake, documented exit statuses ------
def batglitch(*argv: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "batglitch", *argv], capture_output=True, text=True,
        timeout=300, **kwargs,
    )  # fmt: skip


RANGE = ("--begin", "2024-03-01", "--end", "2024-03-02")


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["run", "--begin", "03/01/2024", "--end", "2024-04-01"], "not an ISO date or time"),
        (["run", "--begin", "2024-04-01", "--end", "2024-03-01"], "must be before --end"),
        (["run", "--begin", "2024-03-01", "--end", "2024-03-01"], "must be before --end"),
        (["demo", "--begin", "2024-03-01T00:00:00Z", "--end", "2024-03-01"], "must be before"),
        (["run", *RANGE, "--workers", "-1"], "--workers: must be at least 1, got -1"),
        (["run", *RANGE, "--max-windows", "0"], "--max-windows: must be at least 1"),
        (["export", "{tmp}/typo.zarr", "--out", "{tmp}/x.npz"], "no archive at {tmp}/typo.zarr"),
        (["preview", "{tmp}/typo.zarr"], "no archive at {tmp}/typo.zarr"),
        (["preview", "{tmp}", "--out", "{tmp}/p.png"], "batglitch preview: error: "),  # no archive
        (["finalize", "--store", "{tmp}/typo.zarr"], "no archive at {tmp}/typo.zarr"),
        (["process", "--manifest", "{tmp}/m.json", "--store", "{tmp}"], "no manifest at"),
        (["export", "{tmp}", "--out", "{tmp}/file/x.npz"], "cannot write {tmp}/file/x.npz"),
        (["demo", *RANGE, "--store", "s3://bucket/a.zarr"], "use a local --store"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
    ],
)
def test_each_mistake_is_one_line_and_exit_status_2(tmp_path, argv, says):
    (tmp_path / "file").write_text("a file, not a folder")
    done = batglitch(*(a.format(tmp=tmp_path) for a in argv))
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.splitlines()
    assert says.format(tmp=tmp_path) in line and line.startswith("batglitch")
    assert not (tmp_path / "typo.zarr").exists()  # a typo never becomes an empty archive


def without(tmp_path: Path, *modules: str) -> dict[str, str]:
    """An environment whose Python fails to import these modules as if they were not installed:
    a stub package first on PYTHONPATH raises ModuleNotFoundError (the shared venv stays whole)."""
    shim = tmp_path / "not-installed"
    for module in modules:
        (shim / module).mkdir(parents=True)
        (shim / module / "__init__.py").write_text(
            f"raise ModuleNotFoundError({f'No module named {module!r}'!r}, name={module!r})\n"
        )
    path = os.pathsep.join(filter(None, [str(shim), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path}


@pytest.mark.parametrize(
    ("module", "argv", "says"),
    [
        ("matplotlib", ["preview", "{tmp}", "--out", "{tmp}/p.png"],
         "batglitch preview: error: needs matplotlib: pip install 'batglitch[plot]'"),
        ("sklearn", ["evaluate", "{tmp}", "--out", "{tmp}/e.png"],
         "batglitch evaluate: error: needs scikit-learn: pip install 'batglitch[ml]'"),
        ("astropy", ["demo", *RANGE, "--store", "{tmp}/a"],
         "batglitch demo: error: needs astropy: pip install 'batglitch[swift]'"),
        ("swifttools", ["plan", *RANGE, "--grbs", "--store", "{tmp}/a"],
         "batglitch plan: error: needs swifttools: pip install 'batglitch[swift]'"),
        ("s3fs", ["export", "s3://bucket/archive", "--out", "{tmp}/x.npz"],
         "batglitch export: error: argument store: needs s3fs: pip install 'batglitch[aws]'"),
    ],
)  # fmt: skip
def test_a_missing_extra_is_one_line_naming_it_and_exit_status_2(
    services, tmp_path, module, argv, says
):
    """As the README's Install section promises. The plan gets its dumps from the fake Swift API
    and then must neither retry a client that is not installed nor plan on without the bursts."""
    done = batglitch(*(a.format(tmp=tmp_path) for a in argv), env=without(tmp_path, module))
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith(says.format(tmp=tmp_path)), line
    assert not (tmp_path / "fake-heasarc").exists()  # the demo stopped before any work


def test_an_error_it_cannot_get_past_is_one_line_and_a_traceback_only_with_v(tmp_path):
    (tmp_path / "repo").mkdir()  # an archive whose repository is unreadable
    (tmp_path / "repo" / "repo").write_text("{ damaged")
    argv = ["preview", str(tmp_path), "--out", str(tmp_path / "p.png")]
    done = batglitch(*argv)
    assert done.returncode == 3
    [line] = done.stderr.splitlines()
    assert line.startswith("batglitch preview: error: ") and "-v shows the traceback" in line
    verbose = batglitch(*argv, "-v")
    assert verbose.returncode == 3 and "Traceback (most recent call last)" in verbose.stderr
    assert verbose.stderr.splitlines()[-1].startswith("batglitch preview: error: ")


@pytest.mark.parametrize("text", ["2024-03-01", "2024-03-01T00:00", "2024-02-29T23:00:00-01:00"])
def test_dates_in_iso_forms_mean_the_same_utc_moment(text):
    assert utc_time(text) == "2024-03-01"


def test_times_keep_their_utc_time_of_day():
    assert utc_time("2024-03-01T06:30:00Z") == "2024-03-01T06:30:00"
    assert utc_time("2024-03-01 08:30+02:00") == "2024-03-01T06:30:00"


def test_python_m_batglitch_and_the_public_api():
    done = batglitch("--version")
    assert done.returncode == 0 and done.stdout.strip() == batglitch_package.__version__
    assert {"open_archive", "training_set", "__version__"} <= set(batglitch_package.__all__)
    assert set(batglitch_package.__all__) <= set(dir(batglitch_package))
    assert batglitch_package.open_archive is open_archive


def test_ctrl_c_stops_the_workers_and_says_what_was_kept(tmp_path):
    """SIGINT to the whole process group, as a terminal sends it: one line, exit 130, no worker
    left behind, and the obsids it says finished are the ones the next run skips."""
    store = str(tmp_path / "a.zarr")
    argv = ["demo", "--begin", "2024-03-01", "--end", "2024-03-08", "--obsids", "16",
            "--store", store, "--workers", "2"]  # fmt: skip
    command = [sys.executable, "-m", "batglitch", *argv]
    log = tmp_path / "stderr.txt"
    with log.open("w") as err:
        running = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=err, text=True, start_new_session=True
        )
        deadline = time.monotonic() + 240
        while "obsids to process" not in log.read_text():
            assert time.monotonic() < deadline and running.poll() is None
            time.sleep(0.2)
        time.sleep(1.0)
        os.killpg(running.pid, signal.SIGINT)
        assert running.wait(timeout=60) == 130
    stderr = log.read_text()
    assert "Traceback" not in stderr
    line = stderr.splitlines()[-1]
    assert line.startswith("batglitch demo: interrupted: workers stopped; ")
    kept, other, left = map(
        int,
        re.search(
            r"(\d+) obsids finished and are kept, (\d+) failed .*, (\d+) not proc", line
        ).groups(),
    )
    planned = int(re.search(r"(\d+) obsids to process", stderr).group(1))  # not slewing-only
    assert kept + other + left == planned and "batglitch finalize --store" in line
    deadline = time.monotonic() + 20  # the pool's processes end with it
    with pytest.raises(ProcessLookupError):
        while time.monotonic() < deadline:
            os.killpg(running.pid, 0)
            time.sleep(0.2)
    again = batglitch(*argv, "--no-progress", "-q")
    assert again.returncode == 0, again.stderr
    assert re.search(rf"obsids already complete\s+{kept} \(skipped\)", again.stdout)
    assert re.search(rf"obsids in this run\s+{planned - kept}\n", again.stdout)


def test_piped_make_run_is_short_and_free_of_cursor_control(tmp_path):
    """What CI, a log file or CloudWatch gets: plain lines, no bar redraws."""
    if shutil.which("make") is None:
        pytest.skip("no make on this machine")
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        ["make", "-s", "run", f"STORE={tmp_path}/archive"], cwd=root,
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    output = done.stdout + done.stderr
    assert "\r" not in output and "\x1b" not in output
    assert len(output.splitlines()) < 40
    assert "demo: failed" in output and "on purpose" in output  # the planted failure says so
    assert (tmp_path / "preview.png").exists()
    # the summary counts each label's obsids and windows as the archive holds them
    ds = open_archive(f"{tmp_path}/archive")
    for label, name in (("GLITCH", "with glitch windows"), ("GRB", "with a GRB window")):
        rows = ds.label.values == label
        obsids = len(set(ds.obsid.values[rows]))
        assert re.search(rf"^  {name} +{obsids} \({rows.sum()} windows\)$", output, re.M), label
    # it ends with the baseline on the archive of both classes
    assert re.search(
        r"lowres +accuracy [01]\.\d+  ROC AUC [01]\.\d+  \(\d+ GLITCH, \d+ GRB", output
    )
    assert (tmp_path / "evaluation.png").exists()

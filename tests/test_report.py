"""Run summaries: counts by status, throughput and the failures a person must see."""

from __future__ import annotations

import re

from batglitch.errors import Interrupted
from batglitch.pipeline.plan import ObsEntry
from batglitch.pipeline.report import interrupted, stored_obsids, summarize
from batglitch.pipeline.worker import DEFERRED, DONE, FAILED, NO_GLITCHES, NOT_ARCHIVED, ObsResult
from batglitch.science.grb import GLITCH, GRB
from batglitch.standins.rows import fragment
from batglitch.store.archive import Archive
from batglitch.store.keys import new_attempt_id


def results() -> list[ObsResult]:
    return [
        ObsResult("00000000001", DONE, n_windows=4, bytes_read=2_000_000),
        ObsResult("00000000002", DONE, n_windows=1, bytes_read=1_000_000),
        ObsResult("00000000003", NO_GLITCHES, bytes_read=500_000),
        ObsResult("00000000004", NOT_ARCHIVED),
        ObsResult("00000000005", FAILED, error="obsid 00000000005, f.evt.gz: truncated gzip"),
    ]


def report_of(obs_results: list[ObsResult], *, skipped: int = 0, seconds: float = 1.0, labels=None):
    return summarize(
        obs_results, run_id="r", store="s", begin="b", end="e",
        skipped_complete=skipped, seconds=seconds, workers=2, labels=labels,
    )  # fmt: skip


def test_counts_by_status_and_totals():
    report = report_of(results(), skipped=7, seconds=2.0)
    assert (report.planned, report.done, report.no_glitches) == (5, 2, 1)
    assert (report.not_archived, report.failed, report.skipped_complete) == (1, 1, 7)
    assert (report.windows, report.bytes_read) == (5, 3_500_000)
    assert report.obsids_per_s == 2.5
    assert [f["obsid"] for f in report.failures] == ["00000000005"]
    assert len(report.to_dict()["results"]) == 5 and report.to_dict()["obsids_per_s"] == 2.5


def test_table_names_every_failure_and_the_throughput():
    table = report_of(results(), seconds=0.5).table()
    assert "FAILED 00000000005: obsid 00000000005, f.evt.gz: truncated gzip" in table
    assert "10.00 obsids/s, 7.0 MB/s" in table
    assert "windows written by it    5" in table


def test_an_empty_run_has_no_rate():
    report = report_of([], skipped=3, seconds=0.0)
    assert report.planned == 0 and report.obsids_per_s == 0.0


def parts_of_this_run(table: str) -> dict[str, str]:
    """The indented lines under "obsids in this run" (what became of its obsids), by name."""
    lines = table.splitlines()
    this_run = next(i for i, line in enumerate(lines) if line.startswith("obsids in this run"))
    parts = {}
    for line in lines[this_run + 1 :]:
        if not line.startswith("  "):
            break
        name, value = re.split(r"\s{2,}", line.strip(), maxsplit=1)
        parts[name] = value
    return parts


def test_a_rerun_summary_keeps_skipped_beside_this_runs_obsids():
    """A re-run skips most obsids: that count must not read as a part of the few processed."""
    table = report_of(results()[3:], skipped=33).table()
    assert re.search(r"^obsids already complete +33 \(skipped\)$", table, re.MULTILINE)
    assert re.search(r"^obsids in this run +2$", table, re.MULTILINE)
    parts = parts_of_this_run(table)  # the statuses of this run's 2 obsids
    assert sum(int(value.split()[0]) for value in parts.values()) == 2
    assert parts["with glitch windows"] == parts["with a GRB window"] == "0 (0 windows)"


def test_obsids_with_windows_are_counted_under_their_label():
    """A GRB obsid's window is a GRB window, not a glitch window; on a first run and a re-run
    the parts add up to the obsids of the run."""
    labels = {"00000000002": GRB, "00000000006": GRB}
    grb = ObsResult("00000000006", DONE, n_windows=1)
    report = report_of([*results(), grb], skipped=0, labels=labels)
    assert report.by_label == {
        GLITCH: {"obsids": 1, "windows": 4},
        GRB: {"obsids": 2, "windows": 2},
    }
    assert report.done == 3 and report.windows == 6
    parts = parts_of_this_run(report.table())
    assert parts["with glitch windows"] == "1 (4 windows)"
    assert parts["with a GRB window"] == "2 (2 windows)"
    assert parts["searched, no windows"] == "1"
    assert sum(int(value.split()[0]) for value in parts.values()) == report.planned == 6
    rerun = report_of([results()[4]], skipped=5, labels=labels)
    assert parts_of_this_run(rerun.table())["with a GRB window"] == "0 (0 windows)"
    assert report_of(results()[1:2]).by_label[GLITCH]["windows"] == 1  # unlabelled: GLITCH
    assert parts_of_this_run(report_of(results()[1:2]).table())["with glitch windows"] == (
        "1 (1 window)"
    )


def test_deferred_obsids_are_counted_and_shown_only_when_there_are_some():
    assert "deferred" not in report_of(results()).table()
    report = report_of([*results(), ObsResult("00000000006", DEFERRED, error="budget")])
    assert (report.planned, report.deferred, report.failed) == (6, 1, 1)
    assert "  deferred" in report.table()


def test_interrupted_keeps_only_obsids_whose_rows_were_stored():
    """Done and glitch-free obsids have rows (or a marker) stored; failed and not-yet-archived
    ones do not and are planned again, so they must not be called kept. An obsid stored as Ctrl-C
    arrived (its result lost) is kept and no longer counted as not processed."""
    message = interrupted(Interrupted(results(), 3, run_id="r1", store="s3://b/a"))
    assert "3 obsids finished and are kept, 2 failed or not archived yet, 3 not proc" in message
    assert "`batglitch finalize --store s3://b/a --run-id r1`" in message
    late = interrupted(Interrupted(results(), 3, stored=frozenset({"00000000001", "00000000006"})))
    assert "4 obsids finished and are kept, 2 failed or not archived yet, 2 not proc" in late
    assert "finalize" not in late  # no run to publish


def test_stored_obsids_are_this_runs_markers_of_planned_obsids(tmp_path):
    archive = Archive(str(tmp_path / "a"))
    before = new_attempt_id()
    archive.write_fragment(fragment("00000000003", 0))  # an earlier run's, still unpublished
    run_id = new_attempt_id()
    for obsid in ("00000000001", "00000000002", "00000000009"):  # 9: stored, but not planned
        archive.write_fragment(fragment(obsid, 1))
    planned = [ObsEntry(o, (), ()) for o in ("00000000001", "00000000002", "00000000003")]
    assert stored_obsids(archive, planned, since=run_id) == {"00000000001", "00000000002"}
    assert stored_obsids(archive, planned, since=before) == {
        "00000000001",
        "00000000002",
        "00000000003",
    }

"""Run summaries: counts by status, throughput and the failures a person must see."""

from __future__ import annotations

from batglitch.pipeline.report import summarize
from batglitch.pipeline.worker import DONE, FAILED, NO_GLITCHES, NOT_ARCHIVED, ObsResult


def results() -> list[ObsResult]:
    return [
        ObsResult("00000000001", DONE, n_windows=4, bytes_read=2_000_000),
        ObsResult("00000000002", DONE, n_windows=1, bytes_read=1_000_000),
        ObsResult("00000000003", NO_GLITCHES, bytes_read=500_000),
        ObsResult("00000000004", NOT_ARCHIVED),
        ObsResult("00000000005", FAILED, error="obsid 00000000005, f.evt.gz: truncated gzip"),
    ]


def report_of(obs_results: list[ObsResult], *, skipped: int = 0, seconds: float = 1.0):
    return summarize(
        obs_results, run_id="r", store="s", begin="b", end="e",
        skipped_complete=skipped, seconds=seconds, workers=2,
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
    assert "windows written               5" in table


def test_an_empty_run_has_no_rate():
    report = report_of([], skipped=3, seconds=0.0)
    assert report.planned == 0 and report.obsids_per_s == 0.0

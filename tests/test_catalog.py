"""The planner against the local fake Swift API, through the real swifttools client."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from batglitch.errors import TransientError
from batglitch.sources.catalog import (
    HEASARC_HTTPS,
    ObsEntry,
    plan,
    read_manifest,
    write_manifest,
)
from batglitch.standins import FakeDump, FakeObservation, FakeSwiftAPI, Fault, fake_observations
from batglitch.standins.swift_api import swift_time

BEGIN, END = datetime(2024, 3, 1), datetime(2024, 3, 21)
ROOTS = ("s3://nasa-heasarc", "/data/heasarc")
FAST = {"retries": 2, "backoff_s": 0.01, "timeout_s": 2.0, "roots": ROOTS}


def run_plan(api: FakeSwiftAPI, begin=BEGIN, end=END, **kwargs) -> list[ObsEntry]:
    return plan(begin, end, api_url=api.url, quicklook=[api.quicklook_url], **{**FAST, **kwargs})


def expected_triggers(obs: FakeObservation) -> list[dict]:
    return [
        {
            "triggertype": d.triggertype,
            "triggertime": d.trigger_utc.isoformat(timespec="microseconds"),
            "trigger_met": d.trigger_met,
            "offset": d.offset,
            "duration": d.duration,
            "utcf": d.utcf,
            "quadsaway": d.quadsaway,
        }
        for d in obs.dumps
    ]


def assert_matches(entries: list[ObsEntry], observations: list[FakeObservation]) -> None:
    """Every observation once, with all its dumps and the right event-file locations."""
    by_obsid = {o.obsid: o for o in observations}
    assert sorted(e.obsid for e in entries) == sorted(by_obsid)
    for e in entries:
        obs = by_obsid[e.obsid]
        assert list(e.triggers) == expected_triggers(obs)
        assert e.archived is obs.archived
        if obs.archived:
            assert e.month == obs.month
            assert e.event_urls == tuple(f"{root}/{obs.key('po')}" for root in ROOTS)
        else:
            assert e.month is None
            assert len(e.event_urls) == 1
            assert e.event_urls[0].endswith(f"/{obs.obsid}/bat/event/{obs.filename('po')}")
            assert not e.event_urls[0].startswith(HEASARC_HTTPS)


@pytest.fixture(scope="module")
def observations() -> list[FakeObservation]:
    # Small: swifttools builds a new HTTP client (and TLS context) for every request, ~30 ms.
    return fake_observations(BEGIN, END, 12, seed=3, multi_dump_fraction=0.34)


def test_plan_pages_every_window_and_resolves_locations(observations):
    with FakeSwiftAPI(observations) as api:
        entries = run_plan(api, window_days=5, page_size=2)
        guano = [q for p, q in api.requests if p == "/swift/guano"]
    assert_matches(entries, observations)
    windows = {q["begin"][0] for q in guano}
    assert len(windows) == 4
    # Within a window, pages follow each other at page_size steps until a short page.
    for begin in windows:
        offsets = [int(q["offset"][0]) for q in guano if q["begin"][0] == begin]
        assert offsets == list(range(0, 2 * len(offsets), 2))
        assert all(q["limit"] == ["2"] for q in guano)
    assert len(guano) > 2 * len(windows)
    # Entries come in order of their first trigger.
    firsts = [e.triggers[0]["trigger_met"] for e in entries]
    assert firsts == sorted(firsts)


def test_a_window_with_more_dumps_than_the_clock_trap_still_gets_utc_right():
    # One window, 160 dumps: swifttools drops its clock correction above ~145 entries per answer.
    # Few obsids with many dumps each keep the Data requests (and the test) short.
    start = (BEGIN - datetime(2001, 1, 1)).total_seconds()
    observations = [
        FakeObservation(
            f"0001000{i:01d}001",
            tuple(FakeDump(start + 500.0 * (20 * i + j) + 100.25) for j in range(20)),
        )
        for i in range(8)
    ]
    with FakeSwiftAPI(observations) as api:
        entries = run_plan(api, end=BEGIN + timedelta(days=1), window_days=1)
        assert api.count("/swift/guano") == 2
        assert api.count("/swift/clock") == 2  # one correction per page, none refused
    assert_matches(entries, observations)


def test_utc_stays_right_when_the_client_loses_its_clock_correction(observations):
    # Every clock request is refused: swifttools keeps Swift times, the planner must correct.
    with FakeSwiftAPI(observations, max_url_length=600) as api:
        entries = run_plan(api, window_days=30, page_size=20)
        clock = [q for p, q in api.requests if p == "/swift/clock"]
    # Only an empty last page (its own begin and end) could still be corrected.
    assert all(len(q["swifttime"]) <= 2 for q in clock)
    assert_matches(entries, observations)
    dump = observations[0].dumps[0]
    assert dump.utcf != 0
    assert entries[0].triggers[0]["triggertime"] != swift_time(dump.trigger_met).isoformat()


@pytest.mark.parametrize(
    "fault",
    [
        Fault(path="/swift/guano", count=2, status=503),
        Fault(path="/swift/guano", count=2, malformed=True),
        Fault(path="/swift/guano", count=1, delay_s=1.5),
        Fault(path="/swift/data", count=2, status=502),
        Fault(path="/swift/data", count=1, malformed=True),
    ],
    ids=["guano-5xx", "guano-json", "guano-timeout", "data-5xx", "data-json"],
)
def test_transient_failures_are_retried(observations, fault):
    with FakeSwiftAPI(observations, [fault]) as api:
        entries = run_plan(api, window_days=30, timeout_s=0.5)
        minimal = {"/swift/guano": 1, "/swift/data": len(observations)}
        assert api.count(fault.path) == minimal[fault.path] + fault.count
    assert_matches(entries, observations)


def test_a_failed_clock_request_needs_no_retry(observations):
    # swifttools hides it (the GUANO answer stays Accepted); the dumps' own UTCF is used.
    with FakeSwiftAPI(observations, [Fault(path="/swift/clock", count=1, status=500)]) as api:
        entries = run_plan(api, window_days=30)
        assert (api.count("/swift/guano"), api.count("/swift/clock")) == (1, 1)
    assert_matches(entries, observations)


def test_persistent_guano_failure_names_the_window(observations):
    with FakeSwiftAPI(observations, [Fault(path="/swift/guano", count=99, status=500)]) as api:
        with pytest.raises(
            TransientError, match=r"GUANO window 2024-03-01T00:00:00.*Server error 500"
        ):
            run_plan(api, window_days=30)
        assert api.count("/swift/guano") == 1 + FAST["retries"]


def test_persistent_timeouts_name_the_window(observations):
    slow = Fault(path="/swift/guano", count=99, delay_s=1.0)
    with (
        FakeSwiftAPI(observations, [slow]) as api,
        pytest.raises(TransientError, match=r"GUANO window .*after 2 attempts"),
    ):
        run_plan(api, window_days=30, timeout_s=0.2, retries=1)


def test_persistent_data_failure_costs_only_that_obsid(caplog):
    """Its listing keeps failing: planned without a location (retried by the next run), logged
    with its obsid, and the other obsids are planned as usual."""
    obs = fake_observations(BEGIN, END, 3, seed=1, not_archived_fraction=0.0)
    bad = Fault(path="/swift/data", count=3, malformed=True)  # = every attempt of the first
    with FakeSwiftAPI(obs, [bad]) as api:
        entries = run_plan(api, workers=1)
    [lost] = [e for e in entries if not e.event_urls]
    assert (
        not lost.archived and lost.obsid in caplog.text and "no event-file location" in caplog.text
    )
    assert sorted(e.obsid for e in entries) == sorted(o.obsid for o in obs)
    assert all(e.archived and e.event_urls for e in entries if e is not lost)


def test_dumps_of_one_obsid_across_windows_and_overlaps_are_kept_once_each():
    start = (BEGIN - datetime(2001, 1, 1)).total_seconds()
    day = 86400.0
    dumps = tuple(
        FakeDump(trigger_met=start + t, triggertype=k)
        for t, k in [
            (0.3 * day, "GBM"),
            (1.0 * day - 5, "LVK"),
            (1.0 * day + 40, "FRB"),
            (2.5 * day, "EP"),
        ]
    )
    obs = [FakeObservation("00098765001", dumps), FakeObservation("00012345002", dumps[1:2])]
    # overlap_s: the service also answers with dumps just outside each window.
    with FakeSwiftAPI(obs, overlap_s=3600) as api:
        entries = run_plan(api, end=BEGIN + timedelta(days=3), window_days=1)
    assert len(entries) == 2
    assert_matches(entries, obs)


def test_skip_leaves_obsids_out_without_resolving_them(observations):
    skip = frozenset(o.obsid for o in observations[::3])
    with FakeSwiftAPI(observations) as api:
        entries = run_plan(api, window_days=30, skip=skip)
        resolved = [q["obs_id"][0] for p, q in api.requests if p == "/swift/data"]
    assert_matches(entries, [o for o in observations if o.obsid not in skip])
    assert not skip & set(resolved)


def test_slewing_adds_the_slew_file_where_there_is_one():
    obs = fake_observations(BEGIN, END, 10, seed=9, slewing_fraction=0.5, not_archived_fraction=0)
    with FakeSwiftAPI(obs) as api:
        plain = run_plan(api)
        slewing = run_plan(api, slewing=True)
    assert all(e.slew_urls == () for e in plain)
    by_obsid = {o.obsid: o for o in obs}
    for e in slewing:
        o = by_obsid[e.obsid]
        want = tuple(f"{r}/{o.key('sl')}" for r in ROOTS) if o.slewing else ()
        assert e.slew_urls == want
    assert sum(bool(e.slew_urls) for e in slewing) == 5


def test_api_url_from_env_and_client_state_restored(observations, monkeypatch):
    from swifttools.swift_too.base.common import TOOAPIBaseclass

    before = TOOAPIBaseclass._api_base, TOOAPIBaseclass._timeout
    with FakeSwiftAPI(observations) as api:
        monkeypatch.setenv("SWIFT_TOO_API_URL", api.url)
        monkeypatch.setenv("BATGLITCH_QUICKLOOK_URL", api.quicklook_url)
        entries = plan(BEGIN, END, **FAST)
        assert api.count("/swift/guano") == 3
    assert_matches(entries, observations)
    assert (TOOAPIBaseclass._api_base, TOOAPIBaseclass._timeout) == before


def test_progress_reports_each_window_and_obsid(observations):
    calls = []
    with FakeSwiftAPI(observations) as api:
        entries = run_plan(api, window_days=10, progress=lambda *a: calls.append(a))
    assert [c for c in calls if c[0] == "guano"] == [("guano", 1, 2), ("guano", 2, 2)]
    n = len(entries)
    assert [c for c in calls if c[0] == "data"] == [("data", i, n) for i in range(1, n + 1)]


@pytest.mark.parametrize(
    "kwargs",
    [{"page_size": 101}, {"page_size": 0}, {"window_days": 0}, {"begin": END, "end": BEGIN}],
)
def test_bad_arguments_are_refused_before_any_request(kwargs):
    with FakeSwiftAPI([]) as api, pytest.raises(ValueError):
        run_plan(api, **kwargs)
    assert api.requests == []


def test_timezone_aware_and_string_ranges_mean_utc():
    obs = fake_observations(BEGIN, END, 5, seed=2)
    with FakeSwiftAPI(obs) as api:
        as_text = run_plan(api, begin="2024-03-01T00:00:00", end="2024-03-21")
        aware = run_plan(api, begin="2024-03-01T01:00:00+01:00", end="2024-03-21T00:00:00+00:00")
    assert as_text == aware
    assert_matches(aware, obs)


@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
@pytest.mark.parametrize("where", ["local", "memory"])
def test_manifest_round_trip(observations, tmp_path, where, suffix):
    with FakeSwiftAPI(observations) as api:
        entries = run_plan(api, slewing=True)
    url = str(tmp_path / "runs" / "manifest") if where == "local" else "memory://m/x"
    write_manifest(entries, url + suffix)
    text = Path(url + suffix).read_text() if where == "local" else None
    if text is not None:  # JSON lines for people and tools, one JSON array for Step Functions
        assert (
            len(json.loads(text)) == len(entries)
            if suffix == ".json"
            else text.count("\n") == len(entries)
        )
    back = read_manifest(url + suffix)
    assert back == entries
    assert all(isinstance(e.event_urls, tuple) and isinstance(e.triggers, tuple) for e in back)
    assert ObsEntry.from_json(entries[0].to_json()) == entries[0]

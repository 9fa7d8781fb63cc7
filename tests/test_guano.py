"""The GUANO client against the fake Swift API, under every knob of what the real one may do."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta

import pytest

from batglitch.errors import TransientError
from batglitch.sources.guano import (
    Dump,
    SwiftAPI,
    duration_s,
    fetch_dumps,
    parse_entry,
    time_windows,
)
from batglitch.sources.retry import PermanentError, RetryPolicy
from batglitch.sources.timebase import SWIFT, UTC
from batglitch.standins import FakeObservation, FakeSwiftAPI, Fault, Knobs, fake_observations

BEGIN, END = datetime(2024, 3, 1), datetime(2024, 3, 15)
FAST = RetryPolicy(attempts=3, backoff_s=0.01, timeout_s=2.0)
KNOBS = {
    "newest-first": Knobs(order="newest"),
    "oldest-first": Knobs(order="oldest"),
    "cap-7": Knobs(max_limit=7),
    "cap-2": Knobs(max_limit=2),
    "offset-ignored": Knobs(honour_offset=False),
    "swift-time": Knobs(time_base=SWIFT),
}


@pytest.fixture(scope="module")
def observations() -> list[FakeObservation]:
    return fake_observations(
        BEGIN, END, 40, seed=5, multi_dump_fraction=0.3, slewing_fraction=0.2, sp_fraction=0.1
    )


def dumps_of(api: FakeSwiftAPI, days: float = 7.0, page_size: int = 20, **kwargs) -> list[Dump]:
    with SwiftAPI(api.url, FAST) as client:
        windows = time_windows(BEGIN, END, timedelta(days=days))
        return fetch_dumps(client, windows, page_size=page_size, **kwargs)


def expected_keys(observations: list[FakeObservation]) -> set[tuple[str, float]]:
    return {(o.obsid, d.trigger_met) for o in observations for d in o.dumps}


def keys(dumps: list[Dump], base: str) -> set[tuple[str, float]]:
    """(obsid, trigger MET), reading the answers in the base the fake spoke."""
    from batglitch.sources.timebase import met_of

    return {(d.obsid, round(met_of(d.triggertime, base, d.utcf or 0.0), 3)) for d in dumps}


@pytest.mark.parametrize("knobs", KNOBS.values(), ids=KNOBS.keys())
def test_every_dump_once_whatever_the_service_does(observations, knobs):
    with FakeSwiftAPI(observations, knobs=knobs) as api:
        dumps = dumps_of(api)
        assert api.count("/swift/guano") >= 2
        assert all("offset" not in q for _, q in api.requests)  # never pages by offset
    assert keys(dumps, knobs.time_base) == expected_keys(observations)
    assert len(dumps) == len(expected_keys(observations))


def test_a_cap_below_the_page_size_is_found_and_windows_split(observations):
    with FakeSwiftAPI(observations, knobs=Knobs(max_limit=3)) as api:
        dumps = dumps_of(api, days=14, page_size=50)
        spans = {(q["begin"][0], q["end"][0]) for p, q in api.requests}
    assert keys(dumps, UTC) == expected_keys(observations)
    assert len(spans) > 10  # halved again and again until every answer is below the cap


def test_full_answers_split_and_small_ones_cost_one_request_each(observations):
    with FakeSwiftAPI(observations) as api:
        dumps_of(api, days=1, page_size=100)  # ~3 dumps a day: no window is ever full
        once = api.count("/swift/guano")
    # 14 windows, plus two halves for each answer that set a new record (proving it complete)
    assert 14 <= once < 14 + 2 * 8


def test_dumps_across_windows_and_overlaps_are_kept_once(observations):
    with FakeSwiftAPI(observations, overlap_s=6 * 3600) as api:
        dumps = dumps_of(api, days=1)
    assert keys(dumps, UTC) == expected_keys(observations)


def test_recorded_shapes_parse_into_typed_dumps(observations):
    with FakeSwiftAPI(observations) as api, SwiftAPI(api.url, FAST) as client:
        entries = client.guano(BEGIN, END, 1000)
    by_obsid = {o.obsid: o for o in observations}
    assert any(e["data"]["gti"] is None for e in entries)
    assert any(isinstance(e["data"]["gti"] and e["data"]["gti"]["filename"], list) for e in entries)
    for entry in entries:
        dump = parse_entry(entry)
        obs = by_obsid[dump.obsid]
        fake = next(d for d in obs.dumps if d.trigger_utc == dump.triggertime)
        assert dump.kinds == tuple(k for k in ("po", "sp", "sl") if k in obs.kinds)
        assert dump.utcf == fake.utcf
        assert dump.exposure_s == pytest.approx(fake.duration, abs=1e-5)
        centre = fake.trigger_utc + timedelta(seconds=fake.offset)
        half = timedelta(seconds=fake.duration / 2)
        ms = timedelta(milliseconds=1)  # UTCF drifts by microseconds over a dump
        assert abs(dump.begin - (centre - half)) < ms and abs(dump.end - (centre + half)) < ms
        assert Dump.from_dict(dump.to_dict()) == dump


def test_pending_dumps_are_left_out():
    assert parse_entry({"obs_id": None, "triggertime": "2024-03-01T00:00:00"}) is None
    assert parse_entry({"obs_id": "00012345001", "triggertime": None}) is None


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("PT3M20.130886S", 200.130886), ("PT47S", 47.0), ("P1DT1H", 90000.0), (12.5, 12.5)],
)
def test_iso_8601_exposures(text, seconds):
    assert duration_s(text) == pytest.approx(seconds)


def test_bad_durations_are_refused():
    with pytest.raises(ValueError):
        duration_s("3 minutes")


@pytest.mark.parametrize(
    "fault",
    [
        Fault(path="/swift/guano", count=2, status=503),
        Fault(path="/swift/guano", count=2, status=429, retry_after="0"),
        Fault(path="/swift/guano", count=2, malformed=True),
        Fault(path="/swift/guano", count=1, delay_s=2.5),
    ],
    ids=["5xx", "429-retry-after", "bad-json", "timeout"],
)
def test_transient_failures_are_retried(observations, fault):
    with FakeSwiftAPI(observations, [fault]) as api:
        dumps = dumps_of(api, days=14, page_size=1000)
        assert api.count("/swift/guano") == 1 + fault.count + 2  # + the two proving halves
    assert keys(dumps, UTC) == expected_keys(observations)


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        (Fault(path="/swift/guano", count=9, status=400), "HTTP 400"),
        (Fault(path="/swift/guano", count=9, refused=True), "injected refusal"),
    ],
    ids=["4xx", "refused"],
)
def test_permanent_answers_are_not_retried(observations, fault, error):
    with FakeSwiftAPI(observations, [fault]) as api:
        with pytest.raises(Exception, match=error) as caught:
            dumps_of(api, days=14)
        assert api.count("/swift/guano") == 1
    assert not isinstance(caught.value, TransientError)
    assert fault.refused is isinstance(caught.value, PermanentError)


def test_persistent_failure_names_the_window(observations):
    with FakeSwiftAPI(observations, [Fault(path="/swift/guano", count=99, status=500)]) as api:
        with pytest.raises(TransientError, match=r"GUANO window 2024-03-01T00:00:00.*after 3"):
            dumps_of(api, days=14)
        assert api.count("/swift/guano") == FAST.attempts


def test_api_url_from_env(observations, monkeypatch):
    with FakeSwiftAPI(observations[:3]) as api:
        monkeypatch.setenv("SWIFT_TOO_API_URL", api.url)
        with SwiftAPI(policy=FAST) as client:
            assert client.url == api.url
            assert len(client.guano(BEGIN, END, 100)) == sum(len(o.dumps) for o in observations[:3])


def test_windows_tile_the_range():
    spans = list(time_windows(BEGIN, END, timedelta(days=4)))
    assert spans[0][0] == BEGIN and spans[-1][1] == END and len(spans) == 4
    assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))

"""The BAT GRB catalogue through the real swifttools client, against the local fake of its API."""

from __future__ import annotations

from datetime import datetime
from http import HTTPStatus

import pytest

from batglitch.errors import TransientError
from batglitch.sources.grbs import Burst, list_bursts, trigger_obsid
from batglitch.sources.retry import RetryPolicy
from batglitch.standins.grb_catalog import FakeGRBCatalog, fake_bursts

MARCH = (datetime(2024, 3, 1), datetime(2024, 4, 1))
QUICK = RetryPolicy(attempts=3, backoff_s=0.01, timeout_s=10.0)


@pytest.fixture(scope="module")
def bursts():
    return fake_bursts(datetime(2024, 2, 20), datetime(2024, 4, 10), 30, seed=3)


def in_march(bursts) -> list[int]:
    return [b.trigger_id for b in bursts if MARCH[0] <= b.trigger_utc < MARCH[1]]


def test_lists_the_range_with_names_ids_and_times(bursts):
    with FakeGRBCatalog(bursts) as api:
        found = list_bursts(*MARCH, api_url=api.url, policy=QUICK)
    assert [b.trigger_id for b in found] == in_march(bursts) and 5 < len(found) < 30
    fake = {b.trigger_id: b for b in bursts}
    for burst in found:
        assert burst.name == fake[burst.trigger_id].name and burst.name.startswith("GRB ")
        assert burst.trigger_met == fake[burst.trigger_id].trigger_met
        assert burst.obsid == f"{burst.trigger_id:08d}000" and len(burst.obsid) == 11
    # one page with rows, then an empty one: the end is what the server says, not a guess
    assert [r["APIFunc"] for r in api.requests] == ["getMetadata", "queryDB", "queryDB"]


@pytest.mark.parametrize("max_rows", [1000, 4])
def test_pages_when_the_server_caps_its_answers(bursts, max_rows):
    with FakeGRBCatalog(bursts, max_rows=max_rows) as api:
        found = list_bursts(*MARCH, api_url=api.url, policy=QUICK)
    assert [b.trigger_id for b in found] == in_march(bursts)
    queries = [r for r in api.requests if r["APIFunc"] == "queryDB"]
    assert len(queries) == -(-len(found) // max_rows) + 1


@pytest.mark.parametrize("status", [HTTPStatus.INTERNAL_SERVER_ERROR, HTTPStatus.OK])
def test_refused_answers_are_retried_then_reported(bursts, status):
    with FakeGRBCatalog(bursts, fail_first=2, fail_status=status) as api:
        assert [b.trigger_id for b in list_bursts(*MARCH, api_url=api.url, policy=QUICK)] == (
            in_march(bursts)
        )
    failing = FakeGRBCatalog(bursts, fail_first=10, fail_status=status)
    with failing as api, pytest.raises(TransientError, match="BAT GRB catalogue"):
        list_bursts(*MARCH, api_url=api.url, policy=QUICK)


def test_a_silent_server_times_out(bursts):
    with FakeGRBCatalog(bursts, delay_s=2.0) as api, pytest.raises(TransientError):
        list_bursts(*MARCH, api_url=api.url, policy=RetryPolicy(attempts=1, timeout_s=0.3))


def test_trigger_obsid_and_suspect_span():
    assert trigger_obsid(1226543) == "01226543000"
    with pytest.raises(ValueError):
        trigger_obsid(10**8)
    burst = Burst("GRB 240301A", 1226543, 7.3e8, "2024-03-01 00:00:00", t90=20.0)
    assert burst.span == (7.3e8 - 10.0, 7.3e8 + 30.0)
    assert Burst("GRB 240301B", 1, 7.3e8, "", t90=None).span[1] == 7.3e8 + 110.0

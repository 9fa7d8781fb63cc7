"""The fakes behave like the real services where the planner and workers depend on it."""

from __future__ import annotations

import gzip
import io
import time
import zlib
from collections import Counter
from datetime import datetime, timedelta

import fsspec
import httpx
import numpy as np
import pytest
from astropy.io import fits

from batglitch.science.detmask import parse_enable_maps
from batglitch.sources.heasarc import ENABLE_MAP, HEASARC_HTTPS
from batglitch.sources.timebase import MET_EPOCH
from batglitch.standins import (
    FakeDump,
    FakeObservation,
    FakeSwiftAPI,
    Fault,
    Knobs,
    fake_observations,
    fill_heasarc,
    utcf_at,
)
from batglitch.standins.swift_api import swift_time

BEGIN, END = datetime(2024, 5, 1), datetime(2024, 5, 11)
# Short, sparse event files with one glitch: enough to prove layout and content, quick to make.
SMALL = {"rate_hz": 300.0, "duration": 8.0, "n_gti": 1, "n_glitches": 1}


@pytest.fixture(scope="module")
def swift():
    """The real client classes, imported once the fixture runs (the import writes ~/.cache)."""
    from swifttools.swift_too import GUANO, Data

    return GUANO, Data


def one_day_of_dumps(n: int) -> list[FakeObservation]:
    start = (BEGIN - MET_EPOCH).total_seconds() + 100.0
    dumps = tuple(FakeDump(start + 300.0 * i + 0.125) for i in range(n))
    return [FakeObservation("00055555001", dumps)]


def test_fake_observations_are_reproducible_and_have_exact_flag_counts():
    flags = {
        "multi_dump_fraction": 0.2,
        "not_archived_fraction": 0.1,
        "corrupt_fraction": 0.06,
        "slewing_fraction": 0.04,
        "sp_fraction": 0.1,
        "slewing_only_fraction": 0.06,
        "early_start_fraction": 0.2,
    }
    obs = fake_observations(BEGIN, END, 50, seed=7, **flags)
    assert obs == fake_observations(BEGIN, END, 50, seed=7, **flags)
    assert obs != fake_observations(BEGIN, END, 50, seed=8)
    assert len({o.obsid for o in obs}) == 50
    assert all(len(o.obsid) == 11 and o.obsid.isdigit() for o in obs)
    assert sum(len(o.dumps) > 1 for o in obs) == 10
    assert sum(not o.archived for o in obs) == 5
    assert sum(o.corrupt for o in obs) == 3
    kinds = Counter(o.kinds for o in obs)
    assert (kinds[("po", "sl")], kinds[("sp",)], kinds[("sl",)]) == (2, 5, 3)
    # began in the month before their first trigger: archived under that month
    early = [o for o in obs if o.lead_s]
    assert len(early) == 10
    assert all(o.month < o.dumps[0].trigger_utc.strftime("%Y_%m") for o in early)
    trigger_utcs = [d.trigger_utc for o in obs for d in o.dumps]
    assert all(BEGIN <= t < END for t in trigger_utcs)
    firsts = [o.dumps[0].trigger_met for o in obs]
    assert firsts == sorted(firsts)


def test_dump_times_follow_met_plus_utcf():
    d = FakeDump(trigger_met=700_000_000.5)
    assert d.utcf == utcf_at(700_000_000.5)
    assert -37 < d.utcf < -28  # the 2022-2025 range
    assert d.trigger_utc == datetime(2001, 1, 1) + timedelta(seconds=700_000_000.5 + d.utcf)
    obs = FakeObservation("00012345001", (d,))
    assert obs.month == d.trigger_utc.strftime("%Y_%m")
    assert (
        obs.key()
        == f"swift/data/obs/{obs.month}/00012345001/bat/event/sw00012345001bevshpo_uf.evt.gz"
    )
    assert (
        obs.key(ENABLE_MAP)
        == f"swift/data/obs/{obs.month}/00012345001/bat/hk/sw00012345001bdecb.hk.gz"
    )


def test_recorded_shapes_parse_with_the_real_client(swift):
    """swifttools 4.0.5 parses the fake's answers as it parses the recorded ones."""
    guano, data = swift
    obs = fake_observations(BEGIN, END, 8, seed=1, multi_dump_fraction=0.5, slewing_fraction=0.5)
    with FakeSwiftAPI(obs) as api:
        from swifttools.swift_too.base.common import TOOAPIBaseclass as Base

        saved, Base._api_base = Base._api_base, api.url
        try:
            answer = guano(begin=BEGIN, end=END, limit=100)
            files = data(obs_id=obs[0].obsid, bat=True, auxil=False, fetch=False)
        finally:
            Base._api_base = saved
    assert answer.status.status == "Accepted" and answer.status.jobnumber
    assert len(answer.entries) == sum(len(o.dumps) for o in obs)
    mixed = [e for e in answer.entries if e.data.acs == "mixed"]
    assert mixed and all(len(e.data.all_gtis) == 2 for e in mixed)
    assert all(e.ra == -1.0 and e.dec == -1.0 for e in answer.entries)
    exposures = [g.exposure for e in answer.entries for g in e.data.all_gtis]
    assert all(isinstance(x, timedelta) and x.total_seconds() > 0 for x in exposures)
    assert {f.filename for f in files.entries} == {obs[0].filename(k) for k in obs[0].bat_kinds}


def entries(api: FakeSwiftAPI, **params) -> tuple[list[dict], dict]:
    body = httpx.get(f"{api.url}/swift/guano", params=params).json()
    return body["entries"], body


def test_guano_answers_like_the_recorded_ones():
    obs = fake_observations(
        BEGIN, END, 12, seed=2, slewing_fraction=0.25, sp_fraction=0.25, slewing_only_fraction=0.25
    )
    with FakeSwiftAPI(obs) as api:
        got, body = entries(api, begin=BEGIN.isoformat(), end=END.isoformat(), limit=100)
    assert body["status"]["status"] == "Accepted" and body["status"]["errors"] == []
    assert {"jobnumber", "warnings"} <= body["status"].keys()
    assert body["guanostatus"] is True and body["limit"] == "100"
    assert datetime.fromisoformat(body["lastcommand"]) > max(
        d.trigger_utc for o in obs for d in o.dumps
    )
    times = [e["triggertime"] for e in got]
    assert times == sorted(times, reverse=True)  # newest first
    by_obsid = {o.obsid: o for o in obs}
    for e in got:
        o = by_obsid[e["obs_id"]]
        assert e["data"]["filenames"] == [o.filename(k).removesuffix(".gz") for k in o.kinds]
        assert e["queue"] == 0 and e["ra"] == e["dec"] == -1.0
        for gti in e["data"]["all_gtis"]:
            assert gti["exposure"].startswith("PT") and gti["utcf"] == pytest.approx(-36, abs=3)
    assert {e["data"]["acs"] for e in got} == {"pointing", "slewing", "mixed"}
    assert any(e["data"]["gti"] is None for e in got)


@pytest.mark.parametrize("base", ["utc", "swift"])
def test_time_base_knob(base):
    [o] = fake_observations(BEGIN, END, 1, seed=3)
    d = o.dumps[0]
    with FakeSwiftAPI([o], knobs=Knobs(time_base=base)) as api:
        [e], _ = entries(api)
    expected = d.trigger_utc if base == "utc" else swift_time(d.trigger_met)
    assert datetime.fromisoformat(e["triggertime"]) == expected
    assert d.trigger_utc - swift_time(d.trigger_met) == timedelta(seconds=d.utcf)


def test_order_cap_offset_and_latency_knobs():
    obs = one_day_of_dumps(9)
    day = {"begin": BEGIN.isoformat(), "end": (BEGIN + timedelta(days=1)).isoformat()}
    with FakeSwiftAPI(obs, knobs=Knobs(order="oldest", max_limit=4)) as api:
        first, _ = entries(api, **day, limit=100)
        second, _ = entries(api, **day, limit=100, offset=4)
    assert len(first) == len(second) == 4
    assert [e["triggertime"] for e in first] == sorted(e["triggertime"] for e in first)
    assert not {e["triggertime"] for e in first} & {e["triggertime"] for e in second}
    with FakeSwiftAPI(obs, knobs=Knobs(honour_offset=False, latency_s=0.2)) as api:
        started = time.perf_counter()
        a, _ = entries(api, **day, limit=3)
        b, _ = entries(api, **day, limit=3, offset=3)
        waited = time.perf_counter() - started
    assert a == b and waited >= 0.4


def test_data_lists_archive_or_versioned_quicklook_files():
    archived = fake_observations(BEGIN, END, 1, seed=4, not_archived_fraction=0.0)[0]
    recent = FakeObservation("00077777002", archived.dumps, archived=False, kinds=("po", "sl"))
    with FakeSwiftAPI([archived, recent]) as api:
        a = httpx.get(f"{api.url}/swift/data", params={"obs_id": archived.obsid, "bat": "true"})
        r = httpx.get(f"{api.url}/swift/data", params={"obs_id": recent.obsid, "bat": "true"})
        none = httpx.get(f"{api.url}/swift/data", params={"obs_id": "00000000001", "bat": "true"})
        ql = f"{api.url}/ql/sw{recent.obsid}.001/bat/"
    assert {f["url"] for f in a.json()["entries"] if "bat" in f["path"]} == {
        HEASARC_HTTPS + archived.key(k) for k in ("po", ENABLE_MAP)
    }
    files = r.json()["entries"]
    assert {f["filename"] for f in files} >= {recent.filename(k) for k in ("po", "sl", ENABLE_MAP)}
    assert all(f["quicklook"] for f in files)
    assert all(f["url"].startswith(ql) for f in files if "bat" in f["path"])
    assert none.json()["entries"] == [] and none.json()["status"]["status"] == "Accepted"


def test_faults_hit_the_first_requests_of_their_path_only():
    faults = [
        Fault(path="/swift/guano", count=2, status=503, retry_after="3"),
        Fault(path="/swift/data", malformed=True),
        Fault(path="/swift/data", refused=True),
    ]
    with FakeSwiftAPI([], faults) as api, httpx.Client(base_url=api.url) as client:
        guano = [client.get("/swift/guano", params={"limit": 1}) for _ in range(3)]
        data = [client.get("/swift/data", params={"obs_id": "00000000001"}) for _ in range(3)]
    assert [r.status_code for r in guano] == [503, 503, 200]
    assert guano[0].headers["Retry-After"] == "3"
    with pytest.raises(ValueError):
        data[0].json()
    assert data[1].json()["status"]["status"] == "Rejected"
    assert data[2].json()["entries"] == []
    assert api.count("/swift/guano") == 3


def test_delay_fault_makes_clients_time_out_then_recovers():
    with FakeSwiftAPI([], [Fault(delay_s=1.0)]) as api, httpx.Client(base_url=api.url) as client:
        with pytest.raises(httpx.ReadTimeout):
            client.get("/swift/guano", timeout=0.2)
        assert client.get("/swift/guano", timeout=2).status_code == 200


def test_long_request_lines_and_unknown_paths_are_refused():
    with FakeSwiftAPI([], max_url_length=100) as api, httpx.Client(base_url=api.url) as client:
        assert client.get("/swift/guano", params={"x": ["1.0"] * 30}).status_code == 414
        assert client.get("/nowhere").status_code == 404
        assert client.get("/swift/data").status_code == 422  # obs_id missing


def test_start_stop_frees_the_port():
    api = FakeSwiftAPI([]).start()
    url = api.url
    assert httpx.get(f"{url}/swift/guano").status_code == 200
    api.stop()
    with pytest.raises(RuntimeError):
        _ = api.url
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/swift/guano", timeout=1)


@pytest.fixture(scope="module")
def archive_observations() -> list[FakeObservation]:
    obs = fake_observations(
        BEGIN,
        END,
        4,
        seed=11,
        multi_dump_fraction=0.0,
        not_archived_fraction=0.0,
        slewing_fraction=0.25,
        sp_fraction=0.25,
    )
    late = FakeObservation("00099999003", obs[0].dumps, archived=False, version=2)
    broken = FakeObservation("00099999004", obs[1].dumps, corrupt=True)
    return [*obs, late, broken]


@pytest.mark.parametrize("where", ["local", "memory"])
def test_fill_heasarc_writes_the_real_layout(archive_observations, tmp_path, where):
    root = str(tmp_path / "heasarc") if where == "local" else "memory://heasarc-test"
    ql = str(tmp_path / "ql")
    truths = fill_heasarc(root, archive_observations, quicklook_url=ql, **SMALL)
    fs, base = fsspec.url_to_fs(root)
    written = sorted(p.removeprefix(base.rstrip("/") + "/") for p in fs.find(base))
    expected = sorted(
        o.key(kind) for o in archive_observations if o.archived for kind in o.bat_kinds
    )
    assert written == expected
    late = next(o for o in archive_observations if not o.archived)
    assert (tmp_path / "ql" / f"sw{late.obsid}.002" / "bat/event" / late.filename("po")).exists()
    intact = [o for o in archive_observations if not o.corrupt]
    assert sorted(truths) == sorted((o.obsid, k) for o in intact for k in o.kinds)
    for o in intact:
        if not o.archived:
            continue
        kind = o.kinds[0]
        raw = gzip.decompress(fs.cat_file(f"{base}/{o.key(kind)}"))
        with fits.open(io.BytesIO(raw)) as hdul:
            header = hdul["EVENTS"].header
            assert header["OBS_ID"] == o.obsid
            assert header["TSTART"] == pytest.approx(o.dumps[0].start_met, abs=1.0)
            assert header["UTCFINIT"] == o.dumps[0].utcf
            assert len(hdul["EVENTS"].data) == truths[(o.obsid, kind)].n_events > 0
        # one enable map per observation, the mask every one of its event files was made with
        maps = parse_enable_maps(fs.cat_file(f"{base}/{o.key(ENABLE_MAP)}"), o.key(ENABLE_MAP))
        assert maps.obsid == o.obsid and len(maps.times) == 1
        assert maps.times[0] < o.dumps[0].start_met
        for k in o.kinds:
            assert np.array_equal(maps.enabled[0], truths[(o.obsid, k)].enabled), k
    broken = next(o for o in archive_observations if o.corrupt)
    with pytest.raises((EOFError, zlib.error, gzip.BadGzipFile)):
        gzip.decompress(fs.cat_file(f"{base}/{broken.key()}"))
    intact_map = parse_enable_maps(fs.cat_file(f"{base}/{broken.key(ENABLE_MAP)}"), "m")
    assert intact_map.obsid == broken.obsid  # only its event file is broken
    if where == "memory":
        fs.rm(base, recursive=True)


def test_fill_heasarc_is_deterministic(archive_observations, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    fill_heasarc(str(a), archive_observations[:2], **SMALL, seed=3)
    fill_heasarc(str(b), archive_observations[:2], **SMALL, seed=3)
    key = archive_observations[0].key()
    assert (a / key).read_bytes() == (b / key).read_bytes()
    fill_heasarc(str(b), archive_observations[:1], **SMALL, seed=4)
    assert (a / key).read_bytes() != (b / key).read_bytes()
    assert np.frombuffer((a / key).read_bytes()[:2], np.uint8).tolist() == [0x1F, 0x8B]

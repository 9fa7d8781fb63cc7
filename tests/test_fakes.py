"""The fakes behave like the real services where the planner and workers depend on it."""

from __future__ import annotations

import gzip
import io
import zlib
from datetime import datetime, timedelta

import fsspec
import httpx
import numpy as np
import pytest
from astropy.io import fits

from batglitch.sources.catalog import HEASARC_HTTPS, MET_EPOCH, swift_client
from batglitch.standins import (
    FakeDump,
    FakeObservation,
    FakeSwiftAPI,
    Fault,
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
    from swifttools.swift_too import GUANO, Clock, Data

    return GUANO, Clock, Data


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
    }
    obs = fake_observations(BEGIN, END, 50, seed=7, **flags)
    assert obs == fake_observations(BEGIN, END, 50, seed=7, **flags)
    assert obs != fake_observations(BEGIN, END, 50, seed=8)
    assert len({o.obsid for o in obs}) == 50
    assert all(len(o.obsid) == 11 and o.obsid.isdigit() for o in obs)
    assert sum(len(o.dumps) > 1 for o in obs) == 10
    assert sum(not o.archived for o in obs) == 5
    assert sum(o.corrupt for o in obs) == 3
    assert sum(o.slewing for o in obs) == 2
    trigger_utcs = [d.trigger_utc for o in obs for d in o.dumps]
    assert all(BEGIN <= t < END for t in trigger_utcs)
    firsts = [o.dumps[0].trigger_met for o in obs]
    assert firsts == sorted(firsts)


def test_dump_times_follow_met_plus_utcf():
    d = FakeDump(trigger_met=700_000_000.5)
    assert d.utcf == utcf_at(700_000_000.5)
    assert -40 < d.utcf < -20
    assert d.trigger_utc == datetime(2001, 1, 1) + timedelta(seconds=700_000_000.5 + d.utcf)
    obs = FakeObservation("00012345001", (d,))
    assert obs.month == d.trigger_utc.strftime("%Y_%m")
    assert (
        obs.key()
        == f"swift/data/obs/{obs.month}/00012345001/bat/event/sw00012345001bevshpo_uf.evt.gz"
    )
    assert obs.key("hk").startswith(f"swift/data/obs/{obs.month}/00012345001/bat/hk/")


def test_real_guano_client_pages_and_clock_corrects(swift):
    guano, _, _ = swift
    obs = fake_observations(BEGIN, END, 12, seed=1, multi_dump_fraction=0.5)
    dumps = sorted((d for o in obs for d in o.dumps), key=lambda d: d.trigger_met)
    offsets = range(0, len(dumps), 5)
    with FakeSwiftAPI(obs) as api, swift_client(api.url, 5.0):
        pages = [guano(begin=BEGIN, end=END, limit=5, offset=k) for k in offsets]
    got = [e for p in pages for e in p.entries]
    assert all(p.status.status == "Accepted" for p in pages)
    assert [len(p.entries) for p in pages] == [min(5, len(dumps) - k) for k in offsets]
    for entry, dump in zip(got, dumps, strict=True):
        assert entry.triggertime.isutc and entry.triggertime.utcf == dump.utcf
        assert entry.triggertime == dump.trigger_utc
        assert entry.triggertime.met == pytest.approx(dump.trigger_met, abs=1e-6)
        assert entry.data.utcf == dump.utcf
        assert (entry.triggertype, entry.duration, entry.offset) == (
            dump.triggertype,
            dump.duration,
            dump.offset,
        )


def test_fake_reproduces_the_lost_clock_correction_above_about_145_entries(swift):
    guano, _, _ = swift
    obs = one_day_of_dumps(160)
    with FakeSwiftAPI(obs) as api, swift_client(api.url, 5.0):
        small = guano(begin=BEGIN, end=BEGIN + timedelta(days=1), limit=140)
        large = guano(begin=BEGIN, end=BEGIN + timedelta(days=1), limit=150)
    assert small.status.status == large.status.status == "Accepted"
    assert not large.status.errors
    # Corrected at 140, silently left in Swift time at 150, as on the real service.
    assert small.entries[0].triggertime == obs[0].dumps[0].trigger_utc
    raw = large.entries[0].triggertime
    assert not getattr(raw, "isutc", False)
    assert raw == swift_time(obs[0].dumps[0].trigger_met)


def test_clock_by_met(swift):
    _, clock, _ = swift
    mets = [600_000_000.0, 750_000_000.25]
    with FakeSwiftAPI([]) as api, swift_client(api.url, 5.0):
        answer = clock(met=mets)
    assert answer.status.status == "Accepted"
    assert [e.utcf for e in answer.entries] == [utcf_at(m) for m in mets]
    assert [e.met for e in answer.entries] == pytest.approx(mets, abs=1e-6)


def test_data_lists_archive_or_quicklook_files(swift):
    _, _, data = swift
    archived = fake_observations(BEGIN, END, 1, seed=4, not_archived_fraction=0.0)[0]
    recent = FakeObservation("00077777002", archived.dumps, archived=False, slewing=True)
    with FakeSwiftAPI([archived, recent]) as api, swift_client(api.url, 5.0):
        a = data(obs_id=archived.obsid, bat=True, fetch=False)
        r = data(obs_id=recent.obsid, bat=True, auxil=False, fetch=False)
        nothing = data(obs_id="00000000001", bat=True, fetch=False)
        ql_prefix = f"{api.url}/ql/"
    assert {f.url for f in a.entries if "bat" in f.path} == {
        HEASARC_HTTPS + archived.key(k) for k in ("po", "hk")
    }
    assert any(f.path.endswith("auxil") for f in a.entries)
    assert not any(f.quicklook for f in a.entries)
    assert {f.filename for f in r.entries} == {recent.filename(k) for k in ("po", "sl", "hk")}
    assert all(f.quicklook and f.url.startswith(ql_prefix) for f in r.entries)
    assert nothing.status.status == "Accepted" and nothing.entries == []


def test_faults_hit_the_first_requests_of_their_path_only():
    faults = [
        Fault(path="/swift/guano", count=2, status=503),
        Fault(path="/swift/data", malformed=True),
    ]
    with FakeSwiftAPI([], faults) as api, httpx.Client(base_url=api.url) as client:
        guano = [client.get("/swift/guano", params={"limit": 1}) for _ in range(3)]
        clock = client.get("/swift/clock", params={"met": 1.0})
        data = [client.get("/swift/data", params={"obs_id": "00000000001"}) for _ in range(2)]
    assert [r.status_code for r in guano] == [503, 503, 200]
    assert clock.status_code == 200 and clock.json()["entries"][0]["utcf"] == utcf_at(1.0)
    with pytest.raises(ValueError):
        data[0].json()
    assert data[1].json()["entries"] == []
    assert api.count("/swift/guano") == 3


def test_delay_fault_makes_clients_time_out_then_recovers():
    with FakeSwiftAPI([], [Fault(delay_s=1.0)]) as api, httpx.Client(base_url=api.url) as client:
        with pytest.raises(httpx.ReadTimeout):
            client.get("/swift/clock", params={"met": 5.0}, timeout=0.2)
        assert client.get("/swift/clock", params={"met": 5.0}, timeout=2).status_code == 200


def test_long_request_lines_and_unknown_paths_are_refused():
    with FakeSwiftAPI([], max_url_length=100) as api, httpx.Client(base_url=api.url) as client:
        assert client.get("/swift/clock", params={"met": ["1.0"] * 30}).status_code == 414
        assert client.get("/nowhere").status_code == 404
        assert client.get("/swift/data").status_code == 422  # obs_id missing


def test_start_stop_frees_the_port():
    api = FakeSwiftAPI([]).start()
    url = api.url
    assert httpx.get(f"{url}/swift/clock", params={"met": 0}).status_code == 200
    api.stop()
    with pytest.raises(RuntimeError):
        _ = api.url
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/swift/clock", params={"met": 0}, timeout=1)


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
    )
    late = FakeObservation("00099999003", obs[0].dumps, archived=False)
    broken = FakeObservation("00099999004", obs[1].dumps, corrupt=True)
    return [*obs, late, broken]


@pytest.mark.parametrize("where", ["local", "memory"])
def test_fill_heasarc_writes_the_real_layout(archive_observations, tmp_path, where):
    root = str(tmp_path / "heasarc") if where == "local" else "memory://heasarc-test"
    truths = fill_heasarc(root, archive_observations, **SMALL)
    fs, base = fsspec.url_to_fs(root)
    written = sorted(p.removeprefix(base.rstrip("/") + "/") for p in fs.find(base))
    expected = sorted(
        o.key(kind) for o in archive_observations if o.archived for kind in o.bat_kinds
    )
    assert written == expected
    intact = [o for o in archive_observations if o.archived and not o.corrupt]
    assert sorted(truths) == sorted(o.obsid for o in intact)
    for o in intact:
        raw = gzip.decompress(fs.cat_file(f"{base}/{o.key()}"))
        with fits.open(io.BytesIO(raw)) as hdul:
            header = hdul["EVENTS"].header
            assert header["OBS_ID"] == o.obsid
            assert header["TSTART"] == pytest.approx(o.dumps[0].start_met, abs=1.0)
            assert len(hdul["EVENTS"].data) == truths[o.obsid].n_events > 0
    broken = next(o for o in archive_observations if o.corrupt)
    with pytest.raises((EOFError, zlib.error, gzip.BadGzipFile)):
        gzip.decompress(fs.cat_file(f"{base}/{broken.key()}"))
    hk = gzip.decompress(fs.cat_file(f"{base}/{broken.key('hk')}"))
    assert b"EVENTS" not in hk and broken.obsid.encode() in hk
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

"""Damaged and hostile input through the public paths: the ingest command, manifest entries,
gzip bombs in a fresh process, and a fuzzer over the reader.

What must hold for each input (issue 9): a one-line error naming obsid and file, a non-zero exit
status where a user asked for that file, nothing written outside the store, the obsid's rows
from before untouched, the other files of the same run still archived, and bounded memory.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from eventfiles import DAMAGED, OBSID, file_bytes, header_starts, set_card, small_events
from eventfiles import event_hdus as make_hdus
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from isal import isal_zlib

from batglitch.cli import main
from batglitch.errors import EventFileError
from batglitch.pipeline.job import process_item
from batglitch.pipeline.plan import ObsEntry, PlannedFile, write_manifest
from batglitch.pipeline.worker import FAILED
from batglitch.science.events import BLOCK, CARD, parse_events
from batglitch.sources.places import Places
from batglitch.standins.synth import SynthSpec, write_event_file
from batglitch.store.archive import Archive
from batglitch.store.reader import open_archive

OTHER = "00031337002"
GIB = 1024**3


def tree(root: Path, skip: Path) -> dict[str, int]:
    """Every file under root (outside skip) with its size."""
    return {
        str(p): p.stat().st_size for p in root.rglob("*") if p.is_file() and skip not in p.parents
    }


def rows_of(store: str, obsid: str) -> dict[str, np.ndarray]:
    ds = open_archive(store)
    mine = ds.obsid.values == obsid
    return {name: ds[name].values[mine] for name in ("window_start", "dpi", "source_file")}


def test_each_damaged_file_fails_alone_and_leaves_the_obsids_rows(tmp_path, capsys):
    """One ingest of every damaged file (all claiming OBSID) plus a good file of another obsid,
    into a store that already holds OBSID's good rows."""
    assert len(DAMAGED) >= 30
    store = str(tmp_path / "store.zarr")
    good = tmp_path / "in" / f"sw{OBSID}bevshpo_uf.evt.gz"
    good.parent.mkdir()
    write_event_file(good, SynthSpec(obsid=OBSID, duration=40.0, rate_hz=1500.0, n_glitches=2))
    assert main(["ingest", str(good), "--store", store, "--no-progress"]) == 0
    before = rows_of(store, OBSID)
    assert len(before["window_start"]) >= 2
    other = tmp_path / "in" / f"sw{OTHER}bevshpo_uf.evt.gz"
    write_event_file(other, SynthSpec(obsid=OTHER, duration=40.0, rate_hz=1500.0, n_glitches=2))
    damaged = {}
    for i, (name, case) in enumerate(DAMAGED.items()):
        damaged[name] = tmp_path / "in" / f"damaged{i:02d}.evt.gz"
        damaged[name].write_bytes(case.make())
    files_before = tree(tmp_path, Path(store))
    capsys.readouterr()

    status = main(["ingest", *map(str, damaged.values()), str(other), "--store", store])

    assert status == 1
    lines = capsys.readouterr().out.splitlines()
    for name, path in damaged.items():
        [line] = [x for x in lines if f"{path}:" in x]  # exactly one line per file
        assert line.startswith("failed"), (name, line)
        assert DAMAGED[name].problem in line, (name, line)
        if DAMAGED[name].names_obsid:
            assert f"obsid {OBSID}, {path}" in line and line.split()[1] == OBSID, (name, line)
    after = rows_of(store, OBSID)
    assert all(np.array_equal(before[k], after[k]) for k in before)
    assert len(rows_of(store, OTHER)["window_start"]) >= 2  # the rest of the run landed
    assert tree(tmp_path, Path(store)) == files_before
    escaped = Path(store) / "fragments" / "../../../tmp/x"
    assert not escaped.resolve().exists()


HOSTILE_MANIFEST_URLS = {
    "local file URL": "file:///etc/passwd",
    "proc": "/proc/self/environ",
    "metadata service": "http://169.254.169.254/latest/meta-data/",
    "dot-dot out of the root": "{root}/../secret.evt.gz",
    "symlink out of the root": "{root}/link.evt.gz",
    "quick-look elsewhere": "https://swift.gsfc.nasa.gov.evil.example/data/swift/x.evt.gz",
    "another bucket": f"s3://attacker/swift/data/obs/2024_03/{OBSID}/x.evt.gz",
}


@pytest.mark.parametrize("where", ["event file", "enable map"])
@pytest.mark.parametrize("url", HOSTILE_MANIFEST_URLS.values(), ids=HOSTILE_MANIFEST_URLS.keys())
def test_hostile_manifest_urls_are_refused_before_any_read(
    tmp_path, url, where, capsys, monkeypatch
):
    root = tmp_path / "heasarc"
    root.mkdir()
    secret = tmp_path / "secret.evt.gz"
    write_event_file(secret, SynthSpec(obsid=OBSID, duration=20.0, rate_hz=500.0))
    os.symlink(secret, root / "link.evt.gz")
    url = url.format(root=root)
    if where == "event file":
        entry = ObsEntry(OBSID, (), (PlannedFile("po", (url,), archived=True),))
    else:  # a good event file, the hostile URL as its enable map
        good = root / "good.evt.gz"
        write_event_file(good, SynthSpec(obsid=OBSID, duration=20.0, rate_hz=500.0))
        planned = PlannedFile("po", (str(good),), archived=True)
        entry = ObsEntry(OBSID, (), (planned,), enable_map=(url,))
    store = str(tmp_path / "store.zarr")
    archive = Archive(store)
    result = process_item(entry, archive, None, places=Places.configured([str(root)]))
    assert (result.obsid, result.status, result.retryable) == (OBSID, FAILED, False)
    assert f"obsid {OBSID}, {url}: refused" in result.error and "\n" not in result.error
    assert archive.completed_obsids() == set()
    # the container/array-job command: the user asked for this entry, the exit status says so
    archive.publish()  # an (empty) archive for --store to open
    manifest = str(tmp_path / "manifest.json")
    write_manifest([entry], manifest)
    monkeypatch.setenv("BATGLITCH_ARCHIVE_ROOTS", str(root))
    assert main(["process", "--manifest", manifest, "--store", store, "--index", "0"]) == 1
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["status"] == FAILED


# ---- gzip bombs and /dev/zero, each in a fresh process: peak RSS and the number of attempts ----

BOMB_CHILD = """
import json, sys, time
from batglitch.errors import EventFileError
from batglitch.sources import fetch as fetch_module
from batglitch.sources.retry import RetryPolicy, is_permanent

opened = []
real_open = fetch_module._open
fetch_module._open = lambda *a, **k: opened.append(a[0]) or real_open(*a, **k)

def peak():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmHWM:"))

started, permanent = time.monotonic(), None
try:
    fetch_module.fetch(sys.argv[1], RetryPolicy(attempts=4, backoff_s=5.0))
    error = None
except EventFileError as exc:
    error, permanent = str(exc), is_permanent(exc)
print(json.dumps({"peak": peak(), "error": error, "permanent": permanent,
                  "attempts": len(opened), "seconds": time.monotonic() - started}))
"""


def _zeros_member(n_bytes: int) -> bytes:
    return zlib.compress(bytes(n_bytes), 9, wbits=31)  # ~1000:1, deflate's best


def _write_bomb(path: Path, head: bytes, total: int) -> Path:
    """A multi-member gzip: ``head``, then 64 MiB members of zeros up to ``total`` bytes."""
    member = _zeros_member(64 * 1024**2)
    with path.open("wb") as f:
        f.write(isal_zlib.compress(head, 1, 31))
        for _ in range((total - len(head)) // (64 * 1024**2)):
            f.write(member)
    return path


def _events_header_declaring(rows: int) -> bytes:
    """PRIMARY and an EVENTS header (no data) that declare ``rows`` rows."""
    raw = set_card(file_bytes(make_hdus(small_events()), gz=False), 1, "NAXIS2", str(rows))
    events = header_starts(raw)[1]
    end = raw.index(b"END" + b" " * 77, events)
    return raw[: end + CARD + (-(end + CARD - events) % BLOCK)]


@pytest.fixture(scope="module")
def bombs(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("bombs")
    row = 27  # bytes per row of the test layout
    return {
        "zeros, 3 GiB": str(_write_bomb(root / "zeros.evt.gz", b"", 3 * GIB)),
        "FITS head declaring 1.5 GB, then 3 GiB of zeros": str(
            _write_bomb(root / "fits.evt.gz", _events_header_declaring(int(1.5e9) // row), 3 * GIB)
        ),
        "FITS head declaring 3 GiB": str(
            _write_bomb(root / "big.evt.gz", _events_header_declaring(3 * GIB // row), 64 * 2**20)
        ),
        "/dev/zero": "/dev/zero",
    }


@pytest.mark.parametrize(
    "name",
    [
        "zeros, 3 GiB",
        "FITS head declaring 1.5 GB, then 3 GiB of zeros",
        "FITS head declaring 3 GiB",
        "/dev/zero",
    ],
)
def test_bombs_stay_under_1_gb_and_are_not_retried(bombs, name):
    path = bombs[name]
    if path != "/dev/zero":
        assert os.path.getsize(path) < 10 * 1024**2  # small on disk, huge when expanded
    child = subprocess.run(
        [sys.executable, "-c", BOMB_CHILD, path], capture_output=True, text=True, check=True
    )
    out = json.loads(child.stdout)
    assert out["error"] and path in out["error"] and "\n" not in out["error"]
    assert out["permanent"] and out["attempts"] == 1
    assert out["peak"] < 1e9, f"{name}: peak RSS {out['peak'] / 1e6:.0f} MB"


# ---- fuzzing the reader: nothing but EventFileError, memory bounded ----

FUZZ_LIMIT = 8 * 1024**2  # the FITS cap during fuzzing: anything bigger is refused
VALID = file_bytes(make_hdus(small_events()), gz=False)
HEADER_CARDS = [
    p
    for start in header_starts(VALID)
    for p in range(start, VALID.index(b"END" + b" " * 77, start), CARD)
]
HOSTILE_VALUES = st.sampled_from(
    ["-1", "0", "1", "2", "999999999999", "1E300", "'x'", "''", "T", "F", "NaN", "-0", "3.5",
     "'1D'", "'1J'", "'9999X'", "'EVENTS'", "'GTI'", "'BINTABLE'", "1D3", "(1,2)", ""]
)  # fmt: skip


def _rss() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))


def _parse_or_refuse(raw: bytes) -> None:
    try:
        parse_events(raw, "fuzz.evt", limit=FUZZ_LIMIT)
    except EventFileError as exc:
        assert exc.source == "fuzz.evt" and "\n" not in str(exc)


FUZZ = settings(
    max_examples=1500,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@dataclasses.dataclass
class RssWatch:
    start: int = dataclasses.field(default_factory=_rss)

    def check(self) -> None:
        assert _rss() < self.start + 256 * 1024**2


@pytest.fixture(scope="module")
def rss() -> RssWatch:
    return RssWatch()


@FUZZ
@given(
    flips=st.lists(
        st.tuples(st.integers(0, len(VALID) - 1), st.integers(1, 255)), min_size=1, max_size=8
    ),
    gz=st.booleans(),
)
def test_fuzz_byte_flips(rss, flips, gz):
    raw = bytearray(VALID)
    for pos, xor in flips:
        raw[pos] ^= xor
    _parse_or_refuse(isal_zlib.compress(bytes(raw), 1, 31) if gz else bytes(raw))
    rss.check()


@FUZZ
@given(cut=st.integers(0, len(VALID) - 1), gz=st.booleans())
def test_fuzz_truncations(rss, cut, gz):
    data = isal_zlib.compress(VALID, 1, 31) if gz else VALID
    _parse_or_refuse(data[: cut * len(data) // len(VALID)])
    rss.check()


@FUZZ
@given(
    cards=st.lists(
        st.tuples(st.sampled_from(HEADER_CARDS), HOSTILE_VALUES), min_size=1, max_size=4
    ),
)
def test_fuzz_mutated_header_cards(rss, cards):
    raw = bytearray(VALID)
    for pos, value in cards:
        key = raw[pos : pos + 8].decode()
        raw[pos : pos + CARD] = f"{key}= {value:>20}".ljust(CARD).encode()
    _parse_or_refuse(bytes(raw))
    rss.check()

"""Speed and memory of the core on realistic event files: old workflow, fast path, gunzip floor.

Run ``python benchmarks/bench_core.py``. The old workflow is written out here as the notebook ran
it (astropy reads of the gzipped file, a histogram per GTI, a boolean mask per window, the whole
thing once per resolution), so the speed-up is measured against what users actually replaced.
The fast path must give the same arrays; the benchmark asserts it before printing any number.
"""

from __future__ import annotations

import gzip
import json
import statistics
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
from astropy.table import Table
from isal import igzip

from batglitch.science.dpi import WindowTable, glitch_table
from batglitch.science.events import parse_events
from batglitch.sources.fetch import fetch
from batglitch.standins.synth import SynthSpec, write_event_file

SPEC = SynthSpec(obsid="00099999001", duration=200.0, rate_hz=10_000.0, n_glitches=10, seed=6)
LONG_SPEC = SynthSpec(obsid="00099999002", duration=2000.0, rate_hz=10_000.0, n_glitches=10, seed=7)
CACHE = Path(__file__).resolve().parents[1] / "out" / "bench"
REPEATS = 5
TARGET_SPEEDUP = 8.0  # old workflow / fast path, at least
TARGET_FLOOR_RATIO = 2.0  # fast path / gunzip alone, at most
TARGET_RSS_RATIO = 1.2  # peak RSS increase / (FITS bytes + the four columns), at most
COLUMN_BYTES = 8 + 2 + 2 + 4  # TIME f8, DETX i2, DETY i2, ENERGY f4 per event

# The old workflow's constants, as its notebook had them.
BIN, PAD = 0.016, 0.024
FULL_BINS = [np.arange(287) - 0.5, np.arange(174) - 0.5]
LOWRES_BINS = [[*range(0, 271, 18), 285], [*range(0, 166, 11), 172], [15, 50, 350]]


def bench_file(spec: SynthSpec = SPEC) -> Path:
    """A benchmark event file, made once and kept under out/bench/ (named by its spec)."""
    path = CACHE / f"sw{spec.obsid}_{spec.duration:.0f}s_{spec.rate_hz:.0f}hz_s{spec.seed}.evt.gz"
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        write_event_file(partial, spec)
        partial.rename(path)
    return path


def old_workflow(path: Path, lowres: bool) -> tuple[list[float], list[np.ndarray]]:
    """One resolution of the old workflow: window starts and their images, float64."""
    events = Table.read(path, hdu="EVENTS")
    gti = Table.read(path, hdu="GTI")
    time_, energy = np.asarray(events["TIME"]), np.asarray(events["ENERGY"])
    detx, dety = np.asarray(events["DETX"]), np.asarray(events["DETY"])
    starts, images = [], []
    for start, stop in zip(gti["START"], gti["STOP"], strict=True):
        edges = np.arange(start, stop + BIN / 2, BIN)
        h_low, _ = np.histogram(time_[energy <= 25.0], bins=edges)
        h_high, _ = np.histogram(time_[energy > 50.0], bins=edges)
        with np.errstate(divide="ignore", invalid="ignore"):
            z_low = (h_low - np.mean(h_low)) / np.std(h_low)
            z_high = (h_high - np.mean(h_high)) / np.std(h_high)
            ratio = z_low / np.abs(z_high)
        for i in np.flatnonzero((z_low > 10) & (ratio > 3)):
            t_min, t_max = edges[i] - PAD, edges[i] + BIN + PAD
            inside = (time_ >= t_min) & (time_ <= t_max)
            full, _, _ = np.histogram2d(detx[inside], dety[inside], bins=FULL_BINS)
            if not full.any():
                continue
            if lowres:
                image, _ = np.histogramdd(
                    (detx[inside], dety[inside], energy[inside]), bins=LOWRES_BINS
                )
                image = np.swapaxes(image, 0, 1)
            else:
                image = full
            starts.append(t_min)
            images.append(image)
    return starts, images


def run_old(path: Path) -> tuple[list[float], list[np.ndarray], list[np.ndarray]]:
    starts, full = old_workflow(path, lowres=False)
    _, low = old_workflow(path, lowres=True)
    return starts, full, low


def run_fast(path: Path) -> WindowTable:
    """What a worker does: stream the file into its FITS bytes, cut the columns, search."""
    return glitch_table(parse_events(fetch(str(path)).data, str(path)))


def median_time(action: Callable[[], object], repeats: int = REPEATS) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def interleaved_medians(
    first: Callable[[], object], second: Callable[[], object], repeats: int
) -> tuple[float, float]:
    """Median times of two actions run alternately: a ratio of the two survives a busy machine."""
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for action, kept in zip((first, second), times, strict=True):
            started = time.perf_counter()
            action()
            kept.append(time.perf_counter() - started)
    return statistics.median(times[0]), statistics.median(times[1])


# A fresh interpreter that imports only what a worker imports (not astropy or this benchmark), and
# reads the file the way the worker does: streamed, the FITS bytes dropped before the search.
# It reads the peak from /proc (VmHWM) where it can: on Linux ru_maxrss survives vfork+exec, so a
# child started from this big benchmark process would report the parent's peak as its own.
RSS_CHILD = """
import json, resource, sys
from batglitch.science.dpi import glitch_table
from batglitch.science.events import parse_events
from batglitch.sources.fetch import fetch

def peak_bytes():
    try:
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmHWM:"))
    except OSError:
        scale = 1 if sys.platform == "darwin" else 1024
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale

after_imports = peak_bytes()
blob = fetch(sys.argv[1])
fits_bytes = len(blob.data)
events = parse_events(blob.data, sys.argv[1])
del blob
glitch_table(events)
print(json.dumps({"after_imports": after_imports, "peak": peak_bytes(), "fits": fits_bytes,
                  "events": len(events)}))
"""


def peak_rss(path: Path) -> dict[str, int]:
    """Peak resident memory of the worker's path on one file, total and above the imports."""
    out = subprocess.run(
        [sys.executable, "-c", RSS_CHILD, str(path)], check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout)


def memory_figures(label: str, path: Path) -> float:
    """Print the peak RSS of one file against FITS bytes + columns; return that ratio."""
    rss = peak_rss(path)
    increase = rss["peak"] - rss["after_imports"]
    floor = rss["fits"] + COLUMN_BYTES * rss["events"]
    mb = 1e6
    print(
        f"  {label}: {rss['events'] / 1e6:.1f} M events, {rss['fits'] / mb:.0f} MB FITS; peak RSS "
        f"{increase / mb:.0f} MB above imports ({rss['peak'] / mb:.0f} MB total) = "
        f"{increase / rss['events']:.1f} bytes/event, "
        f"{increase / floor:.2f}x the FITS bytes + columns ({floor / rss['events']:.1f} bytes/event)"
    )
    return increase / floor


def main() -> None:
    path = bench_file()
    raw = path.read_bytes()
    decompressed = len(igzip.decompress(raw))

    table = run_fast(path)
    starts, full, low = run_old(path)
    assert len(table) == len(starts) >= SPEC.n_glitches, (len(table), len(starts))
    assert np.array_equal(table.window_start, starts)
    assert all(np.array_equal(a, b) for a, b in zip(table.dpi, full, strict=True))
    assert all(np.array_equal(a, b) for a, b in zip(table.dpi_lowres, low, strict=True))

    t_old = median_time(lambda: run_old(path))
    # fast path and floor in turns, so that load from elsewhere on the machine weighs on both
    t_fast, t_isal = interleaved_medians(
        lambda: run_fast(path),
        lambda: igzip.decompress(path.read_bytes()),  # bare decompression
        repeats=2 * REPEATS + 1,
    )
    t_zlib = median_time(lambda: zlib.decompress(path.read_bytes(), wbits=31))
    t_gzip = median_time(lambda: gzip.decompress(path.read_bytes()))

    mb = 1e6
    print(f"file {path}: {len(raw) / mb:.1f} MB gzipped, {decompressed / mb:.1f} MB FITS, ", end="")
    print(
        f"{len(table)} windows; medians of {REPEATS} runs ({2 * REPEATS + 1}, in turns, for fast/floor)"
    )
    print(f"  old workflow (astropy, both resolutions) {t_old:8.3f} s")
    print(f"  fast path (stream, parse, both DPIs)     {t_fast:8.3f} s")
    print(f"  floor: read + isal igzip                 {t_isal:8.3f} s")
    print(f"  context: read + zlib / gzip module       {t_zlib:8.3f} s / {t_gzip:.3f} s")
    print("peak RSS of the worker's path, each file in a fresh process:")
    rss_200 = memory_figures(f"{SPEC.duration:.0f} s", path)
    rss_2000 = memory_figures(f"{LONG_SPEC.duration:.0f} s", bench_file(LONG_SPEC))
    ratios = [
        ("old / fast", t_old / t_fast, ">=", TARGET_SPEEDUP),
        ("fast / floor", t_fast / t_isal, "<=", TARGET_FLOOR_RATIO),
        ("peak RSS / (FITS + columns), 200 s", rss_200, "<=", TARGET_RSS_RATIO),
        ("peak RSS / (FITS + columns), 2000 s", rss_2000, "<=", TARGET_RSS_RATIO),
    ]
    missed = []
    for name, value, op, target in ratios:
        ok = value >= target if op == ">=" else value <= target
        print(f"  {name:36s} {value:6.2f}x  target {op} {target:g}: {'ok' if ok else 'MISSED'}")
        if not ok:
            missed.append(name)
    if missed:
        sys.exit(f"missed targets: {', '.join(missed)}")


if __name__ == "__main__":
    main()

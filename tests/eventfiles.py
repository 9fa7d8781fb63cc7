"""Build BAT event files from plain arrays, for tests that need exact control over every event.

The FITS layout comes from the synthetic generator's writer, so the project has one event-file
writer; this module only turns arrays into its input and lets tests break the result on purpose.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits
from isal import igzip

from batglitch.science.config import N_DETX, N_DETY
from batglitch.science.events import EventList
from batglitch.standins import synth

OBSID = "00031337001"
BIN_S = 0.016  # the reference's bin and pad, written as it writes them
PAD_S = 0.024
LOW_BAND = (15.0, 25.0)  # low-band energies that also land in the first low-resolution band
HIGH_BAND = (50.5, 349.0)


@dataclass(frozen=True)
class Events:
    """The columns the algorithm reads, in the dtypes a BAT file stores, plus the GTI rows."""

    time: np.ndarray
    detx: np.ndarray
    dety: np.ndarray
    energy: np.ndarray
    gti: np.ndarray

    @classmethod
    def of(cls, time, detx, dety, energy, gti) -> Events:
        time = np.asarray(time, dtype=np.float64)
        n = len(time)
        return cls(
            time=time,
            detx=np.broadcast_to(np.asarray(detx, dtype=np.int16), n).copy(),
            dety=np.broadcast_to(np.asarray(dety, dtype=np.int16), n).copy(),
            energy=np.broadcast_to(np.asarray(energy, dtype=np.float32), n).copy(),
            gti=np.asarray(gti, dtype=np.float64).reshape(-1, 2),
        )

    @classmethod
    def join(cls, parts: list[Events], gti) -> Events:
        """All events of the parts (in that order) under the given GTI rows."""
        columns = ("time", "detx", "dety", "energy")
        return cls.of(*(np.concatenate([getattr(p, c) for p in parts]) for c in columns), gti=gti)

    def permuted(self, order: np.ndarray) -> Events:
        """The same events in another file order."""
        return Events(
            self.time[order], self.detx[order], self.dety[order], self.energy[order], self.gti
        )

    def event_list(self, source: str = "arrays") -> EventList:
        """The same content as parse_events would return it, without a file in between."""
        return EventList(
            self.time, self.detx, self.dety, self.energy, self.gti, source, {"OBS_ID": OBSID}
        )


def reference_edges(start: float, stop: float) -> np.ndarray:
    """One GTI's 16 ms grid with exactly the reference's float arithmetic."""
    return np.arange(start, stop + BIN_S / 2, BIN_S)


def binned_events(
    edges: np.ndarray,
    low: np.ndarray,
    high: np.ndarray,
    rng: np.random.Generator,
    *,
    on_left_edge: float = 0.0,
) -> Events:
    """low[i] low-band and high[i] high-band events in bin i, anywhere on the plane.

    Times sit well inside their bin, except a fraction ``on_left_edge`` placed exactly on the
    bin's left edge (which still belongs to the bin).
    """
    low, high = np.asarray(low), np.asarray(high)
    bins = np.concatenate(
        [np.repeat(np.arange(len(low)), low), np.repeat(np.arange(len(high)), high)]
    )
    width = edges[bins + 1] - edges[bins]
    offset = np.where(rng.random(bins.size) < on_left_edge, 0.0, rng.uniform(0.1, 0.9, bins.size))
    energy = np.concatenate(
        [rng.uniform(*LOW_BAND, low.sum()), rng.uniform(*HIGH_BAND, high.sum())]
    )
    return Events.of(
        edges[bins] + offset * width,
        rng.integers(0, N_DETX, bins.size),
        rng.integers(0, N_DETY, bins.size),
        energy,
        gti=np.empty((0, 2)),
    )


def event_hdus(events: Events, *, obsid: str = OBSID, gainapp: bool = True) -> fits.HDUList:
    """The HDUs of a BAT event file holding exactly these events and GTI rows."""
    table = np.zeros(len(events.time), dtype=synth.EVENT_DTYPE)
    for column in ("time", "detx", "dety", "energy"):
        table[column.upper()] = getattr(events, column)
    known = np.concatenate([events.time[np.isfinite(events.time)], events.gti.ravel()])
    tstart = float(known.min()) if known.size else 0.0
    duration = max(float(known.max()) - tstart, 1.0) if known.size else 1.0
    spec = synth.SynthSpec(obsid=obsid, tstart=tstart, duration=duration, gainapp=gainapp)
    return synth.fits_hdus(table, events.gti, spec)


def file_bytes(hdus: fits.HDUList, *, gz: bool = True) -> bytes:
    """The file as stored: gzipped (.evt.gz) or plain (.evt)."""
    buffer = io.BytesIO()
    hdus.writeto(buffer)
    return igzip.compress(buffer.getvalue(), compresslevel=1) if gz else buffer.getvalue()


def write_file(path: Path, events: Events, **header) -> Path:
    path.write_bytes(file_bytes(event_hdus(events, **header), gz=path.suffix == ".gz"))
    return path

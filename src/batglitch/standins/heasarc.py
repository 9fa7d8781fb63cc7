"""A local copy of the HEASARC archive layout, filled with synthetic BAT files.

Archived observations get their event file(s) where the real archive keeps them, plus a
housekeeping file next to them (workers must never read it); corrupt ones get a truncated gzip;
not-yet-archived ones get nothing, as on the real archive before processing.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterable
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

from batglitch.standins.swift_api import FakeObservation
from batglitch.standins.synth import SynthSpec, SynthTruth, event_file_bytes


def fill_heasarc(
    root_url: str,
    observations: Iterable[FakeObservation],
    storage_options: dict[str, Any] | None = None,
    *,
    rate_hz: float = 2000.0,
    duration: float | None = None,
    seed: int = 0,
    **spec_overrides: Any,
) -> dict[str, SynthTruth]:
    """Write the archived observations' BAT files under root_url (a directory or s3://bucket).

    Each event file starts at its observation's first dump and lasts `duration` seconds (default:
    that dump's duration). spec_overrides go to batglitch.standins.synth.SynthSpec (n_glitches, ...).
    Returns the SynthTruth of every intact pointed event file, by obsid.
    """
    fs, root = fsspec.url_to_fs(root_url, **(storage_options or {}))
    root = root.rstrip("/")
    local = isinstance(fs, LocalFileSystem)
    if not local:
        fs.makedirs(root, exist_ok=True)  # creates the bucket on a fresh object store
    truths: dict[str, SynthTruth] = {}
    for obs in observations:
        if not obs.archived:
            continue
        first = obs.dumps[0]
        for n, kind in enumerate(obs.bat_kinds):
            if kind == "hk":
                payload = _housekeeping_bytes(obs)
            else:
                spec = SynthSpec(
                    obsid=obs.obsid,
                    tstart=first.start_met,
                    duration=duration or first.duration,
                    rate_hz=rate_hz,
                    seed=(seed * 7919 + int(obs.obsid) * 3 + n) % 2**32,
                    **spec_overrides,
                )
                payload, truth = event_file_bytes(spec)
                if obs.corrupt:
                    payload = payload[: len(payload) // 2]
                elif kind == "po":
                    truths[obs.obsid] = truth
            path = f"{root}/{obs.key(kind)}"
            if local:
                fs.makedirs(fs._parent(path), exist_ok=True)
            fs.pipe_file(path, payload)
    return truths


def _housekeeping_bytes(obs: FakeObservation) -> bytes:
    """A small gzipped stand-in for a BAT housekeeping file: present, valid gzip, never events."""
    card = f"OBS_ID  = '{obs.obsid}'".ljust(80)
    return gzip.compress((card + "END".ljust(80)).ljust(2880).encode("ascii"), mtime=0)

"""A local copy of the HEASARC archive layout (and of the quick-look site), filled with
synthetic BAT files.

Archived observations get their event file(s) of every kind they have where the real archive
keeps them (the month the observation began), plus their detector enable/disable map in
bat/hk/ (the one mask every file of the observation was made with) unless the observation's
enable_map knob is off; corrupt ones get a truncated gzip; not-yet-archived ones get nothing in
the archive and, when a quick-look root is given, their files under sw<obsid>.<version>/ there.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import fsspec
import numpy as np
from fsspec.implementations.local import LocalFileSystem

from batglitch.sources.heasarc import ENABLE_MAP
from batglitch.standins.swift_api import FakeObservation
from batglitch.standins.synth import SynthSpec, SynthTruth, enable_map_bytes, event_file_bytes


def fill_heasarc(
    root_url: str,
    observations: Iterable[FakeObservation],
    storage_options: dict[str, Any] | None = None,
    *,
    rate_hz: float = 2000.0,
    duration: float | None = None,
    seed: int = 0,
    quicklook_url: str | None = None,
    **spec_overrides: Any,
) -> dict[str, SynthTruth]:
    """Write the archived observations' BAT files under root_url (a directory or s3://bucket),
    and the others' under quicklook_url when given.

    Each event file starts at its observation's first dump and lasts `duration` seconds (default:
    that dump's duration), with that dump's UTCF. spec_overrides go to
    batglitch.standins.synth.SynthSpec (n_glitches, ...). Returns the SynthTruth of every intact
    event file written, by (obsid, kind). A BAT trigger's observation gets a bevshsp file
    centred on its trigger, holding that burst and no glitches.
    """
    truths: dict[tuple[str, str], SynthTruth] = {}
    archive, ql = _Tree(root_url, storage_options), None
    if quicklook_url is not None:
        ql = _Tree(quicklook_url, storage_options)
    for obs in observations:
        tree = archive if obs.archived else ql
        if tree is None:
            continue
        first = obs.dumps[0]
        mask_seed = (seed * 7919 + int(obs.obsid) * 3) % 2**32
        enabled = np.zeros(0)
        for n, kind in enumerate(obs.bat_kinds):
            if kind == ENABLE_MAP:  # after the event files: the one mask they were made with,
                start = first.start_met - obs.lead_s - 60.0  # in force since before they began
                payload = enable_map_bytes(obs.obsid, [start], enabled[None])
            else:
                length = duration or first.duration
                trigger = {"trigger_met": first.trigger_met, "n_glitches": 0, "n_grbs": 1}
                spec = SynthSpec(
                    obsid=obs.obsid,
                    tstart=first.trigger_met - length / 2 if obs.bat_trigger else first.start_met,
                    duration=length,
                    utcf=first.utcf,
                    rate_hz=rate_hz,
                    seed=(seed * 7919 + int(obs.obsid) * 3 + n) % 2**32,
                    mask_seed=mask_seed,
                    **{**spec_overrides, **(trigger if obs.bat_trigger else {})},
                )
                payload, truth = event_file_bytes(spec)
                enabled = truth.enabled
                if obs.corrupt:
                    payload = payload[: len(payload) // 2]
                else:
                    truths[(obs.obsid, kind)] = truth
            tree.put(obs.key(kind) if obs.archived else obs.quicklook_key(kind), payload)
    return truths


class _Tree:
    """A directory or bucket to write files into by relative key."""

    def __init__(self, url: str, storage_options: dict[str, Any] | None) -> None:
        self.fs, root = fsspec.url_to_fs(url, **(storage_options or {}))
        self.root = root.rstrip("/")
        self.local = isinstance(self.fs, LocalFileSystem)
        if not self.local:
            self.fs.makedirs(self.root, exist_ok=True)  # creates the bucket on a fresh store

    def put(self, key: str, payload: bytes) -> None:
        path = f"{self.root}/{key}"
        if self.local:
            self.fs.makedirs(self.fs._parent(path), exist_ok=True)
        self.fs.pipe_file(path, payload)

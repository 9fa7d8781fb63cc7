"""The shared Zarr v3 archive: fragments written without coordination, a root view built by finalize.

Layout under the archive URL (local directory or s3://):

    zarr.json, dpi/, dpi_lowres/, obsid/, ...   the flat training view (finalize writes it)
    fragments/<obsid>/<attempt>/                 one worker attempt's rows (a Zarr group)
    complete/<obsid>/<attempt>.json              completion marker, written last, in one PUT
    finalize.lease.json                          held while a finalize writes the view
    manifests/, runs/                            plans and run reports

Every attempt writes under a fresh attempt id, so no two writers ever touch the same key and a
killed worker leaves only an unmarked fragment that finalize ignores. Finalize takes the newest
marker per obsid, so re-running an obsid replaces its rows and re-running a range adds nothing twice.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import time
import warnings
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import islice
from typing import Any

import fsspec
import numpy as np
import zarr
import zarr.storage

from batglitch import __version__
from batglitch.errors import BatGlitchError, TransientError
from batglitch.sources.fetch import storage_options_for, write_atomically
from batglitch.store.keys import (
    FRAGMENTS,
    LEASE,
    MARKERS,
    attempt_cutoff,
    fragment_key,
    marker_key,
    new_attempt_id,
)
from batglitch.store.schema import (
    FRAGMENT_COLUMNS,
    IMAGE_COLUMNS,
    TABLE_COLUMNS,
    WINDOW_COLUMNS,
    check_rows,
)

logger = logging.getLogger(__name__)
LEASE_STALE_S = 3600.0  # far longer than any finalize runs (Lambda stops it at 900 s)
IMAGE_CHUNK = 32  # windows per chunk of the image arrays: ~3 MB of raw dpi, one read per batch
TABLE_CHUNK = 65536
READERS, READ_AHEAD = 32, 64  # finalize: fragment reads in flight / held in memory


@dataclass(frozen=True)
class Fragment:
    """One observation's contribution: its window table plus what it was made from."""

    obsid: str
    rows: dict[str, np.ndarray]  # per-window arrays keyed by schema.WINDOW_COLUMNS names
    source: str
    size: int
    etag: str | None
    config: dict[str, Any]  # the algorithm parameters (DetectionConfig.as_attrs())

    def __len__(self) -> int:
        return len(self.rows["window_start"])


@dataclass(frozen=True)
class FinalizeSummary:
    n_obsids: int
    n_windows: int
    pruned: int


def consolidate(store: zarr.abc.store.Store) -> None:
    """Consolidated metadata. zarr notes that v3 has not standardised it yet (xarray and
    zarr-python read it, other readers use the per-array metadata) and that fragments/ and
    complete/ are not nodes (on purpose): both notices are expected here, not news. Filters
    rather than catch_warnings, which is not thread-safe."""
    warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part")
    warnings.filterwarnings("ignore", message="Object at .* is not recognized as a component")
    zarr.consolidate_metadata(store)


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def archive_storage_options(url: str) -> dict[str, Any]:
    """Signed access with timeouts; credentials and AWS_ENDPOINT_URL (LocalStack) come from the
    environment."""
    return storage_options_for(url)


class Archive:
    """Handle on one archive URL; all storage logic of the project lives here."""

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None) -> None:
        self.url = url.rstrip("/")
        self.storage_options = (
            archive_storage_options(url) if storage_options is None else storage_options
        )
        self.fs, self.root = fsspec.core.url_to_fs(self.url, **self.storage_options)
        self.local = fsspec.utils.get_protocol(self.url) == "file"

    # -- small I/O helpers -------------------------------------------------------------------
    def path(self, key: str) -> str:
        return f"{self.root}/{key}"

    def zarr_store(self, key: str = "") -> zarr.abc.store.Store:
        target = self.path(key) if key else self.root
        if self.local:
            return zarr.storage.LocalStore(target)
        return zarr.storage.FsspecStore.from_url(
            f"{self.url}/{key}" if key else self.url, storage_options=self.storage_options
        )

    def put_json(self, key: str, value: Any) -> None:
        """Write a JSON object so that readers see all of it or nothing."""
        write_atomically(self.fs, self.path(key), json.dumps(value, indent=1, default=str).encode())

    def create_exclusive(self, key: str, value: Any) -> bool:
        """Write a JSON object only if nothing is there yet (O_EXCL on disk, a conditional PUT
        on S3): False when someone else holds the key. The one atomic test-and-set we have."""
        data = json.dumps(value, default=str).encode()
        path = self.path(key)
        try:
            if self.local:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "xb") as out:
                    out.write(data)
            else:
                bucket, _, name = path.partition("/")
                self.fs.call_s3("put_object", Bucket=bucket, Key=name, Body=data, IfNoneMatch="*")
        except FileExistsError:  # s3fs reports a refused precondition as this, too
            return False
        return True

    @contextmanager
    def lease(self, *, wait_s: float = 600.0, poll_s: float = 5.0) -> Iterator[None]:
        """Hold the archive's finalize lease: two finalizes (a backfill overlapping the daily
        run) would otherwise write the same root keys. Waits up to ``wait_s`` for a holder to
        finish; a lease older than LEASE_STALE_S was left by a finalize that died and is broken."""
        mine = {"holder": new_attempt_id(), "since": time.time()}
        deadline = time.monotonic() + wait_s
        while not self.create_exclusive(LEASE, mine):
            try:
                held = self.get_json(LEASE)
            except FileNotFoundError:
                continue  # released between our attempt and our look: try again at once
            if time.time() - held["since"] > LEASE_STALE_S:
                logger.warning("%s: breaking a stale finalize lease %s", self.url, held)
                self.fs.rm(self.path(LEASE))
                continue
            if time.monotonic() > deadline:
                raise TransientError(
                    f"{self.url}: another finalize holds the archive (lease {held['holder']})"
                )
            time.sleep(poll_s)
        try:
            yield
        finally:
            self.fs.rm(self.path(LEASE))

    def glob(self, pattern: str) -> list[str]:
        """A fresh listing: fsspec caches listings per process, and a warm process (a reused
        Lambda container, a second run) must see what other workers completed since."""
        self.fs.invalidate_cache()  # all of it: s3fs drops only the parents of a given path
        return self.fs.glob(self.path(pattern))

    def get_json(self, key: str) -> Any:
        return json.loads(self.fs.cat_file(self.path(key)))

    # -- workers -----------------------------------------------------------------------------
    def write_fragment(self, fragment: Fragment, *, from_quicklook: bool = False) -> dict[str, Any]:
        """Write one attempt's rows under a key of its own, then its completion marker.

        from_quicklook marks rows made from quick-look data, which plans redo once the
        observation is in the archive proper."""
        attempt = new_attempt_id()
        key = fragment_key(fragment.obsid, attempt)
        values = check_rows(fragment.obsid, fragment.rows)
        n = len(fragment)
        if n:
            group = zarr.open_group(self.zarr_store(key), mode="w-")
            for name, column in WINDOW_COLUMNS.items():
                chunks = (min(n, IMAGE_CHUNK), *column.shape)
                array = group.create_array(
                    name, shape=values[name].shape, dtype=column.numpy_dtype, chunks=chunks,
                    dimension_names=("window", *column.dims),
                )  # fmt: skip
                array[...] = values[name]
            group.attrs.update({"obsid": fragment.obsid, "attempt": attempt})
            # finalize then reads one metadata object per fragment instead of one per array
            consolidate(group.store)
        marker = {
            "obsid": fragment.obsid,
            "attempt": attempt,
            "n_windows": n,
            "source": fragment.source,
            "size": fragment.size,
            "etag": fragment.etag or "",
            "completed_at": utc_now(),
            "version": __version__,
            "config": fragment.config,
            "from_quicklook": from_quicklook,
        }
        self.put_json(marker_key(fragment.obsid, attempt), marker)
        return marker

    def markers(self) -> dict[str, dict[str, Any]]:
        """The newest completion marker of every obsid (an obsid is complete iff it has one)."""
        paths = self.glob(f"{MARKERS}/*/*.json")
        latest: dict[str, dict[str, Any]] = {}
        for path, raw in (self.fs.cat(paths, on_error="return") if paths else {}).items():
            if isinstance(raw, FileNotFoundError):
                continue  # removed by a concurrent prune between listing and reading: superseded
            if isinstance(raw, Exception):
                raise TransientError(f"{self.url}: reading marker {path}: {raw!r}") from raw
            marker = json.loads(raw)
            held = latest.get(marker["obsid"])
            if held is None or marker["attempt"] > held["attempt"]:
                latest[marker["obsid"]] = marker
        return latest

    def completed_obsids(self) -> set[str]:
        return set(self.markers())

    # -- finalize ----------------------------------------------------------------------------
    def finalize(
        self, *, prune_grace_s: float = 3600.0, lease_wait_s: float = 600.0
    ) -> FinalizeSummary:
        """Build the root training view from complete fragments only, then consolidate metadata;
        one finalize at a time (see lease)."""
        with self.lease(wait_s=lease_wait_s):
            return self._finalize(prune_grace_s)

    def _finalize(self, prune_grace_s: float) -> FinalizeSummary:
        latest = self.markers()
        markers = [latest[k] for k in sorted(latest)]
        configs = {json.dumps(m["config"], sort_keys=True) for m in markers}
        if len(configs) > 1:
            raise BatGlitchError(
                f"{self.url}: fragments were made with {len(configs)} different algorithm "
                "configurations; re-run them with one configuration (--force) before finalizing"
            )
        config = markers[0]["config"] if markers else {}
        total = sum(m["n_windows"] for m in markers)
        root = zarr.open_group(self.zarr_store(), mode="a", use_consolidated=False)
        coords = " ".join(TABLE_COLUMNS)
        arrays = {}
        for name, column in WINDOW_COLUMNS.items():
            image = name in IMAGE_COLUMNS
            arrays[name] = root.create_array(
                name, shape=(total, *column.shape), dtype=column.numpy_dtype,
                chunks=(IMAGE_CHUNK if image else TABLE_CHUNK, *column.shape),
                dimension_names=("window", *column.dims), overwrite=True,
                attributes={**column.attrs, "coordinates": coords} if image else column.attrs,
            )  # fmt: skip
        table: dict[str, list[np.ndarray]] = {n: [] for n in TABLE_COLUMNS}
        images: dict[str, list[np.ndarray]] = {n: [] for n in IMAGE_COLUMNS}
        offset = 0

        def flush(final: bool) -> None:
            """Write buffered image rows in whole chunks (no read-modify-write on S3)."""
            nonlocal offset
            for name, parts in images.items():
                block = np.concatenate(parts) if parts else np.empty((0, *arrays[name].shape[1:]))
                rows = len(block) if final else len(block) // IMAGE_CHUNK * IMAGE_CHUNK
                if rows:
                    arrays[name][offset : offset + rows] = block[:rows]
                images[name] = [block[rows:]]
            offset += rows

        for _, values in self._fragment_rows(markers):
            for name in IMAGE_COLUMNS:
                images[name].append(values[name])
            for name in TABLE_COLUMNS:
                table[name].append(values[name])
            if sum(len(part) for part in images["dpi"]) >= IMAGE_CHUNK:
                flush(final=False)
        flush(final=True)
        for name, parts in table.items():
            data = np.concatenate(parts) if parts else np.empty(0, dtype=arrays[name].dtype)
            arrays[name][...] = data
        self._write_fragment_table(root, markers)
        if config:
            lc_bins = int(config["lightcurve_bins"])
            root.create_array(
                "lc_time_offset", shape=(lc_bins,), dtype="float64", dimension_names=("lc_bin",),
                overwrite=True, attributes={"units": "s", "long_name": "bin start minus flagged bin start"},
            )[...] = (np.arange(lc_bins) - lc_bins // 2) * float(config["bin_s"])  # fmt: skip
        root.attrs.update(
            {
                "title": "Swift/BAT heat-pipe glitch candidate windows",
                "software_version": __version__,
                "algorithm": config,
                "n_obsids": len(markers),
                "n_windows": total,
                "finalized_at": utc_now(),
            }
        )
        consolidate(self.zarr_store())
        pruned = self.prune(grace_s=prune_grace_s)
        return FinalizeSummary(n_obsids=len(markers), n_windows=total, pruned=pruned)

    def _fragment_rows(
        self, markers: list[dict[str, Any]]
    ) -> Iterator[tuple[dict[str, Any], dict[str, np.ndarray]]]:
        """Each complete fragment's rows sorted by window_start, in marker order.

        Reads run ahead on a few threads (object-store latency dominates) but never more than
        READ_AHEAD fragments are held in memory at once.
        """
        todo = iter(m for m in markers if m["n_windows"])
        with ThreadPoolExecutor(max_workers=READERS) as pool:
            ahead = deque(
                (m, pool.submit(self._read_fragment, m)) for m in islice(todo, READ_AHEAD)
            )
            while ahead:
                marker, future = ahead.popleft()
                following = next(todo, None)
                if following is not None:
                    ahead.append((following, pool.submit(self._read_fragment, following)))
                yield marker, future.result()

    def _read_fragment(self, marker: dict[str, Any]) -> dict[str, np.ndarray]:
        key = fragment_key(marker["obsid"], marker["attempt"])
        try:
            group = zarr.open_group(self.zarr_store(key), mode="r")
            values = {name: group[name][...] for name in WINDOW_COLUMNS}
        except Exception as exc:  # a marked fragment must be readable: say which one is not
            raise TransientError(f"{self.url}: reading complete fragment {key}: {exc!r}") from exc
        order = np.argsort(values["window_start"], kind="stable")
        return {name: v[order] for name, v in values.items()}

    @staticmethod
    def _write_fragment_table(root: zarr.Group, markers: list[dict[str, Any]]) -> None:
        """One row per complete obsid, glitches or not: what the view was made from."""
        for field, column in FRAGMENT_COLUMNS.items():
            root.create_array(
                f"fragment_{field}", shape=(len(markers),), dtype=column.numpy_dtype,
                chunks=(max(len(markers), 1),), dimension_names=("fragment",), overwrite=True,
                attributes=column.attrs,
            )[...] = np.array([m[field] for m in markers], dtype=column.numpy_dtype)  # fmt: skip

    def prune(self, *, grace_s: float) -> int:
        """Delete attempts nobody will read again: those superseded by a newer complete attempt
        of the same obsid (with their markers), and unmarked ones older than ``grace_s`` (a worker
        still writing one is younger than that). Markers are read afresh, so an attempt that
        completed while finalize ran is never taken for garbage."""
        latest = self.markers()
        cutoff = attempt_cutoff(grace_s)
        fragments = {tuple(p.rstrip("/").split("/")[-2:]) for p in self.glob(f"{FRAGMENTS}/*/*")}
        marked = {
            (p.split("/")[-2], p.split("/")[-1].removesuffix(".json"))
            for p in self.glob(f"{MARKERS}/*/*.json")
        }
        removed = 0
        for obsid, attempt in sorted(fragments | marked):
            newest = latest.get(obsid, {}).get("attempt", "")
            superseded = (obsid, attempt) in marked and attempt < newest
            abandoned = (obsid, attempt) not in marked and attempt < cutoff
            if attempt == newest or not (superseded or abandoned):
                continue
            if (obsid, attempt) in fragments:
                self.fs.rm(self.path(fragment_key(obsid, attempt)), recursive=True)
            if (obsid, attempt) in marked:
                self.fs.rm(self.path(marker_key(obsid, attempt)))
            removed += 1
        return removed

"""What a downstream reader checks on every read, and a reader process that loops while publishes
run (``python tests/readers.py URL OUT STOP [ENDPOINT]``): one JSON line per read in OUT until
the file STOP exists. Reads alternate between batglitch.open_archive and the plain
icechunk + xarray line of the README."""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from batglitch.store.schema import WINDOW_COLUMNS


def problems(ds: xr.Dataset) -> list[str]:
    """What would make a read inconsistent: unequal row counts, or a row whose DPI does not sum
    to its n_events (a zero-filled or mismatched row)."""
    counts = {name: ds[name].shape[0] for name in WINDOW_COLUMNS}
    found = [f"row counts differ: {counts}"] if len(set(counts.values())) > 1 else []
    if not found:
        sums = ds.dpi.values.sum(axis=(1, 2), dtype=np.int64)
        bad = np.flatnonzero(sums != ds.n_events.values)
        found += [f"rows {bad[:5].tolist()}: dpi.sum() != n_events"] if len(bad) else []
        found += ["an empty obsid"] if any(len(o) != 11 for o in ds.obsid.values) else []
    return found


def digest(ds: xr.Dataset, *, ordered: bool = True) -> str:
    """The rows' content; with ordered=False, independent of the stored row order."""
    if not ordered:
        ds = ds.sortby(["obsid", "window_start"])
    h = hashlib.sha256()
    for name in WINDOW_COLUMNS:
        values = ds[name].values
        h.update(name.encode())
        text = values.dtype.kind in "OUT"
        h.update("\0".join(map(str, values.tolist())).encode() if text else values.tobytes())
    return h.hexdigest()


def plain_open(url: str, endpoint: str | None = None) -> tuple[xr.Dataset, str]:
    """The README's reader line (icechunk + xarray only), and the snapshot it read."""
    import icechunk

    if url.startswith("s3://"):
        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        storage = icechunk.s3_storage(
            bucket=bucket, prefix=f"{prefix}/repo", endpoint_url=endpoint, allow_http=True,
            force_path_style=True, region="us-east-1", access_key_id="test",
            secret_access_key="test",
        )  # fmt: skip
    else:
        storage = icechunk.local_filesystem_storage(f"{url}/repo")
    session = icechunk.Repository.open(storage).readonly_session("main")
    return xr.open_zarr(session.store, consolidated=False), session.snapshot_id


def read_once(url: str, endpoint: str | None, plain: bool) -> dict[str, Any]:
    from batglitch.store.reader import open_archive

    if plain:
        ds, snapshot = plain_open(url, endpoint)
    else:
        options = {"key": "test", "secret": "test", "endpoint_url": endpoint} if endpoint else None
        ds = open_archive(url, storage_options=options)
        snapshot = ds.attrs["snapshot_id"]
    ds = ds.load()
    return {
        "how": "plain" if plain else "open_archive",
        "snapshot": snapshot,
        "rows": ds.sizes["window"],
        "digest": digest(ds),
        "problems": problems(ds),
    }


def main(url: str, out: str, stop: str, endpoint: str | None = None) -> None:
    plain = False
    with open(out, "a") as log:
        while not Path(stop).exists():
            try:
                record = read_once(url, endpoint, plain)
            except FileNotFoundError:  # nothing published yet
                time.sleep(0.01)
                continue
            log.write(json.dumps(record) + "\n")
            log.flush()
            plain = not plain


if __name__ == "__main__":
    main(*sys.argv[1:])

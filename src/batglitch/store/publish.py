"""What one publish writes into an Icechunk session: new obsids' rows, a re-processed obsid's rows
in place of its old ones, and its row of the per-obsid table; nothing else is rewritten.

Row order: rows are appended in publish order (obsid order within a publish, window_start order
within an obsid). A re-processed obsid's new rows first fill the slots its old rows held; when it
has fewer rows than before, rows from the end of the archive move into the remaining slots and the
arrays shrink. So the stored order is not sorted: ``ds.sortby(["obsid", "window_start"])`` is the
sorted view. The cost of a publish is the rows it adds or replaces plus one table chunk per column,
whatever the size of the archive.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import zarr

from batglitch.store.schema import (
    FRAGMENT,
    FRAGMENT_COLUMNS,
    PROVENANCE_GROUP,
    ROW_COORDINATES,
    WINDOW,
    WINDOW_COLUMNS,
    Column,
)

IMAGE_CHUNK = 32  # windows per chunk of the image arrays: ~3 MB of raw dpi, one read per batch
TABLE_CHUNK = 8192  # rows per chunk of 1-D window columns: an append rewrites at most one each
# The per-obsid table in one chunk per column up to this many obsids (GUANO holds ~1e4 in all):
# planning reads it in a fixed number of requests; a publish rewrites it (tens of bytes an obsid).
OBSID_CHUNK = 1 << 16
BATCH_WINDOWS = 256  # new rows held in memory at once while publishing


@dataclass(frozen=True)
class Placement:
    """Where a publish puts rows: ``targets[i]`` is the row of the i-th new row; rows
    ``move_from`` are copied to ``move_to`` (filling slots nobody else fills); then the arrays have
    ``length`` rows."""

    targets: np.ndarray
    move_from: np.ndarray
    move_to: np.ndarray
    length: int


def place(n_rows: int, dropped: np.ndarray, n_new: int) -> Placement:
    """Replace rows ``dropped`` of an ``n_rows`` array by ``n_new`` rows, touching nothing else
    but the rows moved to keep the array dense (at most len(dropped) - n_new of them)."""
    holes = np.unique(np.asarray(dropped, dtype=np.int64))
    length = n_rows - len(holes) + n_new
    # the i-th smallest hole is below length, so new rows placed there stay inside the array
    targets = np.concatenate(
        [holes[:n_new], np.arange(n_rows, n_rows + n_new - len(holes[:n_new]))]
    )
    unfilled = holes[n_new:]
    move_to = unfilled[unfilled < length]
    move_from = np.setdiff1d(np.arange(length, n_rows), holes)
    return Placement(targets.astype(np.int64), move_from, move_to, length)


def _create(root: zarr.Group, name: str, column: Column, dim: str, rows: int) -> zarr.Array:
    chunk = OBSID_CHUNK if dim == FRAGMENT else IMAGE_CHUNK if column.dims else TABLE_CHUNK
    attrs = column.attrs
    if dim == WINDOW and column.dims:  # xarray then shows these as the rows' coordinates
        attrs = {**attrs, "coordinates": " ".join(ROW_COORDINATES)}
    return root.create_array(
        name, shape=(rows, *column.shape), dtype=column.numpy_dtype,
        chunks=(chunk, *column.shape), dimension_names=(dim, *column.dims), attributes=attrs,
    )  # fmt: skip


def _columns(
    group: zarr.Group, columns: dict[str, Column], dim: str, first: str
) -> dict[str, zarr.Array]:
    """The group's arrays of ``columns``, those missing created as long as column ``first``."""
    present = set(group.array_keys())
    arrays = {name: group[name] for name in columns if name in present}
    length = arrays[first].shape[0] if first in arrays else 0
    for name, column in columns.items():
        if name not in arrays:
            arrays[name] = _create(group, name, column, dim, length)
    return arrays


def arrays(root: zarr.Group) -> tuple[dict[str, zarr.Array], dict[str, zarr.Array]]:
    """The window columns (root) and the per-obsid table (provenance group), created when missing
    (a new archive, or a column added to the schema since: its old rows read as the fill value)."""
    windows = _columns(root, WINDOW_COLUMNS, WINDOW, "window_start")
    table = _columns(root.require_group(PROVENANCE_GROUP), FRAGMENT_COLUMNS, FRAGMENT, "obsid")
    return windows, table


def _write(array: zarr.Array, rows: np.ndarray, values: np.ndarray) -> None:
    """A slice write when the rows are consecutive (the common append), else orthogonal."""
    if len(rows) == 0:
        return
    if rows[-1] - rows[0] + 1 == len(rows):
        array[int(rows[0]) : int(rows[-1]) + 1] = values
    else:
        array.set_orthogonal_selection((rows,), values)


def _reshape(columns: dict[str, zarr.Array], placement: Placement, n_rows: int) -> None:
    """Grow before new rows land, or move tail rows into unfilled slots (the shrinking case)."""
    for array in columns.values():
        if placement.length > n_rows:
            array.resize((placement.length, *array.shape[1:]))
        elif len(placement.move_to):
            values = array.get_orthogonal_selection((placement.move_from,))
            array.set_orthogonal_selection((placement.move_to,), values)


def _shrink(columns: dict[str, zarr.Array], placement: Placement) -> None:
    for array in columns.values():
        if placement.length < array.shape[0]:
            array.resize((placement.length, *array.shape[1:]))


@dataclass(frozen=True)
class Written:
    added: int  # obsids new to the archive
    replaced: int  # obsids whose rows were replaced
    n_obsids: int
    n_windows: int


def write_publish(
    root: zarr.Group,
    markers: Sequence[dict[str, Any]],
    load: Callable[[Sequence[dict[str, Any]]], Iterator[dict[str, np.ndarray]]],
) -> Written:
    """Put the rows of ``markers`` (one per obsid, sorted by obsid) into ``root``.

    ``load`` yields each marker's rows (schema names, window_start order) in marker order; only
    BATCH_WINDOWS rows are held at once."""
    windows, table = arrays(root)
    n_obsids, n_rows = table["obsid"].shape[0], windows["window_start"].shape[0]
    known = table["obsid"][...] if n_obsids else np.empty(0, dtype=str)
    index = {str(o): i for i, o in enumerate(known)}
    replaced = [m for m in markers if m["obsid"] in index]
    # Old rows to drop: read the obsid column only when some replaced obsid had rows.
    dropped = np.empty(0, dtype=np.int64)
    if any(int(table["n_windows"][index[m["obsid"]]]) for m in replaced):
        gone = [m["obsid"] for m in replaced]
        dropped = np.flatnonzero(np.isin(windows["obsid"][...], gone))
    rows = place(n_rows, dropped, sum(int(m["n_windows"]) for m in markers))
    _reshape(windows, rows, n_rows)
    offset, batch, held = 0, [], 0
    for values in load(markers):
        batch.append(values)
        held += len(values["window_start"])
        if held >= BATCH_WINDOWS:
            offset = _write_rows(windows, batch, rows.targets, offset)
            batch, held = [], 0
    _write_rows(windows, batch, rows.targets, offset)
    _shrink(windows, rows)

    slots = place(n_obsids, np.empty(0, dtype=np.int64), len(markers) - len(replaced))
    fresh = iter(slots.targets)
    targets = np.array([index[m["obsid"]] if m["obsid"] in index else next(fresh) for m in markers])
    order = np.argsort(targets, kind="stable")
    for field, array in table.items():
        if slots.length > n_obsids:
            array.resize((slots.length,))
        column = np.array([markers[i][field] for i in order], dtype=array.dtype)
        _write(array, targets[order], column)
    return Written(
        added=len(markers) - len(replaced),
        replaced=len(replaced),
        n_obsids=slots.length,
        n_windows=rows.length,
    )


def _write_rows(
    windows: dict[str, zarr.Array],
    batch: list[dict[str, np.ndarray]],
    targets: np.ndarray,
    offset: int,
) -> int:
    if not batch:
        return offset
    n = sum(len(values["window_start"]) for values in batch)
    where = targets[offset : offset + n]
    for name, array in windows.items():
        _write(array, where, np.concatenate([values[name] for values in batch]))
    return offset + n

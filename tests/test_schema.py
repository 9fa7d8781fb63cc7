"""The row schema: one table of columns, checked on the way in; storage never imports science."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import zarr

from batglitch.science.config import detector_plane
from batglitch.standins.rows import fragment
from batglitch.store.archive import Archive
from batglitch.store.reader import open_archive
from batglitch.store.schema import (
    DIM_SIZES,
    FLAG_ENABLED,
    FLAG_UNKNOWN,
    FRAGMENT_COLUMNS,
    IMAGE_COLUMNS,
    TABLE_COLUMNS,
    WINDOW_COLUMNS,
    check_rows,
    detector_flags,
)


def rows(n: int) -> dict[str, np.ndarray]:
    """Rows of every column but obsid (the store fills it), zeros of the listed shapes."""
    return {
        name: np.zeros((n, *column.shape), dtype=column.numpy_dtype)
        for name, column in WINDOW_COLUMNS.items()
        if name != "obsid"
    }


def test_every_column_has_a_long_name_and_known_dims():
    for column in (*WINDOW_COLUMNS.values(), *FRAGMENT_COLUMNS.values()):
        assert column.attrs["long_name"]
        assert set(column.dims) <= DIM_SIZES.keys()
    assert set(IMAGE_COLUMNS) | set(TABLE_COLUMNS) == set(WINDOW_COLUMNS)
    assert WINDOW_COLUMNS["dpi"].shape == (286, 173)
    assert WINDOW_COLUMNS["dpi_lowres"].shape == (16, 16, 2)
    assert WINDOW_COLUMNS["window_start_utc"].attrs["units"].startswith("seconds since 2001-01-01")


def test_check_rows_fills_the_obsid_and_casts_to_the_schema():
    given = rows(3)
    given["n_events"] = np.array([1.0, 2.0, 3.0])
    checked = check_rows("00012345001", given)
    assert list(checked) == list(WINDOW_COLUMNS)
    assert list(checked["obsid"]) == ["00012345001"] * 3
    assert checked["n_events"].dtype == np.int64
    assert check_rows("00012345001", rows(0))["dpi"].shape == (0, 286, 173)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r.pop("snr_low"), "column 'snr_low' is missing"),
        (lambda r: r.update(colour=np.zeros(2)), r"columns \['colour'\] are not in the archive"),
        (lambda r: r.update(dpi=np.zeros((2, 16, 16))), "column 'dpi' has shape"),
        (lambda r: r.update(n_events=np.zeros(3)), "column 'n_events' has shape"),
    ],
)
def test_check_rows_names_the_obsid_and_the_column_it_refuses(change, message):
    given = rows(2)
    change(given)
    with pytest.raises(ValueError, match=f"obsid 00012345001: {message}"):
        check_rows("00012345001", given)


def test_storage_code_does_not_import_the_science_modules():
    code = (
        "import sys, batglitch.store.archive, batglitch.store.schema, batglitch.store.keys\n"
        "print(sorted(m for m in sys.modules if m.startswith('batglitch.science')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_column_added_since_reads_as_its_fill_value_in_older_rows(tmp_path):
    """An archive published before detector_flags existed: the next publish adds the column,
    the older rows read 0 (UNKNOWN: they never claim a detector enabled), the new rows theirs."""
    archive = Archive(str(tmp_path / "a"))
    archive.write_fragment(fragment("00012345001", 3))
    archive.publish()
    session = archive.repository().writable_session("main")
    del zarr.open_group(session.store, mode="r+")["detector_flags"]  # as made before the column
    session.commit("an archive from before detector_flags")
    assert "detector_flags" not in open_archive(archive.url)

    new = fragment("00012345002", 2)
    enabled = detector_flags(detector_plane(), detector_plane()[None], np.zeros(2))
    new.rows["detector_flags"] = enabled
    archive.write_fragment(new)
    archive.publish()
    ds = open_archive(archive.url)
    assert (ds.detector_flags.sel(obsid="00012345001").values == FLAG_UNKNOWN).all()
    assert np.array_equal(ds.detector_flags.sel(obsid="00012345002").values, enabled)
    assert (enabled == FLAG_ENABLED).sum() == 2 * 32_768

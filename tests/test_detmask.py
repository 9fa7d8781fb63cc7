"""Detector enable/disable maps: both forms HEASoft reads, its row rule, and the flags rows keep."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from batglitch.errors import EventFileError
from batglitch.science.config import N_DETX, N_DETY, detector_plane
from batglitch.science.detmask import parse_enable_maps
from batglitch.standins.synth import SynthSpec, enable_map_bytes, event_file_bytes
from batglitch.store.schema import (
    FLAG_DISABLED,
    FLAG_ENABLED,
    FLAG_GAP,
    FLAG_UNKNOWN,
    WINDOW_COLUMNS,
    detector_flags,
)

REAL_MAP = Path(__file__).resolve().parents[2] / "shared" / "data" / "bat_detmask_example.fits"
OBSID = "00012345000"


def synthetic_mask(seed: int) -> np.ndarray:
    """The patchy mask a synthetic event file is made with (bool [DETX, DETY])."""
    spec = SynthSpec(duration=2.0, rate_hz=50.0, n_glitches=0, n_gti=1, mask_seed=seed)
    return event_file_bytes(spec)[1].enabled


def test_the_real_example_map_reads_in_the_dpi_layout():
    """../shared/data/README.md: 14,932 of 32,768 detectors enabled, gaps never."""
    if not REAL_MAP.is_file():
        pytest.skip("real reference data (../shared/data) not present")
    maps = parse_enable_maps(REAL_MAP.read_bytes(), str(REAL_MAP))
    assert maps.enabled.shape == (1, N_DETX, N_DETY) and maps.enabled.dtype == bool
    assert maps.enabled.sum() == 14_932
    assert not maps.enabled[0][~detector_plane()].any()
    assert not maps.enabled[0, 16:18].any() and not maps.enabled[0, :, 8:11].any()  # first gaps
    assert maps.at(np.array([0.0, 7e8])).tolist() == [0, 0]  # one image: in force always
    flags = detector_flags(detector_plane(), maps.enabled, np.zeros(2))
    assert flags.shape == (2, N_DETX, N_DETY)
    assert (flags[1] == FLAG_ENABLED).sum() == 14_932
    assert (flags[1] == FLAG_DISABLED).sum() == 32_768 - 14_932
    assert (flags[1] == FLAG_GAP).sum() == N_DETX * N_DETY - 32_768


@pytest.mark.parametrize(
    ("dtype", "bzero", "off"),
    [(np.float32, None, 1.0), (np.int16, 32768, 7)],
    ids=["float", "bzero"],
)
def test_an_image_map_reads_in_any_numeric_type_with_its_scaling(dtype, bzero, off):
    """The image form (../shared/data's example is float64): 0 enabled, anything else off."""
    enabled = synthetic_mask(4)
    image = np.where(enabled.T, 0, off).astype(dtype)  # [DETY, DETX]
    hdu = fits.PrimaryHDU(image)
    if bzero is not None:  # stored as BZERO-shifted integers, read back as the values above
        hdu.scale("int16", bzero=bzero)
    raw = io.BytesIO()
    hdu.writeto(raw)
    maps = parse_enable_maps(raw.getvalue(), "image.fits")
    assert maps.times.tolist() == [-np.inf] and np.array_equal(maps.enabled[0], enabled)


def test_a_table_of_maps_picks_the_one_in_force_as_batdetmask_does():
    """The last row (in file order) that starts before the time, else the first row."""
    masks = np.stack([synthetic_mask(s) for s in (1, 2, 3)])
    raw = enable_map_bytes(OBSID, [100.0, 200.0, 300.0], masks)
    maps = parse_enable_maps(raw, "sw00012345000bdecb.hk.gz")
    assert maps.obsid == OBSID and maps.times.tolist() == [100.0, 200.0, 300.0]
    assert np.array_equal(maps.enabled, masks)
    at = maps.at(np.array([50.0, 100.0, 100.5, 200.0, 250.0, 301.0]))
    assert at.tolist() == [0, 0, 0, 0, 1, 2]
    # rows out of time order: file order decides, as in batdetmask's loop
    shuffled = parse_enable_maps(enable_map_bytes(OBSID, [300.0, 100.0], masks[:2]), "m")
    assert shuffled.at(np.array([150.0, 350.0])).tolist() == [1, 1]


def test_flags_without_a_map_are_unknown_and_gaps_still_gaps():
    flags = detector_flags(detector_plane(), None, np.zeros(3))
    assert flags.shape == (3, N_DETX, N_DETY) and flags.dtype == np.uint8
    assert set(np.unique(flags)) == {FLAG_UNKNOWN, FLAG_GAP}
    assert (flags[0] == FLAG_UNKNOWN).sum() == 32_768
    # UNKNOWN is the fill value of the column in archives made before it: never "enabled"
    assert FLAG_UNKNOWN == 0
    attrs = WINDOW_COLUMNS["detector_flags"].attrs
    meanings = dict(zip(attrs["flag_meanings"].split(), attrs["flag_values"], strict=True))
    assert meanings == {
        "unknown": FLAG_UNKNOWN, "enabled": FLAG_ENABLED, "disabled": FLAG_DISABLED, "gap": FLAG_GAP
    }  # fmt: skip


def table_bytes(*columns: fits.Column) -> bytes:
    raw = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(list(columns))]).writeto(raw)
    return raw.getvalue()


FLAG = np.zeros((1, N_DETX * N_DETY), np.int16)
BAD_MAPS = {
    "an event file": (event_file_bytes(SynthSpec(duration=2.0, n_glitches=0))[0], "FLAG"),
    "truncated": (enable_map_bytes(OBSID, [1.0], synthetic_mask(1)[None])[:300], "truncated"),
    "image of another shape": (
        (lambda b: (fits.PrimaryHDU(np.zeros((N_DETX, N_DETY))).writeto(b), b.getvalue())[1])(
            io.BytesIO()
        ),
        r"not a 286 x 173 map",
    ),
    "no TIME": (table_bytes(fits.Column(name="FLAG", format="49478I", array=FLAG)), "no column"),
    "FLAG of another size": (
        table_bytes(
            fits.Column(name="TIME", format="1D", array=[1.0]),
            fits.Column(name="FLAG", format="100I", array=FLAG[:, :100]),
        ),
        "unsupported format",
    ),
    "FLAG transposed": (
        table_bytes(
            fits.Column(name="TIME", format="1D", array=[1.0]),
            fits.Column(name="FLAG", format="49478I", dim="(173,286)", array=FLAG),
        ),
        r"not a \(286,173\) map",
    ),
    "FLAG as bits": (
        table_bytes(
            fits.Column(name="TIME", format="1D", array=[1.0]),
            fits.Column(name="FLAG", format="49478X", array=np.zeros((1, 49478), bool)),
        ),
        "unsupported format",
    ),
    "a table without maps first": (
        table_bytes(fits.Column(name="TIME", format="1D", array=[1.0])),
        r"HDU 1 has no column\(s\) FLAG",
    ),
    "another obsid's broken map": (
        enable_map_bytes("00099999001", [1.0], synthetic_mask(1)[None])[:3000],
        r"truncated.*\(its header says OBS_ID 00099999001\)",
    ),
    "NaN TIME": (
        table_bytes(
            fits.Column(name="TIME", format="1D", array=[np.nan]),
            fits.Column(name="FLAG", format="49478I", array=FLAG),
        ),
        "non-finite",
    ),
}


@pytest.mark.parametrize("case", BAD_MAPS, ids=list(BAD_MAPS))
def test_a_file_that_is_no_enable_map_is_refused_naming_obsid_and_file(case):
    raw, problem = BAD_MAPS[case]
    with pytest.raises(EventFileError, match=rf"obsid {OBSID}, m\.hk\.gz: .*{problem}"):
        parse_enable_maps(raw, "m.hk.gz", OBSID)

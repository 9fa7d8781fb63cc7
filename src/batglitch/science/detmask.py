"""Detector enable masks in the real format (../shared/data/README.md, bat_detmask_example.fits
from the NITRATES test data): one image HDU [DETY, DETX] = (173, 286), 0 = detector enabled,
anything else disabled or a gap."""

from __future__ import annotations

import numpy as np

from batglitch.errors import EventFileError
from batglitch.science.config import N_DETX, N_DETY
from batglitch.science.events import read_layout

_DTYPES = {8: "u1", 16: ">i2", 32: ">i4", 64: ">i8", -32: ">f4", -64: ">f8"}


def parse_detmask(raw: bytes | memoryview, source: str, obsid: str | None = None) -> np.ndarray:
    """The enabled detectors, bool (286, 173) [DETX, DETY] (the DPI layout), of a mask file
    (gzipped or not): its first (173, 286) image HDU, BSCALE/BZERO applied, 0 meaning enabled."""
    try:
        raw, layout = read_layout(raw, source)
    except EventFileError as exc:
        raise EventFileError(source, exc.problem, obsid) from exc
    for hdu in layout.hdus:
        header = hdu.header
        shape = (header.get("NAXIS"), header.get("NAXIS1"), header.get("NAXIS2"))
        if shape != (2, N_DETX, N_DETY) or header.get("XTENSION", "IMAGE") != "IMAGE":
            continue
        count = N_DETX * N_DETY
        image = np.frombuffer(raw, _DTYPES[header["BITPIX"]], count, hdu.data_offset)
        values = image * float(header.get("BSCALE", 1.0)) + float(header.get("BZERO", 0.0))
        return (values.reshape(N_DETY, N_DETX) == 0).T  # NaN (blank) is not 0: disabled
    raise EventFileError(
        source, f"no {N_DETY} x {N_DETX} [DETY, DETX] image HDU: not a detector mask", obsid
    )

"""Algorithm parameters in one frozen object; the defaults are the reference workflow's values."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

N_DETX = 286
N_DETY = 173
# BAT geometry (DESIGN.md): 16 x 16 sandwiches of 16 (x) by 8 (y) detectors, pitch 18 in x and 11
# in y; the rest of the 286 x 173 plane is gaps between sandwiches.
N_SIDE = 16  # sandwiches per side of the plane
SANDWICH_NX, SANDWICH_NY = 16, 8  # detectors per sandwich
PITCH_X, PITCH_Y = 18, 11


def detector_plane() -> np.ndarray:
    """(286, 173) bool [DETX, DETY]: True where a detector sits, False in the gaps."""
    x = np.arange(N_DETX) % PITCH_X < SANDWICH_NX
    y = np.arange(N_DETY) % PITCH_Y < SANDWICH_NY
    return x[:, None] & y[None, :]


@dataclass(frozen=True)
class DetectionConfig:
    """Everything that changes which windows are found or how their images are binned.

    Recorded in every archive so a reader knows how each row was made.
    """

    bin_s: float = 0.016
    pad_s: float = 0.024
    grb_window_s: float = 0.064  # the GRB notebook's window: TRIGTIME <= TIME <= TRIGTIME + this
    low_energy_max_kev: float = 25.0
    high_energy_min_kev: float = 50.0
    z_low_min: float = 10.0
    ratio_min: float = 3.0
    lowres_x_edges: tuple[float, ...] = (*range(0, 271, 18), 285)
    lowres_y_edges: tuple[float, ...] = (*range(0, 166, 11), 172)
    lowres_energy_edges: tuple[float, ...] = (15.0, 50.0, 350.0)
    lightcurve_bins: int = (
        64  # 16 ms bins of context stored around each window (not in the reference)
    )

    @property
    def lowres_shape(self) -> tuple[int, int, int]:
        """(sand_y, sand_x, energy_band), the axis order of the reference low-resolution arrays."""
        return (
            len(self.lowres_y_edges) - 1,
            len(self.lowres_x_edges) - 1,
            len(self.lowres_energy_edges) - 1,
        )

    def as_attrs(self) -> dict[str, float | list[float]]:
        """JSON-ready parameters for archive attributes."""
        items = dataclasses.asdict(self).items()
        return {k: list(v) if isinstance(v, tuple) else v for k, v in items}


def edges_array(edges: tuple[float, ...]) -> np.ndarray:
    """Bin edges as the float64 array numpy's histogram functions would see."""
    return np.asarray(edges, dtype=np.float64)

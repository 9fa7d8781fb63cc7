"""The detection parameters: reference defaults, derived shapes, JSON-ready attributes."""

from __future__ import annotations

import dataclasses
import json

import pytest

from batglitch.science.config import DetectionConfig


def test_defaults_are_the_reference_values():
    config = DetectionConfig()
    assert (config.bin_s, config.pad_s) == (0.016, 0.024)
    assert (config.low_energy_max_kev, config.high_energy_min_kev) == (25.0, 50.0)
    assert (config.z_low_min, config.ratio_min) == (10.0, 3.0)
    assert config.lowres_x_edges == (
        0,
        18,
        36,
        54,
        72,
        90,
        108,
        126,
        144,
        162,
        180,
        198,
        216,
        234,
        252,
        270,
        285,
    )
    assert config.lowres_y_edges == (
        0,
        11,
        22,
        33,
        44,
        55,
        66,
        77,
        88,
        99,
        110,
        121,
        132,
        143,
        154,
        165,
        172,
    )
    assert config.lowres_energy_edges == (15.0, 50.0, 350.0)
    assert config.lowres_shape == (16, 16, 2)  # [sand_y, sand_x, band]


def test_attrs_round_trip_through_json_and_are_frozen():
    config = DetectionConfig(bin_s=0.008, lowres_energy_edges=(15.0, 25.0, 50.0, 350.0))
    attrs = json.loads(json.dumps(config.as_attrs()))
    rebuilt = DetectionConfig(
        **{k: tuple(v) if isinstance(v, list) else v for k, v in attrs.items()}
    )
    assert rebuilt == config and rebuilt.lowres_shape == (16, 16, 3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.bin_s = 0.016  # type: ignore[misc]

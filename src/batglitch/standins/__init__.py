"""Local stand-ins for the external systems (Swift API, HEASARC archive) for tests and offline runs."""

from batglitch.standins.demo import demo_observations, fill_demo_heasarc
from batglitch.standins.heasarc import fill_heasarc
from batglitch.standins.swift_api import (
    FakeDump,
    FakeObservation,
    FakeSwiftAPI,
    Fault,
    Knobs,
    fake_observations,
    utcf_at,
)

__all__ = [
    "FakeDump",
    "FakeObservation",
    "FakeSwiftAPI",
    "Fault",
    "Knobs",
    "demo_observations",
    "fake_observations",
    "fill_demo_heasarc",
    "fill_heasarc",
    "utcf_at",
]

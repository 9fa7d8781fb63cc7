"""Console output: one line per log record, progress as plain lines when nobody watches."""

from __future__ import annotations

import logging

import pytest

from batglitch import console


@pytest.fixture
def piped(monkeypatch, capsys):
    """stderr is a pipe (capsys), as under make, CI or CloudWatch; logs go through our handler."""
    console.configure(logging.INFO)
    yield capsys
    console.configure(logging.WARNING)


def test_piped_progress_is_periodic_plain_lines(piped, monkeypatch):
    clock = iter(float(t) for t in range(0, 1000, 4))  # every update 4 s after the one before
    monkeypatch.setattr(console.time, "monotonic", lambda: next(clock))
    with console.Progress("obsids", 12, "obsid") as bar:
        for _ in range(12):
            bar.update()
    err = piped.readouterr().err
    assert "\r" not in err and "\x1b" not in err
    lines = err.splitlines()
    assert 3 <= len(lines) <= 8  # one per 10 s of about a minute, and the last
    assert all(" INFO obsids: " in line for line in lines)
    assert "obsids: 12/12 (100%)" in lines[-1]


def test_disabled_progress_says_nothing(piped):
    with console.Progress("obsids", 3, enabled=False) as bar:
        bar.update(3)
    assert piped.readouterr().err == ""


def test_a_logged_exception_is_one_line_unless_verbose(piped):
    log = logging.getLogger("batglitch.test")
    try:
        raise ValueError("bad value")
    except ValueError:
        log.exception("obsid 00000000001: could not record")
    [line] = piped.readouterr().err.splitlines()
    assert line.endswith("ERROR obsid 00000000001: could not record (ValueError: bad value)")
    console.configure(logging.INFO, verbose=True)
    try:
        raise ValueError("bad value")
    except ValueError:
        log.exception("again")
    assert "Traceback (most recent call last)" in piped.readouterr().err


def test_library_warnings_become_one_log_line(piped):
    import warnings

    warnings.warn("something odd", UserWarning, stacklevel=1)
    [line] = piped.readouterr().err.splitlines()
    assert "WARNING UserWarning: something odd (" in line and "test_console.py:" in line

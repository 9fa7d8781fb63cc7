"""What a person at a terminal sees: one-line log records and one progress display per stage.

The CLI configures this once per command; pool processes repeat it with the parent's level so
their records look the same. Lambda keeps its own JSON logs (handler/logs.py).
"""

from __future__ import annotations

import logging
import sys
import time
import warnings
from types import TracebackType
from typing import TextIO

logger = logging.getLogger("batglitch")
LOG_EVERY_S = 10.0  # a piped log gets a progress line this often, not a bar redraw per update


class OneLineFormatter(logging.Formatter):
    """Every record on one line; an exception adds its type and message, its traceback only
    when verbose (a traceback is for whoever debugs batglitch, not for whoever runs it)."""

    def __init__(self, verbose: bool) -> None:
        super().__init__("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S")
        self.verbose = verbose

    def format(self, record: logging.LogRecord) -> str:
        if self.verbose or not record.exc_info:
            return super().format(record)
        # another handler may already have put the traceback into the record: leave it out
        saved = record.exc_info, record.exc_text
        record.exc_info = record.exc_text = None
        try:
            line = super().format(record)
        finally:
            record.exc_info, record.exc_text = saved
        exc = saved[0][1]
        return f"{line} ({type(exc).__name__}: {exc})" if exc is not None else line


class _OurHandler(logging.StreamHandler):
    """The handler configure() installs (a second configure replaces only its own); it writes
    to whatever sys.stderr is at the time, as logging's last-resort handler does."""

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _: TextIO) -> None:
        pass


def _warning_to_log(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """Library warnings as one log line with their origin, instead of two bare stderr lines."""
    logging.getLogger("py.warnings").warning(
        "%s: %s (%s:%d)", category.__name__, message, filename, lineno
    )


def configure(level: int = logging.INFO, *, verbose: bool = False) -> None:
    """One handler on stderr for everything: batglitch at `level`, other libraries at WARNING.

    stdout stays for results (tables, JSON, paths) so they can be piped on their own.
    """
    handler = _OurHandler()
    handler.setFormatter(OneLineFormatter(verbose))
    root = logging.getLogger()
    root.handlers = [h for h in root.handlers if not isinstance(h, _OurHandler)] + [handler]
    root.setLevel(logging.WARNING)
    logger.setLevel(level)
    warnings.showwarning = _warning_to_log


def watched() -> bool:
    """True when a person watches the output live: a terminal, or a Jupyter kernel's widgets."""
    if sys.stderr.isatty():
        return True
    from tqdm.auto import tqdm as auto_tqdm
    from tqdm.notebook import tqdm_notebook

    return issubclass(auto_tqdm, tqdm_notebook)


class Progress:
    """One stage's progress: a tqdm.auto bar when watched, a log line every LOG_EVERY_S seconds
    (and one at the end) when piped, nothing when disabled. A context manager: always closed."""

    def __init__(self, desc: str, total: int, unit: str = "it", *, enabled: bool = True) -> None:
        self.desc, self.total, self.unit = desc, total, unit
        self.done = 0
        self.enabled = enabled
        self._started = self._logged_at = time.monotonic()
        self._bar = None
        if enabled and watched():
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=unit, leave=True)

    def update_to(self, done: int, total: int | None = None) -> None:
        """Set the count of finished items (and the total, when it grows while planning)."""
        if total is not None and total != self.total:
            self.total = total
            if self._bar is not None:
                self._bar.total = total
        if self._bar is not None:
            self._bar.update(done - self.done)
        self.done = done
        if self._bar is None and self.enabled:
            now = time.monotonic()
            if now - self._logged_at >= LOG_EVERY_S:
                self._logged_at = now
                self._log()

    def update(self, n: int = 1) -> None:
        self.update_to(self.done + n)

    def _log(self) -> None:
        elapsed = time.monotonic() - self._started
        share = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        logger.info("%s: %d/%d%s, %.0f s", self.desc, self.done, self.total, share, elapsed)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self.enabled and self.total:
            self._log()
        self.enabled = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

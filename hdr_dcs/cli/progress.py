"""A small progress bar for long jobs: redraws in place on a terminal, prints a few
lines otherwise (logs, CI), and always ends with a summary line."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """``with Progress(total, "simulate") as p: ... p.update(1)``."""

    def __init__(self, total: int, label: str, stream: TextIO | None = None, unit: str = "frames") -> None:
        self.total, self.label, self.unit = max(total, 1), label, unit
        self.stream = stream or sys.stderr
        self.done = 0
        self._start = time.perf_counter()
        self._last_line = -1
        self._tty = self.stream.isatty()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.finish()

    def update(self, n: int = 1) -> None:
        self.done += n
        if self._tty:
            self._draw("\r", "")
        else:
            quarter = 4 * self.done // self.total
            if quarter != self._last_line:
                self._last_line = quarter
                self._draw("", "\n")

    def _draw(self, prefix: str, suffix: str) -> None:
        elapsed = time.perf_counter() - self._start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else 0.0
        width = 24
        filled = int(width * min(self.done, self.total) / self.total)
        bar = "#" * filled + "." * (width - filled)
        self.stream.write(f"{prefix}{self.label} [{bar}] {self.done}/{self.total} {self.unit} "
                          f"{rate:.1f}/s eta {eta:.0f}s{suffix}")
        self.stream.flush()

    def finish(self) -> None:
        if self._tty:
            self.stream.write("\n")
        elapsed = time.perf_counter() - self._start
        self.stream.write(f"{self.label}: {self.done} {self.unit} in {elapsed:.1f} s\n")
        self.stream.flush()

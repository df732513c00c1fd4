"""Lines for long loops that are not attacks (decoding an archive's images, extracting it, the
landscape and boundary analyses): `WHAT: i/n UNIT (elapsed, ETA)` on stderr at most every `every`
seconds, plus the last one, so that minutes of work never look like a hang. Nothing is printed for
work that ends before the first interval. The ground floor: imports nothing from robustfront.

    tick = Ticker("decoding train images of cifar10.tar.gz", len(paths), "images")
    for p in paths: ...; tick.step()
    tick.done()
"""
from __future__ import annotations

import os
import sys
import time


def _clock(s: float) -> str:
    s = int(round(s))
    return f"{s // 60}m{s % 60:02d}s"


class Ticker:
    def __init__(self, what: str, total: int, unit: str = "", *, every: float = 10.0, write=None):
        self.what, self.total, self.unit = what, int(total), unit
        self.every = float(os.environ.get("ROBUSTFRONT_PROGRESS_EVERY") or every)
        self.write = write or (lambda line: print(line, file=sys.stderr, flush=True))
        self.count, self.spoke = 0, False
        self.start = self.last = time.monotonic()

    def line(self) -> str:
        took = time.monotonic() - self.start
        eta = (f", ETA {_clock(took / self.count * (self.total - self.count))}"
               if 0 < self.count < self.total else "")
        of = f"/{self.total}" if self.total else ""   # total 0: not known in advance
        return f"{self.what}: {self.count}{of} {self.unit} ({_clock(took)}{eta})".replace("  ", " ")

    def step(self, k: int = 1) -> None:
        self.count += k
        now = time.monotonic()
        if now - self.last >= self.every and (self.count < self.total or not self.total):
            self.last, self.spoke = now, True
            self.write(self.line())

    def done(self) -> None:
        """The closing line, when anything was said before it (a quick loop stays silent)."""
        if self.spoke:
            self.write(self.line())


__all__ = ["Ticker"]

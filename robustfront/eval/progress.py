"""Progress lines for long evaluations: images done, images/s and ETA, at most one line every few
seconds (through the caller's `log`, which prints on stderr), so that a 15-minute AutoAttack is
never silent."""
from __future__ import annotations

import time


class Progress:
    """`p = Progress("eps=8/255 pgd20", n, log)`, then `p.update(k)` per batch of k images, or
    `p.note(text)` where only the official runner knows how far it is; `log=None` is silent."""

    def __init__(self, label: str, total: int, log=None, every_s: float = 5.0):
        self.label, self.total, self.log, self.every_s = label, max(int(total), 1), log, every_s
        self.done, self.t0 = 0, time.perf_counter()
        self.last = self.t0

    def _due(self) -> bool:
        now = time.perf_counter()
        if self.log is None or now - self.last < self.every_s:
            return False
        self.last = now
        return True

    def update(self, n: int) -> None:
        self.done = min(self.total, self.done + int(n))
        if self.done < self.total and self._due():
            rate = self.done / max(time.perf_counter() - self.t0, 1e-9)
            eta = (self.total - self.done) / rate if rate > 0 else float("inf")
            self.log(f"  {self.label}: {self.done}/{self.total} images, {rate:.1f} img/s, ETA {eta:.0f}s")

    def note(self, text: str) -> None:
        if self._due():
            self.log(f"  {self.label}: {text} ({time.perf_counter() - self.t0:.0f}s so far)")


__all__ = ["Progress"]

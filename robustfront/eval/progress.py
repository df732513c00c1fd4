"""A progress line per attack on stderr: images done of the attack's total, images/s and ETA.

    p = Progress("apgd-t", total=480, label="autoattack[0/2]")
    p.begin()             # "autoattack[0/2] apgd-t: starting on 480 images"
    with p.watch(model):  # inside a batch: a line every `every` s counting the model's passes
        p.update(96)      # printed at most every `every` seconds, and always when the attack is done
    p.done("robust after APGD-T: 51.20%")

The passes are counted by a forward hook on the model, so every attack reports from inside its
batch (iterations, restarts, targets, queries all run the model) without any attack, ours or the
official AutoAttack code, knowing about it. ROBUSTFRONT_PROGRESS_EVERY=SECONDS sets the interval.
"""
from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager


def to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _clock(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


class Progress:
    """Counts images through one attack; `write` receives each line (stderr by default, None: silent)."""

    def __init__(self, attack: str, total: int, *, label: str = "autoattack", every: float = 10.0,
                 write=to_stderr, clock=time.monotonic):
        every = float(os.environ.get("ROBUSTFRONT_PROGRESS_EVERY") or every)
        self.attack, self.total, self.label, self.every = attack, int(total), label, every
        self.write = write
        self.clock = clock
        self.count = 0
        self.start = self.last = clock()

    def rate(self) -> float:
        elapsed = self.clock() - self.start
        return self.count / elapsed if elapsed > 0 else 0.0

    def line(self) -> str:
        r = self.rate()
        eta = _clock((self.total - self.count) / r) if r > 0 else "?"
        return (f"{self.label} {self.attack}: {self.count}/{self.total} images, {r:.2f} img/s, "
                f"ETA {eta}")

    def update(self, k: int) -> None:
        self.count += int(k)
        now = self.clock()
        if self.write and now - self.last >= self.every and self.count < self.total:
            self.last = now
            self.write(self.line())

    def begin(self) -> None:
        """The attack's start line: the user knows what runs before its first batch ends."""
        if self.write and self.total:
            self.write(f"{self.label} {self.attack}: starting on {self.total} images")

    @contextmanager
    def watch(self, model):
        """While inside: a line every `every` s with the passes the model has made in this batch."""
        if not self.write or model is None:
            yield
            return
        passes, t0 = [0], self.clock()

        def hook(module, args):
            passes[0] += 1
            self.note(f"{self.count}/{self.total} images done; the batch in progress has run the model {passes[0]} "
                      f"times in {_clock(self.clock() - t0)}")
        handle = model.register_forward_pre_hook(hook)
        try:
            yield
        finally:
            handle.remove()

    def note(self, text: str) -> None:
        """A line between updates, at most one per `every` seconds (e.g. from inside a long batch)."""
        now = self.clock()
        if self.write and now - self.last >= self.every:
            self.last = now
            self.write(f"{self.label} {self.attack}: {text} ({_clock(now - self.start)} so far)")

    def done(self, note: str = "") -> None:
        if self.write and self.total == 0:  # everything was read back from a state folder (or nothing survived)
            self.write(f"{self.label} {self.attack}: nothing left to attack{'; ' + note if note else ''}")
        elif self.write:
            took = self.clock() - self.start
            self.write(f"{self.label} {self.attack}: {self.count}/{self.total} images in {_clock(took)} "
                       f"({self.rate():.2f} img/s){'; ' + note if note else ''}")


__all__ = ["Progress", "to_stderr"]

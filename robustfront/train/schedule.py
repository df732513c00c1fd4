"""Learning-rate schedules as pure functions of training progress, set per step."""
from __future__ import annotations

import math


class Schedule:
    """lr(step) for `total` steps of `steps_per_epoch`; state is only the step counter."""

    def __init__(self, kind: str, base_lr: float, total: int, steps_per_epoch: int, *,
                 milestones=(0.5, 0.75), decay: float = 0.1, warmup: float = 0.3, epochs: int = 1):
        self.kind, self.base_lr, self.total = kind, base_lr, max(total, 1)
        self.steps_per_epoch, self.decay, self.warmup = steps_per_epoch, decay, warmup
        # milestones < 1 are fractions of the run, others are epochs
        self.milestones = sorted(m * epochs if m < 1 else m for m in milestones)
        self.step = 0

    def lr(self, step: int | None = None) -> float:
        s = self.step if step is None else step
        t = min(s / self.total, 1.0)
        if self.kind == "constant":
            return self.base_lr
        if self.kind == "multistep":
            epoch = s / self.steps_per_epoch
            return self.base_lr * self.decay ** sum(epoch >= m for m in self.milestones)
        if self.kind == "cosine":
            return self.base_lr * 0.5 * (1 + math.cos(math.pi * t))
        if self.kind == "onecycle":  # linear warm-up, then cosine annealing to zero
            if t < self.warmup:
                return self.base_lr * (s + 1) / (self.warmup * self.total)
            return self.base_lr * 0.5 * (1 + math.cos(math.pi * (t - self.warmup) / (1 - self.warmup)))
        raise ValueError(f"schedule={self.kind!r} is not known; allowed: multistep, cosine, onecycle, constant")

    def apply(self, optimizer) -> float:
        lr = self.lr()
        for group in optimizer.param_groups:
            group["lr"] = lr
        self.step += 1
        return lr

    def state_dict(self) -> dict:
        return {"step": self.step}

    def load_state_dict(self, state: dict) -> None:
        self.step = int(state["step"])

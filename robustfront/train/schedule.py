"""Learning-rate schedules as pure functions of training progress, set per step."""
from __future__ import annotations

import math

from ..validation import check_choice, check_number

KINDS = ("multistep", "cosine", "onecycle", "onecycle_epoch", "constant")


def onecycle_lr(i: int, n: int, max_lr: float, pct_start: float, div_factor: float, final_div_factor: float) -> float:
    """Step i of n of a one-cycle schedule with two cosine phases, as torch's OneCycleLR (three_phase
    False, anneal "cos"): from max_lr/div_factor up to max_lr at step pct_start·n - 1, then down to
    (max_lr/div_factor)/final_div_factor at step n - 1."""
    initial = max_lr / div_factor
    lowest = initial / final_div_factor
    peak = float(pct_start * n) - 1
    phases = ((0.0, peak, initial, max_lr), (peak, float(n - 1), max_lr, lowest))
    for k, (start, end, lr_from, lr_to) in enumerate(phases):
        if i <= end or k == len(phases) - 1:
            pct = (i - start) / (end - start) if end > start else 1.0
            return lr_to + (lr_from - lr_to) / 2.0 * (math.cos(math.pi * pct) + 1)
    raise AssertionError("unreachable")


class Schedule:
    """lr(step) for `total` steps of `steps_per_epoch`; state is only the step counter.

    kinds: "multistep" (× decay at each milestone), "cosine" (to zero), "onecycle" (linear warm-up
    over `warmup` of the steps, then cosine to zero, per step), "onecycle_epoch" (torch's OneCycleLR
    stepped once per epoch over `epochs` steps: CA-AT's reference, OneCycleLR(max_lr=lr,
    pct_start=0.025, total_steps=epochs), warm-up from lr/div_factor, end at
    lr/div_factor/final_div_factor; the lr is constant within an epoch), "constant".
    """

    def __init__(self, kind: str, base_lr: float, total: int, steps_per_epoch: int, *,
                 milestones=(0.5, 0.75), decay: float = 0.1, warmup: float = 0.3, epochs: int = 1,
                 pct_start: float | None = None, div_factor: float = 25.0, final_div_factor: float = 1e4):
        self.kind = check_choice("schedule", kind, KINDS)
        self.base_lr, self.total = base_lr, max(total, 1)
        self.steps_per_epoch, self.decay, self.warmup = steps_per_epoch, decay, warmup
        self.epochs = max(int(epochs), 1)
        # milestones < 1 are fractions of the run, others are epochs
        self.milestones = sorted(m * epochs if m < 1 else m for m in milestones)
        self.pct_start = warmup if pct_start is None else pct_start
        self.div_factor, self.final_div_factor = div_factor, final_div_factor
        if self.kind == "onecycle_epoch":
            check_number("pct_start", self.pct_start, 0.0, strict=True, hi=1.0)
            check_number("div_factor", div_factor, 0.0, strict=True)
            check_number("final_div_factor", final_div_factor, 0.0, strict=True)
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
        if self.kind == "onecycle_epoch":
            epoch = min(s // max(self.steps_per_epoch, 1), self.epochs - 1)
            return onecycle_lr(epoch, self.epochs, self.base_lr, self.pct_start, self.div_factor,
                               self.final_div_factor)
        # "onecycle": linear warm-up, then cosine annealing to zero
        if t < self.warmup:
            return self.base_lr * (s + 1) / (self.warmup * self.total)
        return self.base_lr * 0.5 * (1 + math.cos(math.pi * (t - self.warmup) / (1 - self.warmup)))

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

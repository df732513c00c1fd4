"""Gradient combiners turn named loss terms (or their gradients) into one update.

A combiner knows nothing about attacks or losses. When `separate` is False the
trainer calls `total_loss` and does one backward; otherwise it computes one
gradient list per term in `terms` and calls `combine`.
"""
from __future__ import annotations

import torch
from torch import Tensor


class Combiner:
    separate: bool = False
    terms: tuple[str, ...] = ()

    def on_epoch(self, epoch: int) -> None:
        """Called by the trainer at the start of every epoch (0-based); a no-op unless overridden."""

    def after_backward(self, model) -> None:
        """Called after the update is written into .grad, before the optimizer step; a no-op here."""

    def total_loss(self, losses: dict[str, Tensor]) -> Tensor:
        raise NotImplementedError

    def combine(self, grads: dict[str, list[Tensor]]) -> list[Tensor]:
        raise NotImplementedError

    def pop_diagnostics(self) -> dict[str, float]:
        return {}


class Sum(Combiner):
    """Plain sum of every term: one backward of the total loss."""

    def total_loss(self, losses: dict[str, Tensor]) -> Tensor:
        return torch.stack(list(losses.values())).sum()


class Weighted(Combiner):
    """λ·clean + (1-λ)·adv: the weighted-average ("vanilla") AT of CA-AT's paper."""

    def __init__(self, lam: float = 0.5):
        if not 0.0 <= lam <= 1.0:
            raise ValueError(f"lam={lam} is out of range; allowed: 0 <= lam <= 1")
        self.lam = float(lam)

    def total_loss(self, losses: dict[str, Tensor]) -> Tensor:
        missing = {"clean", "adv"} - losses.keys()
        if missing:
            raise ValueError(f"the weighted combiner needs terms 'clean' and 'adv'; missing: {sorted(missing)}")
        rest = [v for k, v in losses.items() if k not in ("clean", "adv")]
        total = self.lam * losses["clean"] + (1.0 - self.lam) * losses["adv"]
        return total + torch.stack(rest).sum() if rest else total

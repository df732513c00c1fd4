"""Gradient combiners turn named loss terms (or their gradients) into one update.

A combiner knows nothing about attacks or losses. When `separate` is False the
trainer calls `total_loss` and does one backward; otherwise it computes one
gradient list per term in `terms` and calls `combine`. A combiner with `terms`
needs exactly those slots (`objectives.Slots` maps an objective's terms onto
them); `Sum` has none and takes whatever the objective returns.

Every combiner is a dataclass whose fields are its hyper-parameters (the comment after a field is its
help text), registered by a decorator at the class; runtime state is set in `__post_init__`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..registry import Registry
from ..validation import check_number, invalid

COMBINERS = Registry("combiner")


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


@COMBINERS.register("sum")
@dataclass(eq=False)
class Sum(Combiner):
    """Plain sum of every term (the objective's own loss): one backward of the total loss."""

    def total_loss(self, losses: dict[str, Tensor]) -> Tensor:
        return torch.stack(list(losses.values())).sum()


@COMBINERS.register("weighted")
@dataclass(eq=False)
class Weighted(Combiner):
    """The weighted-average ("vanilla") AT of CA-AT's paper: (1-λ)·clean + λ·adv.

    λ (`lam`) weights the ADVERSARIAL loss, as in CA-AT's figures and reference code
    (`beta·g_a + (1-beta)·g_c`): λ = 0 is standard training, λ = 1 is PGD-AT, the default 0.5 the
    paper's baseline. `clean_weight=w` is the other convention, w·clean + (1-w)·adv (give one of
    the two). Equivalent to weighting the two gradients, since the gradient is linear.
    """
    terms = ("clean", "adv")
    lam: float | None = None           # weight λ of the adversarial loss, in [0, 1] (none: 0.5, or 1 - clean_weight)
    clean_weight: float | None = None  # weight w of the clean loss instead, w·clean + (1-w)·adv (give one of the two)

    def __post_init__(self):
        lam, clean_weight = self.lam, self.clean_weight
        if lam is not None and clean_weight is not None:
            raise invalid("clean_weight", clean_weight, "one of lam (weight of adv) or clean_weight, not both",
                          "given together with lam")
        if clean_weight is not None:
            self.lam = 1.0 - check_number("clean_weight", clean_weight, 0.0, hi=1.0)
        else:
            self.lam = check_number("lam", 0.5 if lam is None else lam, 0.0, hi=1.0)
        self.clean_weight = 1.0 - self.lam   # both conventions readable on the built combiner

    def total_loss(self, losses: dict[str, Tensor]) -> Tensor:
        if set(losses) != {"clean", "adv"}:
            raise ValueError(f"the weighted combiner needs exactly the terms 'clean' and 'adv'; got {sorted(losses)}")
        return (1.0 - self.lam) * losses["clean"] + self.lam * losses["adv"]

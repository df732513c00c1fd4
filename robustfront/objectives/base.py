"""Objectives make adversarial examples and return named loss terms.

An objective is called as `objective(model, x, y) -> (losses, stats)`:
`losses` maps term names ("clean", "adv", ...) to scalar tensors, `stats`
maps names to device-side sums (correct counts, ...) that the trainer
accumulates without a host sync. How terms are mixed is the combiner's job.

Forward passes that produce loss terms run with the model in train mode
(BatchNorm statistics update); attacks put the model in eval mode themselves.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn


class Objective:
    #: names of the loss terms this objective returns
    terms: tuple[str, ...] = ()
    #: augmented views of each image the loader yields (2: x is a tuple (x1, x2), e.g. Cons-AT, RAAT)
    views: int = 1
    #: True when "adv" already contains "clean" (the whole loss, for gradient-surgery combiners):
    #: summing the terms would then count the clean CE twice
    terms_overlap: bool = False

    def __init__(self, attack=None):
        self.attack = attack

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        raise NotImplementedError

    def on_epoch(self, epoch: int) -> None:
        """Called by the trainer at the start of every epoch (0-based); a no-op unless overridden."""

    def after_backward(self, model: nn.Module) -> None:
        """Called after the gradients are computed, before the optimizer step (AWP restores its weights)."""

    def reported_loss(self, losses: dict[str, Tensor]) -> Tensor:
        """The objective's own loss, for the logs of gradient-surgery runs (detached, fp32)."""
        if self.terms_overlap:
            return losses["adv"].detach().float()
        return torch.stack([v.detach().float() for v in losses.values()]).sum()


def correct(logits: Tensor, y: Tensor) -> Tensor:
    """Number of correct predictions, kept on the device (no host sync)."""
    return (logits.detach().argmax(1) == y).sum()

"""Objectives make adversarial examples and return named loss terms.

An objective is called as `objective(model, x, y) -> (losses, stats)`:
`losses` maps term names ("clean", "adv", ...) to scalar tensors, `stats`
maps names to device-side sums (correct counts, ...) that the trainer
accumulates without a host sync. How terms are mixed is the combiner's job.

Forward passes that produce loss terms run with the model in train mode
(BatchNorm statistics update); attacks put the model in eval mode themselves.
"""
from __future__ import annotations

from torch import Tensor, nn


class Objective:
    #: names of the loss terms this objective returns
    terms: tuple[str, ...] = ()

    def __init__(self, attack=None):
        self.attack = attack

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        raise NotImplementedError


def correct(logits: Tensor, y: Tensor) -> Tensor:
    """Number of correct predictions, kept on the device (no host sync)."""
    return (logits.detach().argmax(1) == y).sum()

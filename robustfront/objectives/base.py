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
    #: True when "adv" already contains "clean" (the whole loss, for gradient-surgery combiners):
    #: summing the terms would then count the clean CE twice
    terms_overlap: bool = False

    def __init__(self, attack=None):
        self.attack = attack

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        raise NotImplementedError

    def reported_loss(self, losses: dict[str, Tensor]) -> Tensor:
        """The objective's own loss, for the logs of gradient-surgery runs (detached, fp32)."""
        if self.terms_overlap:
            return losses["adv"].detach().float()
        return torch.stack([v.detach().float() for v in losses.values()]).sum()


def correct(logits: Tensor, y: Tensor) -> Tensor:
    """Number of correct predictions, kept on the device (no host sync)."""
    return (logits.detach().argmax(1) == y).sum()

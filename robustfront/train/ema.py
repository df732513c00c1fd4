"""Exponential moving average of the weights (weight averaging, as in RAAT#)."""
from __future__ import annotations

import copy

import torch


class EMA:
    """ema ← decay·ema + (1-decay)·w after each step from epoch `start`; a plain copy before it.
    Buffers (BatchNorm statistics) are copied, not averaged."""

    def __init__(self, model: torch.nn.Module, decay: float, start: int = 0):
        self.decay, self.start = decay, start
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module, epoch: int) -> None:
        ema_p, p = list(self.model.parameters()), list(model.parameters())
        if epoch < self.start:
            torch._foreach_copy_(ema_p, p)
        else:
            torch._foreach_lerp_(ema_p, p, 1.0 - self.decay)
        for b_ema, b in zip(self.model.buffers(), model.buffers()):
            b_ema.copy_(b)

"""Weight loss landscape along a random filter-normalised Gaussian direction (Li et al., 2018; AGR Fig. 5).

    alphas, losses = loss_landscape_1d(model, x, y)

The direction d has, per filter (a row of a weight's first dimension), the norm of that filter of the
weights; biases and BatchNorm parameters get d = 0, as in the paper. The loss is CE on (x, y), or on
adversarial examples if `attack` is given (recomputed at every point), with the model in eval mode.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from ..ticker import Ticker


def filter_normalised_direction(model, generator: torch.Generator | None = None) -> list[torch.Tensor]:
    dirs = []
    for p in model.parameters():
        if p.dim() <= 1:
            dirs.append(torch.zeros_like(p))
            continue
        d = torch.randn(p.shape, generator=generator, device="cpu").to(p.device, p.dtype)
        d_flat, p_flat = d.flatten(1), p.detach().flatten(1)
        d = (d_flat * (p_flat.norm(dim=1, keepdim=True) / d_flat.norm(dim=1, keepdim=True).clamp_min(1e-12))).view_as(p)
        dirs.append(d)
    return dirs


def loss_landscape_1d(model, x, y, *, alphas=None, seed: int = 0, attack=None, batch_size: int = 500):
    """CE loss at θ + α·d for each α (default 21 points in [-1, 1]). Returns (alphas, losses) lists.

    `model` itself is not changed (a copy is moved along d)."""
    alphas = [i / 10 for i in range(-10, 11)] if alphas is None else list(alphas)
    g = torch.Generator().manual_seed(seed)
    work = copy.deepcopy(model).eval()
    base = [p.detach().clone() for p in work.parameters()]
    dirs = filter_normalised_direction(work, g)
    losses = []
    tick = Ticker("landscape", len(alphas), "points along the direction")
    for a in alphas:
        with torch.no_grad():
            for p, p0, d in zip(work.parameters(), base, dirs):
                p.copy_(p0 + a * d)
        total = 0.0
        for i in range(0, len(y), batch_size):
            xb, yb = x[i:i + batch_size].float(), y[i:i + batch_size]
            if attack is not None:
                xb = attack(work, xb, yb)
            with torch.no_grad():
                total += F.cross_entropy(work(xb).float(), yb, reduction="sum").item()
        losses.append(total / len(y))
        tick.step()
    tick.done()
    return alphas, losses

"""Accuracy under an (optional) attack, batched, without touching parameter gradients."""
from __future__ import annotations

import torch


def correct_mask(model, x, y, attack=None, batch_size: int = 500) -> torch.Tensor:
    """Per-sample bool: is the (attacked) input classified correctly? Model should be in eval mode."""
    out = []
    for i in range(0, len(y), batch_size):
        xb, yb = x[i:i + batch_size], y[i:i + batch_size]
        if attack is not None:
            xb = attack(model, xb, yb)
        with torch.no_grad():
            out.append(model(xb).argmax(1) == yb)
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.bool, device=y.device)


def accuracy(model, x, y, attack=None, batch_size: int = 500) -> float:
    # sync: one read per call
    return correct_mask(model, x, y, attack, batch_size).float().mean().item()

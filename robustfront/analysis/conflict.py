"""Gradient conflict between the clean and the adversarial loss (CA-AT, Xue, Wang, Qin, Pedarsani).

    μ = |g_c|·|g_a|·(1 - cos(g_c, g_a)),

g_c = ∇_θ L(f(x), y), g_a = ∇_θ L(f(x'), y), both flattened over all trainable parameters.
Theorem 1 (experiment in analysis/theorem1.py): μ = O(δ²) for an L2 budget δ and O(d²δ²) for an
L∞ budget δ in dimension d.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

__all__ = ["gradient_conflict"]


def _flat_grad(model: nn.Module, loss_fn: Callable, x: torch.Tensor, y: torch.Tensor,
               params: list[torch.Tensor]) -> tuple[torch.Tensor, float]:
    with torch.enable_grad():
        loss = loss_fn(model(x), y)
        grads = torch.autograd.grad(loss, params, allow_unused=True)
    flat = torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1).double() for p, g in zip(params, grads)])
    return flat, float(loss.detach())


def gradient_conflict(model: nn.Module, loss_fn: Callable, x: torch.Tensor, y: torch.Tensor,
                      x_adv: torch.Tensor) -> dict:
    """Gradient conflict between the clean loss at x and the adversarial loss at x_adv.

    loss_fn(logits, y) -> scalar (e.g. F.cross_entropy). Gradients are taken w.r.t. every
    trainable parameter (`requires_grad`), flattened and concatenated, and reduced in float64.
    The model is used as it is (call model.eval() first for BatchNorm/dropout nets); parameters'
    .grad is not touched.

    Returns floats: mu = |g_c|·|g_a|·(1 - cos), cos, norm_clean = |g_c|, norm_adv = |g_a|,
    loss_clean, loss_adv. 1 - cos is computed as |ĝ_c - ĝ_a|²/2 (unit vectors), which has no
    cancellation for nearly parallel gradients and gives exactly 0 when x_adv equals x. It is
    the same quantity as `ca_at_diagnostics(...)["mu"]` up to rounding. A zero gradient gives
    mu = 0 and cos = 0 (the CA-AT convention).
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model has no trainable parameters; allowed: a model with requires_grad parameters")
    if x.shape != x_adv.shape:
        raise ValueError(f"x has shape {tuple(x.shape)} but x_adv has {tuple(x_adv.shape)}; allowed: equal shapes")
    g_c, loss_c = _flat_grad(model, loss_fn, x, y, params)
    g_a, loss_a = _flat_grad(model, loss_fn, x_adv, y, params)
    nc, na = float(torch.linalg.vector_norm(g_c)), float(torch.linalg.vector_norm(g_a))
    if nc > 0 and na > 0 and math.isfinite(nc) and math.isfinite(na):
        half_chord = 0.5 * float(torch.linalg.vector_norm(g_c / nc - g_a / na) ** 2)  # = 1 - cos, in [0, 2]
        one_minus_cos = min(max(half_chord, 0.0), 2.0)
        cos = 1.0 - one_minus_cos
        mu = nc * na * one_minus_cos
    else:
        cos, mu = 0.0, 0.0
    return {"mu": mu, "cos": cos, "norm_clean": nc, "norm_adv": na, "loss_clean": loss_c, "loss_adv": loss_a}


# --------------------------------------------------------------------------- linear models

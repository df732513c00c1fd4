"""Two-class linear models for CA-AT's Theorem 1: the exact worst-case perturbation and a logistic
regression fitted to convergence, in float64."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

NORMS = ("L2", "Linf")

__all__ = ["fit_logistic_regression", "linear_model", "linear_worst_case"]


def _logit_direction(model: nn.Linear) -> torch.Tensor:
    """w with logit_1 - logit_0 = w·x + b for a two-output linear layer."""
    if not isinstance(model, nn.Linear) or model.out_features != 2:
        raise ValueError(f"need an nn.Linear with 2 outputs; got {model!r}")
    return (model.weight[1] - model.weight[0]).detach()


def linear_worst_case(model: nn.Linear, x: torch.Tensor, y: torch.Tensor, delta: float, norm: str) -> torch.Tensor:
    """Exact maximiser of the cross-entropy over the δ-ball (no input box) for a two-class linear model.

    With s = 2y - 1 ∈ {-1, +1} and w = W[1] - W[0], the loss is softplus(-s·(w·x + b)), decreasing
    in the margin, so the worst case minimises s·w·Δ: Δ = -δ·s·w/|w|₂ (L2), Δ = -δ·s·sign(w) (L∞).
    """
    if norm not in NORMS:
        raise ValueError(f"norm={norm!r} is unknown; allowed: {', '.join(NORMS)}")
    w = _logit_direction(model).to(x.dtype)
    u = w / w.norm().clamp_min(1e-300) if norm == "L2" else w.sign()
    s = (2 * y - 1).to(x.dtype)
    return x - delta * s[:, None] * u


def fit_logistic_regression(x: torch.Tensor, y: torch.Tensor, *, l2: float = 0.0, tol: float = 1e-10,
                            max_iter: int = 1000) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Logistic regression (w, b) on labels y ∈ {0, 1} by L-BFGS in float64, to gradient norm ≤ tol.

    Returns (w, b, final gradient norm). Raises if the data are separable (no finite optimum) or if
    L-BFGS stalls above 1e-6: a model that is not at its optimum is not the one documented.
    """
    x = x.double()
    s = (2 * y - 1).double()
    w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, tolerance_grad=tol, tolerance_change=1e-20,
                            history_size=20, line_search_fn="strong_wolfe")

    def objective():
        opt.zero_grad()
        loss = F.softplus(-s * (x @ w + b)).mean() + 0.5 * l2 * (w @ w)
        loss.backward()
        return loss

    with torch.enable_grad():
        for _ in range(5):  # L-BFGS may stop on its iteration cap; a restart keeps going
            opt.step(objective)
            objective()
            gnorm = float(torch.cat([w.grad, b.grad]).norm())
            if gnorm <= tol:
                break
    if not math.isfinite(gnorm) or gnorm > 1e-6:
        raise RuntimeError(f"logistic regression did not converge (gradient norm {gnorm:.3g}); the training "
                           f"sample may be linearly separable: use more training points or l2 > 0")
    return w.detach(), b.detach(), gnorm


def linear_model(w: torch.Tensor, b: torch.Tensor, dtype=torch.float64) -> nn.Linear:
    """Two-logit layer with logit_1 - logit_0 = w·x + b (antisymmetric split, so CE = logistic loss)."""
    m = nn.Linear(w.numel(), 2).to(dtype)
    with torch.no_grad():
        m.weight.copy_(torch.stack([-w / 2, w / 2]).to(dtype))
        m.bias.copy_(torch.cat([-b.reshape(1) / 2, b.reshape(1) / 2]).to(dtype))
    return m

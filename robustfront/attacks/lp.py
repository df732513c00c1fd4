"""Geometry of the L∞, L2 and L1 threat models on per-sample perturbations δ (B, ...), fp32.

Every function is batched and free of host syncs (no .item(), no nonzero), so it can run inside
an attack's step loop on the GPU.
"""
from __future__ import annotations

import math

import torch

from .threat import NORMS  # noqa: F401  (re-exported: pgd.py reads it here)


def _per_sample(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(B,) -> (B, 1, 1, ...) to broadcast a per-sample value against `like`."""
    return t.view(-1, *[1] * (like.dim() - 1))


def lp_norm(delta: torch.Tensor, norm: str) -> torch.Tensor:
    """Per-sample norm, shape (B,)."""
    flat = delta.flatten(1)
    if norm == "Linf":
        return flat.abs().amax(1)
    return flat.norm(p=2 if norm == "L2" else 1, dim=1)


def random_delta(x: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """Uniform in the L∞ ball; for L2/L1 a random direction (Gaussian/Laplace) with radius eps·U(0,1)."""
    if norm == "Linf":
        return torch.empty_like(x).uniform_(-eps, eps)
    # Laplace(0,1) = Exp(1) - Exp(1), drawn on x's device
    d = torch.randn_like(x) if norm == "L2" else torch.empty_like(x).exponential_() - torch.empty_like(x).exponential_()
    r = torch.rand(x.shape[0], device=x.device, dtype=x.dtype)
    return d * _per_sample(eps * r / lp_norm(d, norm).clamp_min(1e-12), d)


def ascent_step(grad: torch.Tensor, x_adv: torch.Tensor, alpha: float, norm: str, l1_top: float,
                bounds: tuple[float, float] | None) -> torch.Tensor:
    """Steepest-ascent step of size alpha in the norm's geometry.

    L∞: alpha·sign(g). L2: alpha·g/‖g‖₂. L1: SLIDE (Tramèr & Boneh, 2019): sign(g) on the top
    `l1_top` fraction of coordinates by |g|, scaled to L1 length alpha, after dropping coordinates
    already at a box bound whose gradient points out of the box (their step would be clamped away).
    """
    if norm == "Linf":
        return alpha * grad.sign()
    if norm == "L2":
        return alpha * grad / _per_sample(lp_norm(grad, "L2").clamp_min(1e-12), grad)
    if bounds is not None:
        stuck = ((x_adv <= bounds[0]) & (grad < 0)) | ((x_adv >= bounds[1]) & (grad > 0))
        grad = grad.masked_fill(stuck, 0.0)
    g = grad.flatten(1).abs()
    k = max(1, math.ceil(l1_top * g.shape[1]))
    thr = g.topk(k, dim=1).values[:, -1:]
    e = (grad.flatten(1).sign() * ((g >= thr) & (g > 0))).view_as(grad)
    return alpha * e / _per_sample(lp_norm(e, "L1").clamp_min(1.0), e)


def _project_l1_box(v: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, eps: float, iters: int) -> torch.Tensor:
    """Exact Euclidean projection of v onto {‖δ‖₁ ≤ eps} ∩ {lo ≤ δ ≤ hi} (lo ≤ 0 ≤ hi), flat (B, D).

    The problem separates per coordinate given the multiplier λ: δ = clip(soft(v, λ), lo, hi), and
    ‖δ(λ)‖₁ falls continuously in λ, so bisection finds the smallest feasible λ. The feasible end of
    the bracket is returned: the budget holds exactly, the excess shrinkage is below max|v|/2^iters.
    """
    a = v.abs()
    cap = torch.where(v >= 0, hi, -lo)  # how far each coordinate may move in its own direction

    def shrink(lam):
        return (a - lam).clamp_min(0).minimum(cap)

    lam_lo = torch.zeros_like(a[:, :1])
    lam_hi = a.amax(1, keepdim=True)
    for _ in range(iters):
        mid = (lam_lo + lam_hi) / 2
        ok = shrink(mid).sum(1, keepdim=True) <= eps
        lam_hi, lam_lo = torch.where(ok, mid, lam_hi), torch.where(ok, lam_lo, mid)
    lam = torch.where(shrink(lam_lo).sum(1, keepdim=True) <= eps, lam_lo, lam_hi)  # λ=0 if already inside
    return v.sign() * shrink(lam)


def project(delta: torch.Tensor, x: torch.Tensor, eps: float, norm: str,
            bounds: tuple[float, float] | None, l1_iters: int = 32) -> torch.Tensor:
    """Project δ onto the eps-ball and x+δ into the box.

    L∞: exact (clip to the ball, then to the box). L2: scale onto the ball, then clip to the box;
    clipping only shrinks |δᵢ| toward 0 (x is inside the box), so the result is feasible, though not
    the exact projection onto the intersection. L1: exact projection onto the L1 ball ∩ box.
    """
    if norm == "L1":
        flat = delta.flatten(1)
        if bounds is None:
            lo, hi = torch.full_like(flat, -math.inf), torch.full_like(flat, math.inf)
        else:
            lo, hi = bounds[0] - x.flatten(1), bounds[1] - x.flatten(1)
        return _project_l1_box(flat, lo, hi, eps, l1_iters).view_as(delta)
    if norm == "Linf":
        delta = delta.clamp(-eps, eps)
    else:
        delta = delta * _per_sample((eps / lp_norm(delta, "L2").clamp_min(1e-12)).clamp(max=1.0), delta)
    return delta if bounds is None else (x + delta).clamp(*bounds) - x

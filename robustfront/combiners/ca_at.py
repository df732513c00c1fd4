"""CA-AT: Conflict-Aware Adversarial Training (Xue, Wang, Qin, Pedarsani).

The update is kept inside a cone of half-angle arccos(γ) around the clean gradient:

    φ = cos(g_a, g_c)
    φ ≥ γ:  g* = g_c
    φ < γ:  g* = g_a + k·g_c,  k = |g_a|(γ√(1-φ²) - φ√(1-γ²)) / (|g_c|√(1-γ²))

so that cos(g*, g_c) = γ, the part of g_a orthogonal to g_c is kept, and
|g*| = |g_a|√(1-φ²)/√(1-γ²).  See docs/methods/ca_at.md.

Numerics: dot products and norms are accumulated in float64 (gradients of 10M+
elements in fp32, at any scale, neither lose precision nor over/underflow); every
decision is a torch.where on device scalars, so nothing here waits on the device.
The update is always written as α·g_a + β·g_c with two scalars per tensor.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ._fp64 import mix as _mix, norms_dot64 as _norms_dot64
from .base import COMBINERS, Combiner as _Base

__all__ = ["CAAT", "ca_at_update", "ca_at_diagnostics"]

def _check_gamma(gamma: float) -> float:
    if not 0.0 <= gamma <= 1.0:  # also rejects NaN
        raise ValueError(f"gamma={gamma!r} is out of range; allowed: [0, 1]")
    return float(gamma)


def _coefficients(nc: Tensor, na: Tensor, ac: Tensor, gamma: float, eps: float) -> dict[str, Tensor]:
    """The rule on fp64 sums (any shape: one entry per pair). Returns α, β (g* = α·g_a + β·g_c),
    cos, mu, projected. Branch-free and NaN-free, including zero vectors and γ = 1."""
    # g_c counts as zero when exactly zero or negligible next to g_a (|g_c| ≤ eps·|g_a|):
    # its direction is then noise, and k = |g_a|/|g_c|·(...) could overflow the gradient dtype.
    # The guard is relative so that tiny but well-conditioned gradients keep the cone property.
    ok = (nc > eps * na) & (na > 0)
    one = torch.ones_like(nc)
    cos = torch.where(ok, ac / torch.where(ok, na * nc, one), 0.0).clamp(-1.0, 1.0)
    mu = nc * na * (1.0 - cos)
    s_gamma = math.sqrt(max(0.0, 1.0 - gamma * gamma))
    if s_gamma == 0.0:  # γ = 1 is standard training: always g_c, and no division by √(1-γ²) = 0
        projected = torch.zeros_like(ok)
        return {"alpha": torch.zeros_like(nc), "beta": one, "cos": cos, "mu": mu, "projected": projected}
    projected = cos < gamma
    sin_phi = (1.0 - cos * cos).clamp_min(0.0).sqrt()
    k = na * (gamma * sin_phi - cos * s_gamma) / (torch.where(ok, nc, one) * s_gamma)
    k = torch.where(ok, k, 0.0)  # zero g_c: the k·g_c term vanishes, g* = g_a
    alpha = projected.to(nc.dtype)
    beta = torch.where(projected, k, one)
    return {"alpha": alpha, "beta": beta, "cos": cos, "mu": mu, "projected": projected}


def ca_at_update(g_clean: Tensor, g_adv: Tensor, gamma: float, eps: float = 1e-12) -> Tensor:
    """CA-AT update g* for one pair of flat (or equally shaped) gradients; no host sync."""
    gamma = _check_gamma(gamma)
    nc, na, ac = _norms_dot64([g_clean], [g_adv])
    co = _coefficients(nc[0], na[0], ac[0], gamma, eps)
    return _mix([g_adv], [g_clean], co["alpha"], co["beta"])[0]


def ca_at_diagnostics(g_clean: Tensor, g_adv: Tensor, gamma: float, eps: float = 1e-12) -> dict[str, Tensor]:
    """Device fp64 scalars for one pair: cos φ, norm_clean |g_c|, norm_adv |g_a|,
    mu = |g_c||g_a|(1-φ) (the paper's gradient conflict), projected (bool: φ < γ took the cone)."""
    gamma = _check_gamma(gamma)
    nc, na, ac = _norms_dot64([g_clean], [g_adv])
    co = _coefficients(nc[0], na[0], ac[0], gamma, eps)
    return {"cos": co["cos"], "norm_clean": nc[0], "norm_adv": na[0], "mu": co["mu"], "projected": co["projected"]}


@COMBINERS.register("ca_at")
@dataclass(eq=False)
class CAAT(_Base):
    """CA-AT combiner (registered as "ca_at").

    per_tensor=False (paper / reference default): the rule acts on the concatenation of all
    gradients; per_tensor=True applies it to each parameter tensor separately.
    Diagnostics (`pop_diagnostics`, averages over the steps since the last pop): cos, mu,
    norm_clean, norm_adv always describe the whole flattened gradient (the paper's μ);
    projected_frac is the fraction of projection decisions that took the cone
    (one decision per step, or one per tensor per step when per_tensor=True).
    """

    separate = True
    terms = ("clean", "adv")
    gamma: float = 0.8         # γ in [0, 1]: cosine of the cone's half-angle around g_c (1: standard training)
    per_tensor: bool = False   # apply the rule to each parameter tensor instead of the whole gradient
    eps: float = 1e-12         # |g_c| <= eps·|g_a| counts as a zero clean gradient (its direction is noise)

    def __post_init__(self):
        self.gamma = _check_gamma(self.gamma)
        self.per_tensor = bool(self.per_tensor)
        self.eps = float(self.eps)
        self._sums: Tensor | None = None  # device fp64: cos, mu, norm_clean, norm_adv, projected
        self._steps = 0
        self._decisions = 0

    def combine(self, grads: dict[str, list[Tensor]]) -> list[Tensor]:
        g_clean, g_adv = grads["clean"], grads["adv"]
        nc, na, ac = _norms_dot64(g_clean, g_adv)
        # whole-vector quantities from the per-tensor ones: squared norms and dots add up
        NC, NA, AC = torch.linalg.vector_norm(nc), torch.linalg.vector_norm(na), ac.sum()
        flat = _coefficients(NC, NA, AC, self.gamma, self.eps)
        rule = _coefficients(nc, na, ac, self.gamma, self.eps) if self.per_tensor else flat
        out = _mix(g_adv, g_clean, rule["alpha"], rule["beta"])
        step = torch.stack([flat["cos"], flat["mu"], NC, NA, rule["projected"].sum(dtype=torch.float64)])
        self._sums = step if self._sums is None else self._sums + step
        self._steps += 1
        self._decisions += len(g_clean) if self.per_tensor else 1
        return out

    def pop_diagnostics(self) -> dict[str, float]:
        if self._sums is None:
            return {}
        cos, mu, n_c, n_a, proj = self._sums.tolist()  # the one host sync
        s = self._steps
        res = {"cos": cos / s, "mu": mu / s, "norm_clean": n_c / s, "norm_adv": n_a / s,
               "projected_frac": proj / self._decisions}
        self._sums, self._steps, self._decisions = None, 0, 0
        return res

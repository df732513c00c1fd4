"""AGR: Adaptive Gradient Reconstruction (Tong et al., ACM MM 2024).

Per parameter tensor i, with ψ_i = cos(g_a,i, g_c,i):

    ψ_i < 0:  G_i = g_a,i - (<g_a,i, g_c,i>/|g_c,i|²)·g_c,i      (GOP: drop the conflicting part)
    ψ_i ≥ 0:  G_i = w_i·g_c,i + (1-w_i)·g_a,i                     (GICS: lean towards g_c)
    G_i ← G_i / max(1, |G_i|/C)                                   (clip, per tensor)

w_i = ψ_i (interp="cosine", AGR) or, for the paper's interpolation ablations, ½ ("average") or a
fixed s ("fixed"). A branch that is switched off leaves plain g_a,i. Which tensors are clipped is
the clip schedule (`clip_on`, see AGR). See docs/methods/agr.md.

Numerics as in ca_at.py: fp64 per-tensor reductions, decisions by torch.where on device
scalars (no host sync), update written as α_i·g_a,i + β_i·g_c,i; |G_i| for the clip is
computed from the fp64 sums, so clipping costs no second pass over the gradients.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import torch
from torch import Tensor

from ..validation import check_bool, check_choice, check_int, check_number
from ._fp64 import mix as _mix, norms_dot64 as _norms_dot64
from .base import COMBINERS, Combiner as _Base

__all__ = ["AGR", "CLIP_ON", "INTERPS", "agr_update", "agr_diagnostics"]

Interp = Literal["cosine", "average", "fixed"]
ClipOn = Literal["gics", "from_start", "reconstructed", "all"]
INTERPS, CLIP_ON = get_args(Interp), get_args(ClipOn)
_MASKS = ("gics", "reconstructed", "all", "none")  # which tensors one step clips

def _check_clip(clip: float | None) -> float | None:
    if clip is not None and not clip > 0:  # also rejects NaN
        raise ValueError(f"clip={clip!r} is out of range; allowed: clip > 0, or None to disable")
    return None if clip is None else float(clip)


def _coefficients(nc: Tensor, na: Tensor, ac: Tensor, *, gics: bool, gop: bool, clip: float | None,
                  clip_mask: str, eps: float, interp: str = "cosine", scale: float = 0.5) -> dict[str, Tensor]:
    """The rule on per-tensor fp64 sums. Returns α, β (G_i = α_i·g_a,i + β_i·g_c,i), cos ψ,
    and bool vectors gop (took GOP) and neg (ψ < 0, whether or not GOP was on).
    clip_mask: which tensors are clipped: "gics", "reconstructed" (GOP or GICS), "all", "none"."""
    # g_c,i counts as zero when |g_c,i| ≤ eps·|g_a,i| (this includes exact zeros): ψ := 0,
    # so the tensor takes GICS, which then gives plain g_a (for interp="cosine"). Relative, hence scale-free.
    ok = (nc > eps * na) & (na > 0)
    one = torch.ones_like(nc)
    psi = torch.where(ok, ac / torch.where(ok, na * nc, one), 0.0).clamp(-1.0, 1.0)
    neg = psi < 0
    use_gop = neg & gop
    use_gics = ~neg & gics
    w = psi if interp == "cosine" else torch.full_like(psi, 0.5 if interp == "average" else scale)
    # GOP: <g_a,g_c>/|g_c|² = ψ|g_a|/|g_c| (no squaring, so no fp64 range issue)
    beta_gop = -psi * na / torch.where(ok, nc, one)
    alpha = torch.where(use_gics, 1.0 - w, one)
    beta = torch.where(use_gop, beta_gop, torch.where(use_gics, w, 0.0))
    if clip is not None and clip_mask != "none":
        norm2 = (alpha * alpha * na * na + 2.0 * alpha * beta * ac + beta * beta * nc * nc).clamp_min(0.0)
        scale_c = clip / torch.maximum(norm2.sqrt(), torch.full_like(nc, clip))  # = 1/max(1, |G|/C)
        if clip_mask != "all":
            mask = use_gics if clip_mask == "gics" else use_gop | use_gics
            scale_c = torch.where(mask, scale_c, one)
        alpha, beta = alpha * scale_c, beta * scale_c
    return {"alpha": alpha, "beta": beta, "cos": psi, "gop": use_gop, "neg": neg}


def agr_update(g_clean: list[Tensor], g_adv: list[Tensor], *, gics: bool = True, gop: bool = True,
               clip: float | None = 0.1, eps: float = 1e-12, clip_plain: bool = False, interp: str = "cosine",
               interp_scale: float = 0.5, clip_mask: str | None = None) -> list[Tensor]:
    """AGR update, one tensor per parameter tensor; no host sync.
    gics/gop=False leave plain g_a in that case; clip=None disables clipping; which tensors are
    clipped: clip_mask ("gics", "reconstructed", "all", "none"), by default every reconstructed
    tensor, and with clip_plain=True also those left as plain g_a."""
    mask = clip_mask or ("all" if clip_plain else "reconstructed")
    check_choice("clip_mask", mask, _MASKS)
    nc, na, ac = _norms_dot64(g_clean, g_adv)
    co = _coefficients(nc, na, ac, gics=gics, gop=gop, clip=_check_clip(clip), clip_mask=mask, eps=eps,
                       interp=check_choice("interp", interp, INTERPS),
                       scale=check_number("interp_scale", interp_scale, 0.0, hi=1.0))
    return _mix(g_adv, g_clean, co["alpha"], co["beta"])


def agr_diagnostics(g_clean: list[Tensor], g_adv: list[Tensor], *, gop: bool = True,
                    eps: float = 1e-12) -> dict[str, Tensor]:
    """Device tensors: cos (per-tensor ψ, fp64 vector), gop (bool vector: took GOP),
    gop_frac (fraction of tensors that took GOP), neg_frac (fraction with ψ < 0)."""
    nc, na, ac = _norms_dot64(g_clean, g_adv)
    co = _coefficients(nc, na, ac, gics=False, gop=gop, clip=None, clip_mask="none", eps=eps)
    return {"cos": co["cos"], "gop": co["gop"], "gop_frac": co["gop"].double().mean(),
            "neg_frac": co["neg"].double().mean()}


@COMBINERS.register("agr")
@dataclass(eq=False)
class AGR(_Base):
    """AGR combiner (registered as "agr"). The trainer calls `on_epoch(epoch)` (0-based) each epoch.

    delay_gop=False (paper): GOP on from the first epoch, GICS from start_epoch on
    (before it the ψ ≥ 0 case is plain g_a). delay_gop=True (reference code, which
    used start_epoch=155): before start_epoch every tensor is plain g_a, from it both
    branches are on.

    Clip schedule `clip_on` (C = `clip`, per tensor):
        "gics" (default, the paper): the interpolated gradients, i.e. tensors that took GICS;
        "from_start" (reference code): every tensor from start_epoch on, nothing before;
        "reconstructed": every tensor that took GOP or GICS, at any epoch (with delay_gop=False
            this clips GOP tensors from epoch 0: robustfront's earlier default);
        "all": every tensor, plain g_a included.

    gop=False: AGR Table 3's "without GOP" ablation: a tensor with ψ < 0 keeps plain g_a at every epoch.

    interp: the GICS weight of g_c, "cosine" (ψ, AGR), "average" (½) or "fixed" (`interp_scale`):
    the paper's interpolation ablations. AGR Table 4's fixed τ weights g_a (τ·g_a + (1-τ)·g_c), so
    τ maps to interp_scale = 1 - τ.

    pop_diagnostics(): gop_freq (fraction of tensor-updates that took GOP), neg_frac
    (fraction with ψ < 0 — what the reference code logs as its "GOP rate", also before
    AGR starts), cos_mean (mean ψ over tensor-updates), layer_cos (per-tensor mean ψ, list).
    """

    separate = True
    terms = ("clean", "adv")
    start_epoch: int = 150        # epoch (0-based) from which GICS is on (and GOP, with delay_gop)
    delay_gop: bool = False       # GOP also waits for start_epoch (the reference code; the paper: from epoch 0)
    clip: float | None = 0.1      # C: per-tensor norm bound of the reconstructed gradients (none: no clipping)
    clip_on: ClipOn = "gics"      # which tensors are clipped (see the class docstring)
    interp: Interp = "cosine"     # GICS weight of g_c: ψ (cosine, AGR), ½ (average) or interp_scale (fixed)
    interp_scale: float = 0.5     # the fixed GICS weight of g_c, in [0, 1] (interp=fixed; Table 4's τ is 1 - it)
    eps: float = 1e-12            # |g_c| <= eps·|g_a| counts as a zero clean gradient (ψ := 0)
    gop: bool = True              # GOP on: drop the part of g_a that conflicts with g_c where ψ < 0

    def __post_init__(self):
        self.start_epoch = check_int("start_epoch", self.start_epoch, 0)
        self.delay_gop = bool(self.delay_gop)
        self.gop = check_bool("gop", self.gop)
        self.clip = _check_clip(self.clip)
        self.clip_on = check_choice("clip_on", self.clip_on, CLIP_ON)
        self.interp = check_choice("interp", self.interp, INTERPS)
        self.interp_scale = check_number("interp_scale", self.interp_scale, 0.0, hi=1.0)
        self.eps = float(self.eps)
        self.epoch = 0                    # set by on_epoch (0-based, as the trainer counts)
        self._sums: Tensor | None = None  # device fp64: gop count, neg count, then Σψ per tensor
        self._steps = 0

    def on_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def combine(self, grads: dict[str, list[Tensor]]) -> list[Tensor]:
        g_clean, g_adv = grads["clean"], grads["adv"]
        started = self.epoch >= self.start_epoch
        gop = self.gop and (started or not self.delay_gop)
        nc, na, ac = _norms_dot64(g_clean, g_adv)
        mask = {"from_start": "all" if started else "none"}.get(self.clip_on, self.clip_on)
        co = _coefficients(nc, na, ac, gics=started, gop=gop, clip=self.clip, clip_mask=mask, eps=self.eps,
                           interp=self.interp, scale=self.interp_scale)
        out = _mix(g_adv, g_clean, co["alpha"], co["beta"])
        counts = torch.stack([co["gop"].sum(dtype=torch.float64), co["neg"].sum(dtype=torch.float64)])
        step = torch.cat([counts, co["cos"]])
        if self._sums is not None and self._sums.shape != step.shape:
            raise ValueError(f"AGR got {len(g_clean)} gradient tensors, earlier {self._sums.numel() - 2}")
        self._sums = step if self._sums is None else self._sums + step
        self._steps += 1
        return out

    def pop_diagnostics(self) -> dict:
        if self._sums is None:
            return {}
        vals = self._sums.tolist()  # the one host sync
        s, n = self._steps, len(vals) - 2
        layer = [v / s for v in vals[2:]]
        res = {"gop_freq": vals[0] / (s * n), "neg_frac": vals[1] / (s * n), "cos_mean": sum(layer) / n,
               "layer_cos": layer}
        self._sums, self._steps = None, 0
        return res

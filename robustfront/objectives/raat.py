"""RAAT / RAAT++ / RAAT# — Robust Alignment Adversarial Training (Wang et al., 2026).

Specification: METHODS.md, section "RAAT / RAAT++", and docs/methods/raat.md (paper vs reference
code, option by option). Two augmentations per image, PGD on both views, a boundary split that
needs no extra attack, a supervised term on reduced or full adversarial examples, and DICAR, a JS
alignment of a mixed adversarial input with the same mix of the clean views.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..models.masked_bn import batch_stats_from
from ..models.modes import eval_mode
from ..validation import check_bool, check_choice, check_int, check_number
from .base import OBJECTIVES, Objective, forward_views
from .cons_at import attack_views, concat_pays, js_from_log_probs, js_from_logits, two_views
from .mart import mart_bce, mart_kl

Mix = Literal["plain", "max"]
Target = Literal["logits", "probs"]
Reduced = Literal["scaled", "attack"]
DicarInputs = Literal["selected", "all"]
Supervise = Literal["both", "first"]
Decide = Literal["model", "averaged"]
MIXES, TARGETS, REDUCED = get_args(Mix), get_args(Target), get_args(Reduced)
DICAR_INPUTS, SUPERVISE, DECIDE = get_args(DicarInputs), get_args(Supervise), get_args(Decide)


def _per_sample(mask: Tensor, like: Tensor) -> Tensor:
    return mask.view(-1, *[1] * (like.dim() - 1))


@OBJECTIVES.register("raat")
@dataclass(eq=False, repr=False)
class RAAT(Objective):
    r"""RAAT (plus=False) and RAAT++ (plus=True); RAAT# is RAAT with `decide_with="averaged"` and a
    DICAR start (preset `raat_sharp`). `views = 2`: x is a tuple (x1, x2). Per view v:

    1. x_v' = attack(model, x_v, y).
    2. Reduced example x_v'' = x_v + η·(x_v' - x_v) (reduced="scaled", the reference code) or an
       attack within the η·ε ball (reduced="attack", the paper's Eq. 8: the training attack with ε
       and step size scaled by η).
    3. Boundary split, eval mode, no gradient, by the trained model or (decide_with="averaged") by
       the averaged model given to `bind`: *misclassified*: x_v wrong; *boundary*: x_v right and
       x_v'' wrong (require_adv_wrong=True, the reference rule: also x_v' wrong); the rest
       *non-boundary*. One eval-mode forward of the 6B inputs (per-sample logits in eval mode).
    4. Supervised input x_in,v = x_v'' for boundary samples, x_v' for the others (torch.where).
       RAAT:   adv = mean CE(f(x_in), y)
       RAAT++: adv = mean BCE(f(x_in), y)                              (MART's boosted CE)
               kl  = β · mean KL(p(x) ‖ p(x'))·(1 - p_y(x))            (on the FULL x' of every
                                                                        sample: paper Table 4,
                                                                        reference `mart_loss_bd`)
       averaged over both views (supervise="both") or taken on the first view only ("first",
       the RAAT# reference).
    5. DICAR on images whose clean views are both right (the split's decision): one m ~ Beta(γ, γ)
       per batch (mix="max": max(m, 1-m), the reference), input m·x1' + (1-m)·x2', target the
       same mix of the train-mode clean views — of the logits (target="logits", reference code)
       or of the probabilities p_T (target="probs", the paper's Eq. 15–16) — not detached; loss
       λ · mean over the selected images of JS(p_T(input) ‖ target). Off (0) before `dicar_start`.

    BatchNorm batch composition (train-mode forwards): joint=True (the reference): both views in
    one forward each — clean (2B), supervised inputs (2B), RAAT++'s full x' (2B) — and a train-mode
    attack runs once on the 2B pair; joint=False: one forward per view. Eval-mode work (an eval-mode
    attack, the split) is per sample, so it is batched for speed only (`concat_pays`). dicar_inputs="selected" (the
    reference's semantics) forwards all B mixed images but gives train-mode BatchNorm the
    statistics of the selected images only (models/masked_bn.py), and averages the loss over them:
    the selected images' outputs, gradients and the running statistics equal those of a forward of
    the selected images alone, with no host sync (no data-dependent batch size). "all" forwards all
    B mixed images with plain BatchNorm (its statistics also see the unselected ones) and averages
    the loss over the selected. With fewer than two selected images "selected" gives DICAR = 0 for
    the step (train-mode BatchNorm needs two; the reference would fail).

    Returns losses {"adv", "dicar"} (RAAT++: {"adv", "kl", "dicar"}); aux "clean" = mean CE of the
    supervised clean views, on request. Stats (device sums): "boundary", "misclassified",
    "adv_correct" (eval-mode prediction on x'), "clean_correct" (on x) counted over both views and
    halved (multiples of ½, at most the batch size); "dicar_selected" counts images.
    """
    views = 2
    aux = ("clean",)
    terms = ("adv", "dicar")
    slots = {"clean": ("clean",), "adv": ("adv", "dicar")}

    eta: float = 0.1                  # η in (0, 1]: size of the reduced example x'' relative to x' (1: x'' = x')
    lam: float = 1.0                  # weight λ of the DICAR alignment term
    gamma: float = 0.75               # γ > 0 of the Beta(γ, γ) draw of the mixing weight m
    temperature: float = 0.5          # temperature T of the softmaxes in DICAR's JS divergence
    beta: float = 1.0                 # weight of RAAT++'s KL term (the paper's λ; the reference code: 6)
    plus: bool = False                # RAAT++: MART's BCE as the supervised term, plus the weighted KL
    mix: Mix = "plain"                # plain: m ~ Beta(γ, γ) (the paper); max: max(m, 1-m) (the reference code)
    require_adv_wrong: bool = False   # boundary also needs x' wrong (the reference's rule; the paper's: x'' wrong)
    target: Target = "logits"         # DICAR's target: mix of clean logits (reference code) or of probabilities (paper)
    reduced: Reduced = "scaled"       # x'': x + η·(x' - x) (reference code) or an attack in the η·ε ball (paper)
    joint: bool = True                # forward both views as one batch (the reference: shared BatchNorm statistics)
    dicar_inputs: DicarInputs = "selected"  # BatchNorm statistics of DICAR's forward: selected images only, or all
    supervise: Supervise = "both"     # views with the supervised term: both, or the first (RAAT#'s reference)
    decide_with: Decide = "model"     # model that makes the boundary split: trained, or averaged (RAAT#: needs ema)
    dicar_start: int | None = 0       # epoch from which DICAR is on; none: the averaging start (RAAT#)

    def __post_init__(self):
        super().__post_init__()
        self.eta = check_number("eta", self.eta, 0.0, strict=True, hi=1.0)
        self.lam = check_number("lam", self.lam, 0.0)
        self.gamma = check_number("gamma", self.gamma, 0.0, strict=True)
        self.temperature = check_number("temperature", self.temperature, 0.0, strict=True)
        self.beta = check_number("beta", self.beta, 0.0)
        self.plus = check_bool("plus", self.plus)
        self.mix = check_choice("mix", self.mix, MIXES)
        self.require_adv_wrong = check_bool("require_adv_wrong", self.require_adv_wrong)
        self.target = check_choice("target", self.target, TARGETS)
        self.reduced = check_choice("reduced", self.reduced, REDUCED)
        self.joint = check_bool("joint", self.joint)
        self.dicar_inputs = check_choice("dicar_inputs", self.dicar_inputs, DICAR_INPUTS)
        self.supervise = check_choice("supervise", self.supervise, SUPERVISE)
        self.decide_with = check_choice("decide_with", self.decide_with, DECIDE)
        self.dicar_start = None if self.dicar_start is None else check_int("dicar_start", self.dicar_start, 0)
        self.terms = ("adv", "kl", "dicar") if self.plus else ("adv", "dicar")
        kl = ("kl",) if self.plus else ()
        self.slots = {"clean": ("clean",), "adv": ("adv", *kl, "dicar")}
        self.averaged: nn.Module | None = None
        self.averaged_start: int | None = None

    @property
    def needs_averaged(self) -> bool:
        return self.decide_with == "averaged" or self.dicar_start is None

    def bind(self, averaged: nn.Module, start_epoch: int | None = None) -> None:
        self.averaged, self.averaged_start = averaged, start_epoch

    # ------------------------------------------------------------------ pieces (also used by tests)
    def draw_mix(self, device) -> Tensor:
        """One m ~ Beta(γ, γ) on `device` (a 0-dim tensor, no host sync); max(m, 1-m) if mix="max"."""
        c = torch.full((), self.gamma, device=device)
        m = torch.distributions.Beta(c, c, validate_args=False).sample()
        return torch.maximum(m, 1 - m) if self.mix == "max" else m

    @property
    def dicar_on(self) -> bool:
        start = self.dicar_start
        if start is None:
            if self.averaged_start is None:
                raise ValueError("dicar_start=None means 'from the averaging start', but no averaged model was "
                                 "bound; allowed: an integer dicar_start, or a trainer with ema set (objective.bind)")
            start = self.averaged_start
        return self.epoch >= start

    def decider(self, model: nn.Module) -> nn.Module:
        if self.decide_with == "model":
            return model
        if self.averaged is None:
            raise ValueError("decide_with='averaged' (RAAT#) needs the averaged model: the trainer must call "
                             "objective.bind(ema_model, ema_start); allowed: set ema, or decide_with='model'")
        return self.averaged

    def reduce(self, model: nn.Module, x: Tensor, x_adv: Tensor, y: Tensor) -> Tensor:
        """x'' of one batch (one view, or the joint pair)."""
        if self.reduced == "scaled":
            return torch.lerp(x, x_adv, self.eta)  # weight 1 returns x_adv exactly
        alpha = self.attack.alpha   # None: an attack without a step size
        small = self.attack.with_threat(eps=self.attack.eps * self.eta,
                                        alpha=None if alpha is None else alpha * self.eta)
        return small(model, x, y)

    @torch.no_grad()
    def split(self, model: nn.Module, x: Tensor, x_adv: Tensor, y: Tensor, x_red: Tensor | None = None) -> dict:
        """Boundary split of one batch in eval mode without gradient (model: the deciding model).

        Returns boolean masks (B,): "clean_ok", "adv_ok", "boundary", "misclassified", and "x_red".
        """
        if x_red is None:
            x_red = self.reduce(model, x, x_adv, y)
        with eval_mode(model):  # eval mode: per-sample logits, so one call or three is a speed choice
            inputs = (x, x_adv, x_red)
            pred = model(torch.cat(inputs)).argmax(1) if concat_pays(x) else torch.cat([model(v).argmax(1) for v in inputs])
            clean_ok, adv_ok, red_ok = (pred == y.repeat(3)).chunk(3)
        boundary = clean_ok & ~red_ok
        if self.require_adv_wrong:
            boundary = boundary & ~adv_ok
        return {"clean_ok": clean_ok, "adv_ok": adv_ok, "boundary": boundary, "misclassified": ~clean_ok,
                "x_red": x_red}

    def supervised(self, logits_in: Tensor, y: Tensor) -> Tensor:
        """Mean supervised loss: CE (RAAT) or MART's BCE (RAAT++)."""
        return mart_bce(logits_in, y).mean() if self.plus else F.cross_entropy(logits_in, y)

    def dicar(self, model: nn.Module, x1_adv, x2_adv, logits_c1, logits_c2, selected: Tensor, m: Tensor) -> Tensor:
        """λ · mean over the selected images of JS(p_T(m·x1' + (1-m)·x2') ‖ target)."""
        x_mix = m.to(x1_adv.dtype) * x1_adv + (1 - m.to(x1_adv.dtype)) * x2_adv
        mf, T = m.float(), self.temperature
        if self.dicar_inputs == "selected":  # BatchNorm sees the selected images only, by masking: no sync
            with batch_stats_from(selected):
                logits_mix = model(x_mix).float()
        else:
            logits_mix = model(x_mix).float()
        if self.target == "logits":
            js = js_from_logits(logits_mix, mf * logits_c1 + (1 - mf) * logits_c2, T)
        else:
            log_q = torch.logaddexp(torch.log(mf) + F.log_softmax(logits_c1 / T, 1),
                                    torch.log1p(-mf) + F.log_softmax(logits_c2 / T, 1))
            js = js_from_log_probs(F.log_softmax(logits_mix / T, 1), log_q)
        count = selected.sum()
        mean = torch.where(selected, js, 0.0).sum() / count.clamp_min(1)
        if self.dicar_inputs == "selected":  # under two selected images DICAR is 0 (BatchNorm needs two)
            mean = torch.where(count >= 2, mean, 0.0)
        return self.lam * mean

    # ------------------------------------------------------------------ the objective
    def compute(self, model, x, y):
        x1, x2 = two_views(x)
        x1_adv, x2_adv = attack_views(self, model, (x1, x2), y, self.joint)
        decider = self.decider(model)

        def splits():
            reds = self._reduced_views(model, (x1, x2), (x1_adv, x2_adv), y) if self.reduced == "attack" \
                else (None, None)
            if concat_pays(x1):  # the split is per sample (eval mode): one call where that is faster
                s = self.split(decider, torch.cat([x1, x2]), torch.cat([x1_adv, x2_adv]), y.repeat(2),
                               None if reds[0] is None else torch.cat(reds))
                return tuple({k: v.chunk(2)[i] for k, v in s.items()} for i in range(2))
            return tuple(self.split(decider, xv, av, y, rv) for xv, av, rv in zip((x1, x2), (x1_adv, x2_adv), reds))
        s1, s2 = self.cached("split", splits)

        sup_views = 2 if self.supervise == "both" else 1
        x_in = [torch.where(_per_sample(s["boundary"], xa), s["x_red"], xa)
                for s, xa in zip((s1, s2), (x1_adv, x2_adv))][:sup_views]
        dicar_on = self.dicar_on and self.lam > 0
        need_clean = dicar_on or self.plus or "clean" in self.wanted
        clean = forward_views(model, (x1, x2) if (dicar_on or sup_views == 2) else (x1,), self.joint) \
            if need_clean else None
        logits_in = forward_views(model, x_in, self.joint)
        losses = {"adv": sum(self.supervised(li, y) for li in logits_in) / sup_views}
        if self.plus:
            logits_full = forward_views(model, (x1_adv, x2_adv)[:sup_views], self.joint)
            losses["kl"] = self.beta * sum(mart_kl(c, a, y).mean() for c, a in zip(clean, logits_full)) / sup_views
        selected = s1["clean_ok"] & s2["clean_ok"]
        if dicar_on:
            m = self.cached("m", lambda: self.draw_mix(x1.device))
            losses["dicar"] = self.dicar(model, x1_adv, x2_adv, clean[0], clean[1], selected, m)
        else:
            losses["dicar"] = losses["adv"] * 0.0  # a zero term with a graph, so every term has gradients
        if "clean" in self.wanted:
            losses["clean"] = sum(F.cross_entropy(c, y) for c in clean[:sup_views]) / sup_views

        def views_avg(key):
            return 0.5 * (s1[key].sum() + s2[key].sum())

        stats = {"boundary": views_avg("boundary"), "misclassified": views_avg("misclassified"),
                 "adv_correct": views_avg("adv_ok"), "clean_correct": views_avg("clean_ok"),
                 "dicar_selected": selected.sum()}
        return losses, stats

    def _reduced_views(self, model, views, advs, y) -> tuple[Tensor, Tensor]:
        """x'' by the η-scaled attack (reduced="attack"), one call on the pair or one per view."""
        if self.joint and (self.attack.bn_mode == "train" or concat_pays(views[0])):
            return tuple(self.reduce(model, torch.cat(views), torch.cat(advs), y.repeat(2)).chunk(2))
        return tuple(self.reduce(model, v, a, y) for v, a in zip(views, advs))


@OBJECTIVES.register("raat_pp")
@dataclass(eq=False, repr=False)
class RAATPP(RAAT):
    """RAAT++: RAAT with the MART-style supervised term (`plus=True`); see `RAAT`. Its reference
    trains with MART's attack (PGD from x + 0.001·N(0,1), start not clamped)."""

    default_attack = "pgd_normal"
    default_attack_args = {"clamp_start": False}
    terms = ("adv", "kl", "dicar")
    slots = {"clean": ("clean",), "adv": ("adv", "kl", "dicar")}
    plus: bool = field(default=True, init=False)  # always on: not an option of RAAT++


__all__ = ["RAAT", "RAATPP"]

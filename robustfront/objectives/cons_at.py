"""Consistency-regularised AT (Tack et al., 2022): CE on two attacked views plus their JS divergence.

Paper: Consistency Regularization for Adversarial Robustness, https://arxiv.org/abs/2103.04623
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..validation import check_bool, check_number
from .base import OBJECTIVES, Objective, correct, forward_views


def js_from_log_probs(log_a: Tensor, log_b: Tensor) -> Tensor:
    """Per-sample Jensen–Shannon divergence of two distributions given as log-probabilities (B, K).

    JS = ½ KL(a ‖ m) + ½ KL(b ‖ m), m = (a + b)/2, in nats; log m = logaddexp(log a, log b) - log 2,
    so value and gradients stay finite when probabilities underflow.
    """
    log_m = torch.logaddexp(log_a, log_b) - math.log(2.0)
    return 0.5 * ((log_a.exp() * (log_a - log_m)).sum(1) + (log_b.exp() * (log_b - log_m)).sum(1))


def js_from_logits(logits_a: Tensor, logits_b: Tensor, temperature: float = 1.0) -> Tensor:
    """Per-sample Jensen–Shannon divergence of softmax(logits_a/T) and softmax(logits_b/T).

    Symmetric, 0 iff the distributions agree, at most log 2. The Cons-AT reference code clamps m at
    1e-8 instead of working in log space, which differs only where m < 1e-8.
    """
    return js_from_log_probs(F.log_softmax(logits_a.float() / temperature, dim=1),
                             F.log_softmax(logits_b.float() / temperature, dim=1))


@OBJECTIVES.register("cons_at")
@dataclass(eq=False, repr=False)
class ConsAT(Objective):
    r"""Cons-AT: two augmentations x1, x2 of each image, attacked (x1', x2'):

        adv = ½ [CE(f(x1'), y) + CE(f(x2'), y)] + λ · mean_i JS(p_T(x1'_i) ‖ p_T(x2'_i))

    p_T = softmax(logits / T). `views = 2`: the trainer passes `x` as a tuple `(x1, x2)` with the
    same labels y. There is no clean term (no clean forward), so it cannot feed a two-slot combiner.

    joint=True (the reference code): one attack call on the 2B concatenated views and one train-mode
    forward of both adversarial views, so BatchNorm normalises them together; False: one attack and
    one forward per view (two batches of B).

    Returns `({"adv": ...}, {"adv_correct": ...})`; `adv_correct` is the view-averaged count
    ½(correct on x1' + correct on x2'), a multiple of ½ at most the batch size, so dividing by the
    number of images gives the accuracy over all adversarial views.
    """
    terms = ("adv",)
    views = 2

    lam: float = 1.0           # weight λ of the JS consistency term
    temperature: float = 0.5   # temperature T of the softmaxes in the JS term
    joint: bool = True         # attack and forward both views as one batch (the reference: shared BatchNorm statistics)

    def __post_init__(self):
        super().__post_init__()
        self.lam = check_number("lam", self.lam, 0.0)
        self.temperature = check_number("temperature", self.temperature, 0.0, strict=True)
        self.joint = check_bool("joint", self.joint)

    def compute(self, model, x, y):
        x1, x2 = two_views(x)
        x1_adv, x2_adv = attack_views(self, model, (x1, x2), y, self.joint)
        logits1, logits2 = forward_views(model, (x1_adv, x2_adv), self.joint)
        ce = 0.5 * (F.cross_entropy(logits1, y) + F.cross_entropy(logits2, y))
        js = js_from_logits(logits1, logits2, self.temperature).mean()
        return {"adv": ce + self.lam * js}, {"adv_correct": 0.5 * (correct(logits1, y) + correct(logits2, y))}


def concat_pays(x: Tensor) -> bool:
    """Whether batch-independent (eval-mode) work on several views runs faster as one concatenated
    call: on CUDA (fewer kernel launches), not on CPU, where a 2B batch of small_cnn runs 20–40 %
    slower per image than two B batches (2-core AVX2 EPYC, process CPU time)."""
    return x.is_cuda


def attack_views(obj: Objective, model, views, y: Tensor, joint: bool, name: str = "x_adv") -> tuple[Tensor, ...]:
    """The training attack on every view, cached under `name` for reuse (see Objective.cached).

    joint=True (the references) is one call on the concatenated views. An attack in eval-mode
    BatchNorm treats every sample on its own, so there the concatenation only changes speed (and
    the order of the random draws): it is used where it pays (`concat_pays`); an attack in train
    mode always gets the concatenation, whose batch statistics it depends on."""
    if obj.attack is None:
        raise ValueError(f"{type(obj).__name__} needs a training attack; got attack=None")
    if joint and obj.attack.bn_mode == "eval":
        joint = concat_pays(views[0])

    def run():
        if joint:
            return tuple(obj.attack(model, torch.cat(views), y.repeat(len(views))).chunk(len(views)))
        return tuple(obj.attack(model, v, y) for v in views)
    return obj.cached(name, run)


def two_views(x) -> tuple[Tensor, Tensor]:
    if not (isinstance(x, (tuple, list)) and len(x) == 2):
        raise ValueError(f"this objective has views=2 and needs x as a tuple (x1, x2) of two augmentations; "
                         f"got {type(x).__name__}")
    x1, x2 = x
    if x1.shape != x2.shape:
        raise ValueError(f"the two views have shapes {tuple(x1.shape)} and {tuple(x2.shape)}; allowed: equal shapes")
    return x1, x2


_two_views = two_views  # the name older callers import

__all__ = ["ConsAT", "attack_views", "concat_pays", "js_from_log_probs", "js_from_logits", "two_views"]

"""Consistency-regularised AT (Tack et al., 2022): CE on two attacked views plus their JS divergence.

Paper: Consistency Regularization for Adversarial Robustness, https://arxiv.org/abs/2103.04623
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ..attacks.base import check_number
from .base import Objective, correct


def js_from_logits(logits_a: Tensor, logits_b: Tensor, temperature: float = 1.0) -> Tensor:
    """Per-sample Jensen–Shannon divergence of softmax(logits_a/T) and softmax(logits_b/T).

    JS = ½ KL(p_a ‖ m) + ½ KL(p_b ‖ m), m = (p_a + p_b)/2, in nats; symmetric, 0 iff p_a = p_b,
    at most log 2. Computed from log-probabilities (log m = logaddexp(log p_a, log p_b) - log 2),
    so value and gradients stay finite when probabilities underflow; the Cons-AT reference code
    clamps m at 1e-8 instead, which differs only where m < 1e-8.
    """
    log_a = F.log_softmax(logits_a.float() / temperature, dim=1)
    log_b = F.log_softmax(logits_b.float() / temperature, dim=1)
    log_m = torch.logaddexp(log_a, log_b) - math.log(2.0)
    return 0.5 * ((log_a.exp() * (log_a - log_m)).sum(1) + (log_b.exp() * (log_b - log_m)).sum(1))


class ConsAT(Objective):
    r"""Cons-AT: two augmentations x1, x2 of each image, attacked separately (x1', x2'):

        adv = ½ [CE(f(x1'), y) + CE(f(x2'), y)] + λ · mean_i JS(p_T(x1'_i) ‖ p_T(x2'_i))

    p_T = softmax(logits / T). `views = 2`: the trainer passes `x` as a tuple `(x1, x2)` with the
    same labels y. Two attacks and two train-mode forwards per step (one per adversarial view,
    kept separate); the JS term needs both. There is no clean term (no clean forward).

    Arguments:
        attack: the training attack, applied to each view separately.
        lam (float): λ, weight of the consistency term (default 1).
        temperature (float): T of the softmaxes in the JS term (default 0.5).

    Returns `({"adv": ...}, {"adv_correct": ...})`; `adv_correct` is the view-averaged count
    ½(correct on x1' + correct on x2'), a multiple of ½ at most the batch size, so dividing by the
    number of images gives the accuracy over all adversarial views.
    """
    terms = ("adv",)
    views = 2

    def __init__(self, attack=None, lam: float = 1.0, temperature: float = 0.5):
        super().__init__(attack)
        self.lam = check_number("lam", lam, 0.0)
        self.temperature = check_number("temperature", temperature, 0.0, strict=True)

    def __call__(self, model, x, y):
        x1, x2 = _two_views(x)
        x1_adv = self.attack(model, x1, y)
        x2_adv = self.attack(model, x2, y)
        logits1 = model(x1_adv).float()
        logits2 = model(x2_adv).float()
        ce = 0.5 * (F.cross_entropy(logits1, y) + F.cross_entropy(logits2, y))
        js = js_from_logits(logits1, logits2, self.temperature).mean()
        return {"adv": ce + self.lam * js}, {"adv_correct": 0.5 * (correct(logits1, y) + correct(logits2, y))}

    def __repr__(self) -> str:
        return f"ConsAT(attack={self.attack!r}, lam={self.lam}, temperature={self.temperature})"


def _two_views(x) -> tuple[Tensor, Tensor]:
    if not (isinstance(x, (tuple, list)) and len(x) == 2):
        raise ValueError(f"this objective has views=2 and needs x as a tuple (x1, x2) of two augmentations; "
                         f"got {type(x).__name__}")
    x1, x2 = x
    if x1.shape != x2.shape:
        raise ValueError(f"the two views have shapes {tuple(x1.shape)} and {tuple(x2.shape)}; allowed: equal shapes")
    return x1, x2


__all__ = ["ConsAT", "js_from_logits"]

"""Pairing of clean and adversarial outputs (Kannan, Kurakin & Goodfellow, 2018).

Paper: Adversarial Logit Pairing, https://arxiv.org/abs/1803.06373
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import torch
import torch.nn.functional as F

from ..validation import check_bool, check_choice, check_number
from .base import OBJECTIVES, Objective, correct

Pairing = Literal["logit", "prob"]
PAIRINGS = get_args(Pairing)


@OBJECTIVES.register("clp")
@dataclass(eq=False, repr=False)
class CLP(Objective):
    r"""Clean/adversarial pairing:

        clean = CE(f(x), y)
        adv   = CE(f(x'), y) + w · P                       (without the CE when adv_ce=False)
        P     = mean_i ‖f(x_i) - f(x'_i)‖²₂                pairing="logit" (logit pairing, the default)
        P     = mean_i ‖p(x'_i) - p(x_i)‖₂                 pairing="prob"  (CA-AT's reference "CLP":
                                                           probabilities, not squared)

    The pairing penalty belongs to the adversarial term (it exists only because of x'); its
    gradient flows through both f(x) and f(x'). Two train-mode forwards per step (x, x'); the clean
    logits are shared by both terms, so the gradient of `adv` also reaches the parameters through
    the clean forward.

    The logit penalty is the squared L2 distance summed over classes and averaged over the batch;
    `F.mse_loss`-style implementations also average over the K classes, which equals weight w/K here.
    CA-AT's reference CLP term is the probability pairing alone: pairing="prob", adv_ce=False,
    weight=1 (`ca_at_clp`).

    Returns `({"clean", "adv"}, {"clean_correct", "adv_correct"})`.
    """
    terms = ("clean", "adv")
    slots = {"clean": ("clean",), "adv": ("adv",)}

    weight: float = 0.5         # pairing weight w (Kannan et al.'s logit-pairing λ)
    pairing: Pairing = "logit"  # logit: squared distance of logits; prob: distance of probabilities (CA-AT's CLP)
    adv_ce: bool = True         # include CE(f(x'), y) in the adversarial term
    clean_first: bool = False   # clean forward before the attack (CA-AT's reference order)

    def __post_init__(self):
        super().__post_init__()
        self.weight = check_number("weight", self.weight, 0.0)
        self.pairing = check_choice("pairing", self.pairing, PAIRINGS)
        self.adv_ce = check_bool("adv_ce", self.adv_ce)
        self.clean_first = check_bool("clean_first", self.clean_first)

    def penalty(self, logits, logits_adv):
        if self.pairing == "logit":
            return (logits - logits_adv).pow(2).sum(1).mean()
        diff = F.softmax(logits_adv, dim=1) - F.softmax(logits, dim=1)
        return torch.linalg.vector_norm(diff, dim=1).mean()  # gradient 0 (not NaN) where x' = x

    def compute(self, model, x, y):
        logits, logits_adv = self.clean_and_adv(model, x, y)
        adv = self.weight * self.penalty(logits, logits_adv)
        if self.adv_ce:
            adv = F.cross_entropy(logits_adv, y) + adv
        losses = {"clean": F.cross_entropy(logits, y), "adv": adv}
        return losses, {"clean_correct": correct(logits, y), "adv_correct": correct(logits_adv, y)}


__all__ = ["CLP", "PAIRINGS"]

"""MART (Wang et al., 2020): misclassification-aware boosted CE plus a weighted KL.

Paper: Improving Adversarial Robustness Requires Revisiting Misclassified Examples,
https://openreview.net/forum?id=rklOg6EFwS
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..validation import check_number
from .base import OBJECTIVES, Objective, correct


def mart_bce(logits_adv: Tensor, y: Tensor) -> Tensor:
    """Per-sample boosted CE: CE(f(x'), y) - log(1.0001 - max_{k≠y} p_k(x') + 1e-12).

    The constants are the reference code's: 1.0001 keeps the log finite when the strongest wrong
    class takes all the probability mass.
    """
    logits_adv = logits_adv.float()
    p_adv = F.softmax(logits_adv, dim=1)
    p_other = p_adv.scatter(1, y[:, None], 0.0).amax(1)  # max over k ≠ y (probabilities are >= 0)
    return F.cross_entropy(logits_adv, y, reduction="none") - torch.log(1.0001 - p_other + 1e-12)


def mart_kl(logits_clean: Tensor, logits_adv: Tensor, y: Tensor) -> Tensor:
    """Per-sample KL(p(x) || p(x')) · (1 - p_y(x)), the reference code's form.

    The reference writes KL with log(p(x') + 1e-12) and weight (1.0000001 - p_y(x)); both are kept.
    Nothing is detached: gradients flow through p(x) in the KL and in the weight, as in the
    reference. p(x)·log p(x) uses log_softmax, so the gradient is finite when p(x) underflows.
    """
    log_p = F.log_softmax(logits_clean.float(), dim=1)
    p = log_p.exp()
    log_q = torch.log(F.softmax(logits_adv.float(), dim=1) + 1e-12)
    kl = (p * (log_p - log_q)).sum(1)
    p_true = p.gather(1, y[:, None]).squeeze(1)
    return kl * (1.0000001 - p_true)


def mart_loss(logits_clean: Tensor, logits_adv: Tensor, y: Tensor, beta: float) -> Tensor:
    """Per-sample MART loss: BCE(f(x'), y) + β·KL(p(x) || p(x'))·(1 - p_y(x))."""
    return mart_bce(logits_adv, y) + beta * mart_kl(logits_clean, logits_adv, y)


@OBJECTIVES.register("mart")
@dataclass(eq=False, repr=False)
class MART(Objective):
    r"""MART: loss = mean_i [BCE(f(x'_i), y_i) + β·KL(p(x_i) || p(x'_i))·(1 - p_{y_i}(x_i))], returned
    as its two terms

        bce = mean_i BCE(f(x'_i), y_i)
        kl  = β · mean_i KL(p(x_i) || p(x'_i))·(1 - p_{y_i}(x_i))

    BCE = CE - log(1 - max_{k≠y} p_k(x')) in the reference code's numerically safe form (see
    `mart_bce`). The default training attack is PGD from x + 0.001·N(0,1) maximising CE. Two
    train-mode forwards per step (x, x').

    MART's loss has no clean CE; the aux term `clean` = CE(f(x), y), from the same clean forward,
    is returned when requested: AGR + MART takes g_c from it and g_a from the whole loss (the
    default slots {"clean": ("clean",), "adv": ("bce", "kl")}).

    Returns `({"bce", "kl"} [+ {"clean"}], {"clean_correct", "adv_correct"})`.
    """
    terms = ("bce", "kl")
    aux = ("clean",)
    slots = {"clean": ("clean",), "adv": ("bce", "kl")}
    default_attack = "pgd_normal"
    default_attack_args = {"clamp_start": False}  # the reference starts at x + 0.001·N, unclamped

    beta: float = 6.0  # weight β of the misclassification-weighted KL term

    def __post_init__(self):
        super().__post_init__()
        self.beta = check_number("beta", self.beta, 0.0)

    def compute(self, model, x, y):
        x_adv = self.attacked(model, x, y)
        logits = model(x).float()
        logits_adv = model(x_adv).float()
        losses = {"bce": mart_bce(logits_adv, y).mean(), "kl": self.beta * mart_kl(logits, logits_adv, y).mean()}
        if "clean" in self.wanted:
            losses["clean"] = F.cross_entropy(logits, y)
        return losses, {"clean_correct": correct(logits, y), "adv_correct": correct(logits_adv, y)}


__all__ = ["MART", "mart_bce", "mart_kl", "mart_loss"]

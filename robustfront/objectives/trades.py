"""TRADES (Zhang et al., 2019): clean CE plus β·KL(p(x) || p(x')).

Paper: Theoretically Principled Trade-off between Robustness and Accuracy, https://arxiv.org/abs/1901.08573
"""
from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

from ..validation import check_bool, check_number
from .base import OBJECTIVES, Objective, correct


def kl_from_logits(logits_p: Tensor, logits_q: Tensor) -> Tensor:
    """Per-sample KL(p || q) = Σ_k p_k (log p_k - log q_k), p = softmax(logits_p), q = softmax(logits_q).

    Same value as `F.kl_div(log_softmax(logits_q), softmax(logits_p), reduction="none").sum(1)` (the
    TRADES reference), but written with log-probabilities on both sides so that the gradient with
    respect to `logits_p` stays finite when some p_k underflows to 0 (F.kl_div then gives NaN:
    the derivative of xlogy(t, t) at t = 0).
    """
    log_p = F.log_softmax(logits_p.float(), dim=1)
    log_q = F.log_softmax(logits_q.float(), dim=1)
    return (log_p.exp() * (log_p - log_q)).sum(1)


@OBJECTIVES.register("trades")
@dataclass(eq=False, repr=False)
class TRADES(Objective):
    r"""TRADES: loss = CE(f(x), y) + β·KL(p(x) || p(x')), returned as its two terms

        clean = CE(f(x), y)
        kl    = β · (1/B) Σ_i KL(p(x_i) || p(x'_i))        (batchmean)

    x' from `attack` (TradesKL by default: start at x + 0.001·N(0,1), maximise the KL). p(x) in the
    KL comes from the same train-mode clean forward as the CE and is *not* detached, as in the
    reference code, so the KL's gradient also moves the clean prediction. Two train-mode forwards
    per step (x, x'), kept separate so each term's gradient can be taken on its own.

    Gradient slots (two-slot combiners): by default g_c from `clean` and g_a from `kl` (CA-AT's
    split of the trade-off); AGR's reference takes g_a from the whole loss, {"adv": ("clean", "kl")}.

    β is the paper's 1/λ; CA-AT's reference uses the bare KL, beta=1.

    Returns `({"clean", "kl"}, {"clean_correct", "adv_correct"})`; stats are device-side counts
    (train-mode predictions on x and x').
    """
    terms = ("clean", "kl")
    slots = {"clean": ("clean",), "adv": ("kl",)}
    default_attack = "trades_kl"
    default_attack_args = {"clamp_start": False}  # the reference starts at x + 0.001·N, unclamped

    beta: float = 6.0             # weight β of the KL term (the paper's 1/λ)
    clean_first: bool = False     # clean forward before the attack (CA-AT's reference order)

    def __post_init__(self):
        super().__post_init__()
        self.beta = check_number("beta", self.beta, 0.0)
        self.clean_first = check_bool("clean_first", self.clean_first)

    def compute(self, model, x, y):
        logits, logits_adv = self.clean_and_adv(model, x, y)
        losses = {"clean": F.cross_entropy(logits, y), "kl": self.beta * kl_from_logits(logits, logits_adv).mean()}
        return losses, {"clean_correct": correct(logits, y), "adv_correct": correct(logits_adv, y)}


__all__ = ["TRADES", "kl_from_logits"]

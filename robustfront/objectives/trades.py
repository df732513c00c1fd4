"""TRADES (Zhang et al., 2019): clean CE plus β·KL(p(x) || p(x')).

Paper: Theoretically Principled Trade-off between Robustness and Accuracy, https://arxiv.org/abs/1901.08573
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from ..attacks.base import check_number
from .base import Objective, correct


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


class TRADES(Objective):
    r"""TRADES: clean = CE(f(x), y), adv = β·KL(p(x) || p(x')) (batchmean), x' from `attack`.

    The default training attack is `TradesKL` (start at x + 0.001·N(0,1), maximise the KL). p(x) in
    the KL comes from the same train-mode clean forward as the CE and is *not* detached, as in the
    reference code, so the KL's gradient also moves the clean prediction. Two train-mode forwards per
    step (x, then x'), kept separate so each term's gradient can be taken on its own.

    Arguments:
        attack: the training attack, called as `attack(model, x, y) -> x'` (TradesKL by default in
            the method table; the objective only calls it).
        beta (float): weight of the KL term (default 6; the paper's 1/λ).
        surgery (bool): for gradient-surgery combiners (AGR): adv = CE(f(x), y) + β·KL (the whole
            TRADES loss, as in AGR's reference code) and clean = CE(f(x), y). With the plain `sum`
            combiner this would count the CE twice, so leave it False there.

    Returns `({"clean": ..., "adv": ...}, {"clean_correct": ..., "adv_correct": ...})`; stats are
    device-side counts (train-mode predictions on x and x').
    """
    terms = ("clean", "adv")

    def __init__(self, attack=None, beta: float = 6.0, surgery: bool = False):
        super().__init__(attack)
        self.beta = check_number("beta", beta, 0.0)
        self.surgery = bool(surgery)
        self.terms_overlap = self.surgery

    def __call__(self, model, x, y):
        x_adv = self.attack(model, x, y)
        logits = model(x).float()
        logits_adv = model(x_adv).float()
        ce = F.cross_entropy(logits, y)
        kl = kl_from_logits(logits, logits_adv).mean()  # batchmean
        adv = self.beta * kl
        if self.surgery:
            adv = ce + adv
        return {"clean": ce, "adv": adv}, {"clean_correct": correct(logits, y), "adv_correct": correct(logits_adv, y)}

    def __repr__(self) -> str:
        return f"TRADES(attack={self.attack!r}, beta={self.beta}, surgery={self.surgery})"


__all__ = ["TRADES", "kl_from_logits"]

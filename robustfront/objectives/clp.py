"""Logit pairing between clean and adversarial examples (Kannan, Kurakin & Goodfellow, 2018).

Paper: Adversarial Logit Pairing, https://arxiv.org/abs/1803.06373
"""
from __future__ import annotations

import torch.nn.functional as F

from ..attacks.base import check_number
from .base import Objective, correct


class CLP(Objective):
    r"""Clean/adversarial logit pairing:

        clean = CE(f(x), y)
        adv   = CE(f(x'), y) + w · mean_i ‖f(x_i) - f(x'_i)‖²₂

    The pairing penalty belongs to the adversarial term (it exists only because of x'); its
    gradient flows through both f(x) and f(x'). Two train-mode forwards per step (x, x'); the clean
    logits are shared by both terms, so the gradient of `adv` also reaches the parameters through
    the clean forward.

    Arguments:
        attack: the training attack `attack(model, x, y) -> x'` (PGD by default).
        weight (float): w, the pairing weight (default 0.5, the logit-pairing weight λ of Kannan et
            al.; METHODS.md does not fix it). The penalty is the squared L2 distance of the logit
            vectors summed over classes and averaged over the batch; `F.mse_loss`-style
            implementations also average over the K classes, which equals weight w/K here.

    Returns `({"clean", "adv"}, {"clean_correct", "adv_correct"})`.
    """
    terms = ("clean", "adv")

    def __init__(self, attack=None, weight: float = 0.5):
        super().__init__(attack)
        self.weight = check_number("weight", weight, 0.0)

    def __call__(self, model, x, y):
        x_adv = self.attack(model, x, y)
        logits = model(x).float()
        logits_adv = model(x_adv).float()
        pairing = (logits - logits_adv).pow(2).sum(1).mean()
        losses = {"clean": F.cross_entropy(logits, y), "adv": F.cross_entropy(logits_adv, y) + self.weight * pairing}
        return losses, {"clean_correct": correct(logits, y), "adv_correct": correct(logits_adv, y)}

    def __repr__(self) -> str:
        return f"CLP(attack={self.attack!r}, weight={self.weight})"


__all__ = ["CLP"]

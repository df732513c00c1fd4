"""Attacks with one call shape: `x_adv = attack(model, x, y)`, inputs in [0,1].

    atk = create_attack("pgd", eps=8/255, alpha=2/255, steps=10, norm="Linf")
    x_adv = atk(model, x, y)
"""
from .base import ATTACKS, Attack, create_attack
from .fgsm import FGSM
from .lp import NORMS, lp_norm, project
from .pgd import PGD, margin
from .trades_kl import TradesKL

__all__ = ["ATTACKS", "Attack", "FGSM", "NORMS", "PGD", "TradesKL", "create_attack", "lp_norm", "margin", "project"]

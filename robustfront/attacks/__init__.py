"""Attacks with one call shape: `x_adv = attack(model, x, y)`, inputs in [0,1].

    atk = create_attack("pgd", eps=8/255, alpha=2/255, steps=10, norm="Linf")
    x_adv = atk(model, x, y)
"""
from .apgd import APGD
from .base import ATTACKS, Attack, create_attack
from .fgsm import FGSM
from .lp import NORMS, lp_norm, project
from .pgd import PGD, margin
from .trades_kl import TradesKL


@ATTACKS.register("pgd_normal")
def pgd_normal(**kw) -> PGD:
    """PGD from x + 0.001·N(0,1): MART's training attack."""
    return PGD(random_start="normal", **kw)


@ATTACKS.register("apgd_ce")
def apgd_ce(**kw) -> APGD:
    return APGD(loss="ce", **kw)


@ATTACKS.register("apgd_dlr")
def apgd_dlr(**kw) -> APGD:
    return APGD(loss="dlr", **kw)


@ATTACKS.register("apgd_t")
def apgd_t(**kw) -> APGD:
    return APGD(loss="dlr", targeted=True, **kw)


__all__ = ["APGD", "ATTACKS", "Attack", "FGSM", "NORMS", "PGD", "TradesKL", "create_attack", "lp_norm", "margin",
           "project"]

"""Objectives: how adversarial examples are made and which loss terms a batch produces."""
from ..registry import Registry
from .awp import AWP, AWPAT, AWPVanilla
from .base import Objective, correct
from .clp import CLP
from .cons_at import ConsAT
from .mart import MART
from .pgd_at import PGDAT
from .raat import RAAT, RAATPP
from .standard import Standard
from .trades import TRADES
from .vanilla import Vanilla

OBJECTIVES = Registry("objective")
for _name, _cls in {"standard": Standard, "pgd_at": PGDAT, "vanilla": Vanilla, "trades": TRADES, "mart": MART,
                    "clp": CLP, "cons_at": ConsAT, "raat": RAAT, "raat_pp": RAATPP, "awp": AWPAT,
                    "awp_vanilla": AWPVanilla}.items():
    OBJECTIVES.register(_name)(_cls)


def create_objective(name: str, **kwargs) -> Objective:
    return OBJECTIVES.create(name, **kwargs)


__all__ = ["AWP", "OBJECTIVES", "Objective", "correct", "create_objective"]

"""Objectives: how adversarial examples are made and which loss terms a batch produces.

Composition: an objective from OBJECTIVES, wrapped by WRAPPERS (AWP) in order, its terms mapped to
a two-slot combiner's slots by `Slots`:

    create_objective("trades", attack, beta=6, wrap=("awp",), wrap_args={"awp": {"gamma": 0.005}},
                     slots={"clean": ("clean",), "adv": ("clean", "kl")})
"""
from __future__ import annotations

from .avmixup import AVmixup
from .awp import AWP, AWPAT, AWPVanilla
from .base import OBJECTIVES, WRAPPERS, Objective, ObjectiveBase, correct
from .clp import CLP
from .cons_at import ConsAT
from .mart import MART
from .pgd_at import PGDAT
from .raat import RAAT, RAATPP
from .slots import Slots
from .standard import Standard
from .trades import TRADES
from .vanilla import Vanilla

# importing the modules above registers their classes (@OBJECTIVES.register / @WRAPPERS.register at each class)


def create_objective(name: str, attack=None, *, wrap=(), wrap_args: dict | None = None, slots: dict | None = None,
                     **kwargs) -> ObjectiveBase:
    """Objective `name` around `attack`, then each wrapper of `wrap` (with `wrap_args[wrapper]`), then
    the slot mapping `slots` (None: the raw terms, for summing combiners). kwargs are the objective's options
    as given: None is a value where an option takes it (RAAT#'s dicar_start: from the averaging start). Attack options belong to the attack: `attacks.create_attack(name, threat, **options)`."""
    obj = OBJECTIVES.build(name, attack=attack, **kwargs)
    wrap_args = wrap_args or {}
    unknown = set(wrap_args) - set(wrap)
    if unknown:
        raise ValueError(f"wrap_args for {sorted(unknown)}, which are not in wrap={list(wrap)}; allowed: "
                         f"arguments of the wrappers used")
    for w in wrap:
        obj = WRAPPERS.build(w, objective=obj, **wrap_args.get(w, {}))
    return Slots(obj, slots) if slots else obj


__all__ = ["AVmixup", "AWP", "AWPAT", "AWPVanilla", "CLP", "ConsAT", "MART", "OBJECTIVES", "Objective",
           "ObjectiveBase", "PGDAT", "RAAT", "RAATPP", "Slots", "Standard", "TRADES", "Vanilla", "WRAPPERS", "correct",
           "create_objective"]

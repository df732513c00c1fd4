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

# the modules above register their classes (@OBJECTIVES.register / @WRAPPERS.register) when imported
_REGISTERED = (AVmixup, AWP, CLP, ConsAT, MART, PGDAT, RAAT, RAATPP, Standard, TRADES, Vanilla)


def create_objective(name: str, attack=None, *, wrap=(), wrap_args: dict | None = None, slots: dict | None = None,
                     attack_options: dict | None = None, **kwargs) -> ObjectiveBase:
    """Objective `name` around `attack`, then each wrapper of `wrap` (with `wrap_args[wrapper]`), then
    the slot mapping `slots` (None: the raw terms, for summing combiners). `attack_options` (e.g.
    clamp_start=False, bn_mode="train") are rebuilt into a copy of an attack made elsewhere.
    kwargs left as None keep the objective's defaults."""
    if attack is not None and attack_options:
        attack = rebuilt(attack, **attack_options)
    obj = OBJECTIVES.create(name, attack=attack, **kwargs)
    wrap_args = wrap_args or {}
    unknown = set(wrap_args) - set(wrap)
    if unknown:
        raise ValueError(f"wrap_args for {sorted(unknown)}, which are not in wrap={list(wrap)}; allowed: "
                         f"arguments of the wrappers used")
    for w in wrap:
        obj = WRAPPERS.create(w, objective=obj, **wrap_args.get(w, {}))
    return Slots(obj, slots) if slots else obj


def rebuilt(attack, **options):
    """A new attack of the same class and constructor arguments as `attack`, with `options` changed."""
    from ..registry import parameters
    names = parameters(type(attack))
    kw = {k: v for k, v in vars(attack).items() if k in names}
    return type(attack)(**{**kw, **options})


__all__ = ["AVmixup", "AWP", "AWPAT", "AWPVanilla", "OBJECTIVES", "Objective", "Slots", "WRAPPERS", "correct",
           "create_objective"]

"""Objectives: how adversarial examples are made and which loss terms a batch produces."""
from ..registry import Registry
from .base import Objective, correct
from .pgd_at import PGDAT
from .standard import Standard
from .vanilla import Vanilla

OBJECTIVES = Registry("objective")
OBJECTIVES.register("standard")(Standard)
OBJECTIVES.register("pgd_at")(PGDAT)
OBJECTIVES.register("vanilla")(Vanilla)


def create_objective(name: str, **kwargs) -> Objective:
    return OBJECTIVES.create(name, **kwargs)


__all__ = ["OBJECTIVES", "Objective", "correct", "create_objective"]

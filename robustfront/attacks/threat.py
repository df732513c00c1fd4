"""The threat model an attack is built for: norm, budget ε, step size α, steps and the input box.

Frozen, so that one value describes the training attack of a run, the per-epoch validation attack
and every attack of an evaluation suite; `create_attack(spec, threat)` reads it.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from ..validation import check_choice, check_int, check_number, invalid

NORMS = ("Linf", "L2", "L1")   # the one declaration of the norms (configs, flags, attacks)
Norm = Literal[NORMS]         # the type of a config field naming one
DEFAULT_EPS = {"Linf": 8 / 255, "L2": 128 / 255, "L1": 2000 / 255}


@dataclass(frozen=True)
class ThreatModel:
    """norm: "Linf", "L2" or "L1". eps: the budget (None: 8/255, 128/255, 2000/255 by norm).
    alpha: step size (None: each attack's own default, e.g. ε/4 for PGD). steps: iterations of
    attacks whose spec names no count (None: each attack's own budget, e.g. 10 for PGD, 100 for
    APGD as in AutoAttack). bounds: the input box, (0, 1) for images, None for unbounded data."""
    norm: str = "Linf"
    eps: float | None = None
    alpha: float | None = None
    steps: int | None = None
    bounds: tuple[float, float] | None = (0.0, 1.0)

    def __post_init__(self):
        check_choice("norm", self.norm, NORMS)
        eps = DEFAULT_EPS[self.norm] if self.eps is None else check_number("eps", self.eps, 0.0)
        object.__setattr__(self, "eps", eps)
        if self.alpha is not None:
            object.__setattr__(self, "alpha", check_number("alpha", self.alpha, 0.0, strict=eps > 0))
        if self.steps is not None:
            check_int("steps", self.steps, 1)
        if self.bounds is not None:
            b = tuple(self.bounds)
            if len(b) != 2 or not all(isinstance(v, (int, float)) for v in b) or not b[0] < b[1]:
                raise invalid("bounds", self.bounds, "(low, high) with low < high, or None")
            object.__setattr__(self, "bounds", (float(b[0]), float(b[1])))

    def with_(self, **changes) -> "ThreatModel":
        return replace(self, **changes)


__all__ = ["DEFAULT_EPS", "NORMS", "ThreatModel"]

"""Which loss terms feed which gradient slot of a two-slot combiner (CA-AT, AGR, weighted).

Part of a method, not of the objective: AGR + TRADES takes g_c from CE(f(x), y) and g_a from the
whole TRADES loss, CA-AT + TRADES g_a from the KL alone. `Slots(objective, mapping)` sums the
named raw terms into each slot and reports the objective's own loss once, so the trainer keeps
calling `losses, stats = objective(model, x, y)` and finds exactly the combiner's terms.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..registry import PART
from ..validation import invalid
from .base import ObjectiveBase, Wrapper


def check_mapping(objective: ObjectiveBase, mapping: dict, name: str = "") -> dict[str, tuple[str, ...]]:
    """A validated {slot: (term, ...)} for `objective` (terms or aux terms, each slot non-empty)."""
    known = tuple(objective.terms) + tuple(objective.aux)
    label = name or type(objective).__name__
    if not isinstance(mapping, dict) or not mapping:
        raise invalid("slots", mapping, "a mapping {slot: [term, ...]}, e.g. {clean: [clean], adv: [clean, kl]}")
    out = {}
    for slot, terms in mapping.items():
        terms = (terms,) if isinstance(terms, str) else tuple(terms)
        bad = [t for t in terms if t not in known]
        if not terms or bad:
            raise invalid(f"slots.{slot}", list(terms), f"a non-empty list of terms of {label}: {', '.join(known)}")
        out[str(slot)] = terms
    return out


@dataclass(eq=False, repr=False)
class Slots(Wrapper):
    """`objective` (or an objective wrapped by AWP) with its raw terms summed into named slots; see the
    module docstring. Aux terms in the mapping are requested from the objective (e.g. MART's clean CE).

    `reported_loss` returns the objective's own loss (its terms summed once) of the last call.
    """
    mapping: dict = field(metadata=PART)  # {slot: (term, ...)}, terms from objective.terms or objective.aux

    def __post_init__(self):
        super().__post_init__()
        objective = self.objective
        self.mapping = check_mapping(objective, self.mapping)
        objective.request({t for terms in self.mapping.values() for t in terms})
        self.terms, self.wanted = tuple(self.mapping), ()
        self._own: Tensor | None = None

    def __call__(self, model, x, y, adv=None):
        raw, stats = self.objective(model, x, y) if adv is None else self.objective(model, x, y, adv)
        self._own = self.objective.reported_loss(raw)
        out = {slot: raw[ts[0]] if len(ts) == 1 else torch.stack([raw[t] for t in ts]).sum()
               for slot, ts in self.mapping.items()}
        return out, stats

    def reported_loss(self, losses):
        if self._own is None:
            raise RuntimeError("Slots.reported_loss needs a call first")
        return self._own

    def loss(self, losses):
        raise TypeError("the slots of a Slots objective may overlap; its own loss is reported_loss()")

    def request(self, names) -> None:
        raise TypeError("request aux terms from the wrapped objective, before wrapping it in Slots")

    def __repr__(self) -> str:
        return f"Slots({self.objective!r}, mapping={self.mapping!r})"


__all__ = ["Slots", "check_mapping"]

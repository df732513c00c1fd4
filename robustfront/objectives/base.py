"""Objectives make adversarial examples and return named loss terms.

An objective is called as `objective(model, x, y) -> (losses, stats)`:
`losses` maps term names to scalar tensors that read like the method's equation (TRADES:
"clean" = CE(f(x), y) and "kl" = β·KL(p(x)‖p(x')); the objective's own loss is their sum),
`stats` maps names to device-side sums (correct counts, ...) that the trainer accumulates without
a host sync. How terms are mixed is the combiner's job; which terms feed which gradient slot of a
two-slot combiner (CA-AT, AGR, weighted) is set by `objectives.slots.Slots`.

`objective(model, x, y, adv)` reuses the adversarial inputs (and random draws) of an earlier call
instead of attacking again: after every call `last_adv` holds what that call used. AWP runs the
wrapped objective twice on one set of adversarial examples this way.

Forward passes that produce loss terms run with the model in train mode (BatchNorm statistics
update); attacks switch the model to their own `bn_mode` themselves.

Declared, not discovered: every objective is a dataclass whose fields are its hyper-parameters (type,
default, and the comment after the field as help: `robustfront train --list-opts`), registered by a
decorator at the class (`@OBJECTIVES.register("trades")`); runtime state is set in `__post_init__`.
The training attack is a part (`attack`): an `attacks.Attack`, or any callable
`attack(model, x, y) -> x'` with the attributes `bn_mode` and `bounds` that Attack declares.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import Tensor, nn

from ..registry import PART, Registry

OBJECTIVES = Registry("objective")
WRAPPERS = Registry("wrapper")


class ObjectiveBase:
    """What the trainer calls: the protocol and its hooks, shared by objectives and wrappers."""
    #: terms of the objective's own loss (their sum is the loss)
    terms: tuple[str, ...] = ()
    #: extra terms computed from the same forwards but not part of the loss (e.g. MART's clean CE,
    #: the clean side of a gradient-surgery combiner); returned only after `request`
    aux: tuple[str, ...] = ()
    #: default gradient slots for two-slot combiners {"clean": terms, "adv": terms}; None: the
    #: objective has no clean side (or no adversarial side) and cannot feed such a combiner
    slots: dict[str, tuple[str, ...]] | None = None
    #: augmented views of each image the loader yields (2: x is a tuple (x1, x2), e.g. Cons-AT, RAAT)
    views: int = 1
    #: run the clean forward before the attack (`clean_and_adv`; objectives that offer it take the option)
    clean_first: bool = False
    #: the training attack a method gets when nothing else is said (see robustfront.attacks)
    default_attack: str = "pgd"
    #: options of that attack (e.g. TRADES/MART's unclamped start)
    default_attack_args: dict = {}
    #: read by the pre-composition trainer's pairing check; always False now (Slots reports the
    #: objective's own loss once); remove together with that check
    terms_overlap: bool = False

    def __post_init__(self):
        self.epoch = 0
        self.wanted: tuple[str, ...] = ()
        self.last_adv: dict = {}
        self._reuse: dict = {}

    # ------------------------------------------------------------------ protocol
    def __call__(self, model: nn.Module, x, y: Tensor, adv: dict | None = None):
        self._reuse, self.last_adv = dict(adv or {}), {}
        return self.compute(model, x, y)

    def compute(self, model: nn.Module, x, y: Tensor) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        raise NotImplementedError

    def request(self, names) -> None:
        """Also return the aux terms among `names` from now on (e.g. the clean CE for a gradient slot)."""
        self.wanted = tuple(n for n in self.aux if n in set(names))

    @property
    def outputs(self) -> tuple[str, ...]:
        """The names a call returns: the terms, then the requested aux terms."""
        return self.terms + self.wanted

    def on_epoch(self, epoch: int) -> None:
        """Called by the trainer at the start of every epoch (0-based)."""
        self.epoch = int(epoch)

    def after_backward(self, model: nn.Module) -> None:
        """Called after the gradients are computed, before the optimizer step (AWP restores its weights)."""

    @property
    def needs_averaged(self) -> bool:
        """Whether the trainer must `bind` an averaged model (RAAT#; RAAT declares it)."""
        return False

    def bind(self, averaged: nn.Module, start_epoch: int | None = None) -> None:
        """Called once by a trainer that keeps averaged weights (EMA): `averaged` is the averaged
        model, `start_epoch` the epoch from which it averages. A no-op unless an objective uses it (RAAT#)."""

    def attacks(self) -> tuple:
        """The training attacks this objective runs (those of the objectives it wraps included)."""
        return ()

    def replace_attacks(self, fn: Callable) -> None:
        """Put `fn(attack)` in place of each of `attacks()` (the trainer's LoRA wiring: run them on
        the merged view)."""

    def loss(self, losses: dict[str, Tensor]) -> Tensor:
        """The objective's own loss: the sum of its terms (aux terms excluded), with gradient."""
        return torch.stack([losses[t].float() for t in self.terms]).sum()

    def reported_loss(self, losses: dict[str, Tensor]) -> Tensor:
        """The objective's own loss for the logs (detached, fp32)."""
        return self.loss(losses).detach()

    def cached(self, name: str, make: Callable[[], object]):
        """`make()` (an attack, a random draw), or the value an earlier call used, given as `adv`."""
        value = self._reuse[name] if name in self._reuse else make()
        self.last_adv[name] = value
        return value

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items()
                         if k not in ("epoch", "wanted", "last_adv", "_reuse") and not k.startswith("_"))
        return f"{type(self).__name__}({args})"


@dataclass(eq=False, repr=False)
class Objective(ObjectiveBase):
    """An objective: its training attack (a part) and, in subclasses, its hyper-parameters as fields."""
    attack: Callable | None = field(default=None, metadata=PART)  # the training attack, attack(model, x, y) -> x'

    def attacks(self) -> tuple:
        return () if self.attack is None else (self.attack,)

    def replace_attacks(self, fn: Callable) -> None:
        if self.attack is not None:
            self.attack = fn(self.attack)

    # ------------------------------------------------------------------ helpers for subclasses
    def attacked(self, model: nn.Module, x: Tensor, y: Tensor, name: str = "x_adv") -> Tensor:
        def run():
            if self.attack is None:
                raise ValueError(f"{type(self).__name__} needs a training attack; got attack=None")
            return self.attack(model, x, y)
        return self.cached(name, run)

    def clean_and_adv(self, model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """Logits of x and of its attacked x' (float32), with the clean forward before the attack when
        `self.clean_first` (the CA-AT reference's order: BatchNorm statistics see x first)."""
        logits = model(x).float() if self.clean_first else None
        x_adv = self.attacked(model, x, y)
        if logits is None:
            logits = model(x).float()
        return logits, model(x_adv).float()


def correct(logits: Tensor, y: Tensor) -> Tensor:
    """Number of correct predictions, kept on the device (no host sync)."""
    return (logits.detach().argmax(1) == y).sum()


def forward_views(model: nn.Module, xs, joint: bool) -> list[Tensor]:
    """Train-mode logits (fp32) of several equally sized inputs: one forward of their concatenation
    (joint=True: BatchNorm normalises them together, as the Cons-AT and RAAT reference code do)
    or one forward each."""
    if joint:
        return list(model(torch.cat(list(xs))).float().chunk(len(xs)))
    return [model(v).float() for v in xs]


@dataclass(eq=False, repr=False)
class Wrapper(ObjectiveBase):
    """An objective around another one (`self.objective`; AWP, Slots): the wrapped objective's attack and
    random draws are seen through the wrapper, and the trainer's hooks (on_epoch, after_backward, bind,
    needs_averaged), its attacks and its loss reach the wrapped objective here, once for every wrapper."""
    objective: ObjectiveBase = field(metadata=PART)  # the wrapped objective

    def __post_init__(self):
        objective = self.objective
        self.epoch = objective.epoch
        self.views, self.default_attack = objective.views, objective.default_attack
        self.default_attack_args = objective.default_attack_args

    # the wrapped objective's state, seen through the wrapper
    attack = property(lambda self: self.objective.attack, lambda self, a: setattr(self.objective, "attack", a))
    last_adv = property(lambda self: self.objective.last_adv)

    @property
    def needs_averaged(self) -> bool:
        return self.objective.needs_averaged

    def on_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self.objective.on_epoch(epoch)

    def after_backward(self, model: nn.Module | None = None) -> None:
        self.objective.after_backward(model)

    def bind(self, averaged: nn.Module, start_epoch: int | None = None) -> None:
        self.objective.bind(averaged, start_epoch)

    def attacks(self) -> tuple:
        return self.objective.attacks()

    def replace_attacks(self, fn: Callable) -> None:
        self.objective.replace_attacks(fn)

    def loss(self, losses: dict[str, Tensor]) -> Tensor:
        return self.objective.loss(losses)

    def reported_loss(self, losses: dict[str, Tensor]) -> Tensor:
        return self.objective.reported_loss(losses)


__all__ = ["OBJECTIVES", "Objective", "ObjectiveBase", "WRAPPERS", "Wrapper", "correct", "forward_views"]

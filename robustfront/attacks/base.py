"""Attack base class: the norm check, eval/train mode switch and restore, fp32 input gradients,
and per-sample robustness masks."""
from __future__ import annotations

import copy
from contextlib import nullcontext
from typing import Callable, Literal, get_args

import torch
from torch import nn

from ..device import input_gradients_only
from ..models.modes import set_mode
from ..registry import Registry
from ..validation import check_choice, check_int, check_number, invalid
from .threat import NORMS

ATTACKS = Registry("attack")
BNMode = Literal["eval", "train"]
BN_MODES = get_args(BNMode)

# re-exported: attack modules and objectives import the checks from here
__all__ = ["ATTACKS", "Attack", "AttackFn", "BNMode", "BN_MODES", "check_choice", "check_int", "check_number"]


class Attack:
    """Call shape: `x_adv = attack(model, x, y)`, x in `bounds` (default [0,1]), x_adv detached.

    Subclasses declare the norms they support (`norms`), checked once here. The base class runs
    `perturb` in fp32 with gradients enabled (callers often hold no_grad or autocast) and the model
    in `bn_mode`: "eval" (default; frozen BatchNorm statistics, no dropout) or "train" (batch
    statistics, running averages updated, dropout on, as in references that attack in train mode).
    Every module's train/eval flag is restored afterwards, also on error. Subclasses take input
    gradients with torch.autograd.grad(loss, δ): parameters' .grad is never touched and each step's
    graph is freed at once. Parameters keep requires_grad (flipping it would race with a caller's
    graph and recompile compiled models; a compiled model runs its parameter-detached view here,
    device.input_gradients_only). x is assumed inside `bounds`; it is not checked, since
    that would sync the host.
    """

    #: the threat models this attack implements
    norms: tuple[str, ...] = NORMS
    #: the BatchNorm mode the model runs in during the attack; objectives read it (a train-mode
    #: attack depends on its batch, so Cons-AT/RAAT attack their two views as one batch)
    bn_mode: str = "eval"
    #: the input box (low, high), None for unbounded inputs; objectives clip to it (AVmixup's vertex)
    bounds: tuple[float, float] | None = (0.0, 1.0)
    #: the step size of attacks that take steps of one (PGD, MI-FGSM, TRADES-KL set it); None: no such step
    alpha: float | None = None

    def __init__(self, eps: float, *, norm: str = "Linf", bn_mode: str = "eval",
                 bounds: tuple[float, float] | None = (0.0, 1.0)):
        check_choice("norm", norm, NORMS)
        if norm not in self.norms:
            raise invalid("norm", norm, f"{', '.join(self.norms)} for attack {type(self).__name__}", "not supported")
        self.norm = norm
        self.eps = check_number("eps", eps, 0.0)
        self.bn_mode = check_choice("bn_mode", bn_mode, BN_MODES)
        if bounds is not None and not (len(bounds) == 2 and bounds[0] < bounds[1]):
            raise invalid("bounds", bounds, "(low, high) with low < high, or None")
        self.bounds = None if bounds is None else (float(bounds[0]), float(bounds[1]))

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def with_threat(self, *, eps: float | None = None, alpha: float | None = None) -> "Attack":
        """A copy with another budget and, for an attack that has a step size, another step size (RAAT's
        η-scaled attack); everything else (steps, restarts, bn_mode, bounds) is this attack's."""
        new = copy.copy(self)
        if eps is not None:
            new.eps = check_number("eps", eps, 0.0)
        if alpha is not None and self.alpha is not None:
            new.alpha = check_number("alpha", alpha, 0.0)
        return new

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"x has {x.shape[0]} samples but y has {y.shape[0]}; allowed: equal batch sizes")
        # per module, so a model mixing modes (e.g. frozen BatchNorm in a PEFT backbone) comes back as it was
        # input_gradients_only: a compiled model (device.CompiledNet) computes no parameter gradients
        with set_mode(model, self.bn_mode == "train"), torch.enable_grad(), input_gradients_only():
            x_adv = self.perturb(model, x.detach().float(), y.detach())
        return x_adv.detach().to(x.dtype)

    def robust_mask(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 500,
                    seed: int = 0, progress=None) -> tuple[torch.Tensor, dict]:
        """Per sample: is the attacked input still classified correctly? Batched; the caller seeds
        torch's RNG. Returns (bool mask, info); info is {} here, the official AutoAttack wrappers
        return the official runner's log and warnings. `progress.update(k)` is called per batch."""
        check_int("batch_size", batch_size, 1)
        out = []
        for i in range(0, len(y), batch_size):
            xb, yb = x[i:i + batch_size], y[i:i + batch_size]
            with progress.watch(model) if progress is not None else nullcontext():  # lines inside the batch
                xa = self(model, xb, yb)
            with torch.no_grad():
                out.append(model(xa).argmax(1) == yb)
            if progress is not None:
                progress.update(len(yb))
        return (torch.cat(out) if out else torch.zeros(0, dtype=torch.bool, device=y.device)), {}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


class AttackFn:
    """A plain function `fn(model, x, y) -> x'` used as a training attack, with the attributes every
    attack declares for the objectives (`bn_mode`, `bounds`); for hand-written attacks and test stand-ins."""

    def __init__(self, fn: Callable, bn_mode: str = "eval", bounds: tuple[float, float] | None = (0.0, 1.0)):
        self.fn, self.bn_mode, self.bounds = fn, check_choice("bn_mode", bn_mode, BN_MODES), bounds

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.fn(model, x, y)

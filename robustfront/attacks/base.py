"""Attack base class: argument checks, eval/train mode switch and restore, fp32 input gradients."""
from __future__ import annotations

import math

import torch
from torch import nn

from ..models.modes import set_mode
from ..registry import Registry

ATTACKS = Registry("attack")
BN_MODES = ("eval", "train")


def create_attack(name: str, **kw) -> "Attack":
    """Build a registered attack ("fgsm", "pgd", "trades_kl", ...); None kwargs keep the defaults,
    except `bounds`, where None means unbounded inputs (e.g. the Gaussian data)."""
    return ATTACKS.get(name)(**{k: v for k, v in kw.items() if v is not None or k == "bounds"})


def check_number(name: str, v, lo: float, *, strict: bool = False) -> float:
    """A finite real >= lo (> lo if strict), else a one-line ValueError naming value and range."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < lo or (strict and v == lo):
        raise ValueError(f"{name}={v!r} is invalid; allowed: a finite number {'>' if strict else '>='} {lo:g}")
    return float(v)


def check_int(name: str, v, lo: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise ValueError(f"{name}={v!r} is invalid; allowed: an integer >= {lo}")
    return v


def check_choice(name: str, v, allowed) -> str:
    if v not in allowed:
        raise ValueError(f"{name}={v!r} is unknown; allowed: {', '.join(map(str, allowed))}")
    return v


class Attack:
    """Call shape: `x_adv = attack(model, x, y)`, x in `bounds` (default [0,1]), x_adv detached.

    The base class runs `perturb` in fp32 with gradients enabled (callers often hold no_grad or
    autocast) and the model in `bn_mode`: "eval" (default; frozen BatchNorm statistics, no dropout)
    or "train" (batch statistics, running averages updated, dropout on, as in references that
    attack in train mode). Every module's train/eval flag is restored afterwards, also on error.
    Subclasses take input gradients with torch.autograd.grad(loss, δ): parameters' .grad is never
    touched and each step's graph is freed at once. Parameters keep requires_grad (flipping it would
    race with a caller's graph and recompile compiled models). x is assumed inside `bounds`; it is
    not checked, since that would sync the host.
    """

    def __init__(self, eps: float, *, bn_mode: str = "eval", bounds: tuple[float, float] | None = (0.0, 1.0)):
        self.eps = check_number("eps", eps, 0.0)
        self.bn_mode = check_choice("bn_mode", bn_mode, BN_MODES)
        if bounds is not None and not (len(bounds) == 2 and bounds[0] < bounds[1]):
            raise ValueError(f"bounds={bounds!r} is invalid; allowed: (low, high) with low < high, or None")
        self.bounds = None if bounds is None else (float(bounds[0]), float(bounds[1]))

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"x has {x.shape[0]} samples but y has {y.shape[0]}; allowed: equal batch sizes")
        # per module, so a model mixing modes (e.g. frozen BatchNorm in a PEFT backbone) comes back as it was
        with set_mode(model, self.bn_mode == "train"), torch.enable_grad():
            x_adv = self.perturb(model, x.detach().float(), y.detach())
        return x_adv.detach().to(x.dtype)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"

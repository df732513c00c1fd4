"""The TRADES inner maximisation (Zhang et al., 2019): maximise KL(p(x) || p(x'))."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..validation import check_bool
from .base import Attack, check_int, check_number
from .lp import ascent_step, project


class TradesKL(Attack):
    r"""TRADES attack: start at x + 0.001·N(0,1), `steps` ascent steps on the batch-sum
    KL(p(x)||p(x')), projection to the ball and box after every step. y is not used (the target
    is the model's own clean prediction p(x), computed once without gradient in the same mode).

    Distance Measure : Linf, L2
    Paper: Theoretically Principled Trade-off between Robustness and Accuracy, https://arxiv.org/abs/1901.08573

    Arguments:
        eps (float): budget (default 8/255).
        alpha (float): step size (default eps/4, 2/255 at 8/255; the reference code uses 0.007 under L∞ and
            2·eps/steps under L2).
        steps (int): ascent steps (default 10).
        norm (str): "Linf" (sign steps, the TRADES paper) or "L2" (normalised-gradient steps, scaled back
            onto the ball; the TRADES reference's `distance='l_2'` branch). Default "Linf".
        clamp_start (bool): project the start into the ball and box before the first gradient (default
            True). False: the first gradient is taken at the raw x + 0.001·N(0,1), as the reference
            code does; every later iterate is projected either way.
        bn_mode (str), bounds (tuple | None): see `Attack`.

    Shape:
        - x: (N, ...) in bounds; y: (N,) int64 (unused); output: (N, ...) like x, detached.

    Examples::
        >>> x_adv = TradesKL(eps=8/255, alpha=2/255, steps=10)(model, x, y)
    """

    norms = ("Linf", "L2")

    def __init__(self, eps: float = 8 / 255, alpha: float | None = None, steps: int = 10, norm: str = "Linf", *,
                 clamp_start: bool = True, bn_mode: str = "eval", bounds=(0.0, 1.0)):
        super().__init__(eps, norm=norm, bn_mode=bn_mode, bounds=bounds)
        self.alpha = check_number("alpha", self.eps / 4 if alpha is None else alpha, 0.0, strict=self.eps > 0)
        self.steps = check_int("steps", steps, 1)
        self.clamp_start = check_bool("clamp_start", clamp_start)

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            p_clean = F.softmax(model(x).float(), dim=1)
        delta = 0.001 * torch.randn_like(x)
        if self.clamp_start:
            delta = project(delta, x, self.eps, self.norm, self.bounds)
        for _ in range(self.steps):
            delta.requires_grad_(True)
            log_p_adv = F.log_softmax(model(x + delta).float(), dim=1)
            loss = F.kl_div(log_p_adv, p_clean, reduction="sum")
            grad, = torch.autograd.grad(loss, delta)
            step = ascent_step(grad, x + delta.detach(), self.alpha, self.norm, 1.0, self.bounds)
            delta = project(delta.detach() + step, x, self.eps, self.norm, self.bounds)
        x_adv = x + delta
        return x_adv if self.bounds is None else x_adv.clamp(*self.bounds)

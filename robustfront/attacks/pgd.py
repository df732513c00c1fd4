"""Projected gradient descent (Madry et al., 2018) under L∞, L2 or L1, with restarts."""
from __future__ import annotations

from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import nn

from ..validation import check_bool
from .base import Attack, check_choice, check_int, check_number
from .lp import NORMS, ascent_step, project, random_delta
from .threat import DEFAULT_EPS

Loss = Literal["ce", "cw"]
Start = Literal[True, False, "uniform", "normal"]
LOSSES, STARTS = get_args(Loss), get_args(Start)


def margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample CW margin max_{j≠y} z_j - z_y: > 0 exactly when the sample is misclassified."""
    z_y = logits.gather(1, y[:, None]).squeeze(1)
    return logits.scatter(1, y[:, None], float("-inf")).amax(1) - z_y


class PGD(Attack):
    r"""PGD: `restarts` × (random start, `steps` ascent steps of size alpha, projection after each).

    Distance Measure : Linf, L2 or L1
    Paper: Towards Deep Learning Models Resistant to Adversarial Attacks, https://arxiv.org/abs/1706.06083
    L1 step: SLIDE, Adversarial Training and Robustness for Multiple Perturbations, https://arxiv.org/abs/1904.13000

    Arguments:
        eps (float): budget; default by norm: Linf 8/255, L2 128/255, L1 2000/255.
        alpha (float): step size; default eps/4 (2/255 for Linf 8/255, 32/255 for L2 128/255).
        steps (int): ascent steps per restart (default 10).
        norm (str): "Linf" (sign step), "L2" (normalised-gradient step, scaling onto the ball) or
            "L1" (SLIDE sparse step, exact projection onto the L1 ball ∩ box).
        random_start (bool | str): True/"uniform": uniform in the L∞ ball, a random direction with
            radius eps·U(0,1) for L2/L1; "normal": x + 0.001·N(0,1), the TRADES/MART start; False: x.
        clamp_start (bool): project the random start into the ball and the box before the first
            gradient (default True). False: the first gradient is taken at the raw start, as the
            TRADES and MART reference code do with x + 0.001·N(0,1), which may leave [0,1] by ~0.001;
            every later iterate is projected either way.
        restarts (int): independent runs; per sample the run with the largest CW margin is kept
            (margin > 0 means fooled), so a sample fooled by any run counts as fooled.
        loss (str): "ce" cross-entropy, or "cw" the CW margin loss min(max_{j≠y} z_j - z_y, kappa).
        kappa (float): CW confidence cap (default inf, i.e. no cap).
        l1_top (float): fraction of coordinates an L1 step moves (default 0.05).
        bn_mode (str): "eval" (default) or "train", see `Attack`.
        bounds (tuple | None): the input box (default (0, 1)); None for unbounded inputs.

    Shape:
        - x: (N, ...) in bounds; y: (N,) int64; output: (N, ...) like x, detached.

    Examples::
        >>> atk = PGD(eps=8/255, alpha=2/255, steps=10)
        >>> x_adv = atk(model, x, y)
    """

    def __init__(self, eps: float | None = None, alpha: float | None = None, steps: int = 10, norm: str = "Linf",
                 random_start: bool | str = True, restarts: int = 1, loss: str = "ce", kappa: float = float("inf"),
                 l1_top: float = 0.05, *, clamp_start: bool = True, bn_mode: str = "eval", bounds=(0.0, 1.0)):
        check_choice("norm", norm, NORMS)
        super().__init__(DEFAULT_EPS[norm] if eps is None else eps, norm=norm, bn_mode=bn_mode, bounds=bounds)
        # alpha = 0 is a no-op, allowed only with eps = 0 (e.g. the first point of an eps sweep)
        self.alpha = check_number("alpha", self.eps / 4 if alpha is None else alpha, 0.0, strict=self.eps > 0)
        self.steps = check_int("steps", steps, 1)
        self.restarts = check_int("restarts", restarts, 1)
        self.random_start = check_choice("random_start", random_start, STARTS)
        self.clamp_start = check_bool("clamp_start", clamp_start)
        self.loss = check_choice("loss", loss, LOSSES)
        self.kappa = kappa if kappa == float("inf") else check_number("kappa", kappa, 0.0)
        self.l1_top = check_number("l1_top", l1_top, 0.0, strict=True)
        if self.l1_top > 1:
            raise ValueError(f"l1_top={l1_top!r} is invalid; allowed: 0 < l1_top <= 1")

    def loss_fn(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-sample loss to maximise, in fp32 (logits may come from autocast)."""
        logits = logits.float()
        if self.loss == "ce":
            return F.cross_entropy(logits, y, reduction="none")
        return margin(logits, y).clamp(max=self.kappa)

    def init_delta(self, x: torch.Tensor) -> torch.Tensor:
        if self.random_start in (True, "uniform"):
            delta = random_delta(x, self.eps, self.norm)
        elif self.random_start == "normal":
            delta = 0.001 * torch.randn_like(x)
        else:
            delta = torch.zeros_like(x)
        return project(delta, x, self.eps, self.norm, self.bounds) if self.clamp_start else delta

    def run(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One restart; returns x + δ after the last step."""
        delta = self.init_delta(x)
        for _ in range(self.steps):
            delta.requires_grad_(True)
            loss = self.loss_fn(model(x + delta), y).sum()  # sum: per-sample gradients independent of batch size
            grad, = torch.autograd.grad(loss, delta)  # input gradient only; the graph is freed here
            step = ascent_step(grad, x + delta.detach(), self.alpha, self.norm, self.l1_top, self.bounds)
            delta = project(delta.detach() + step, x, self.eps, self.norm, self.bounds)
        x_adv = x + delta
        return x_adv if self.bounds is None else x_adv.clamp(*self.bounds)  # float rounding only

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        best = self.run(model, x, y)
        if self.restarts == 1:
            return best
        with torch.no_grad():
            best_m = margin(model(best).float(), y)
        for _ in range(self.restarts - 1):
            x_adv = self.run(model, x, y)
            with torch.no_grad():
                m = margin(model(x_adv).float(), y)
                better = m > best_m  # margin > 0 exactly when fooled, so a fooling restart always wins
                best = torch.where(better.view(-1, *[1] * (x.dim() - 1)), x_adv, best)
                best_m = torch.where(better, m, best_m)
        return best

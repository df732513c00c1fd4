"""Momentum iterative FGSM (Dong et al., 2018), L∞, with robustfront's call shape `atk(model, x, y)`."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import Attack, check_int, check_number


class MIFGSM(Attack):
    r"""MI-FGSM: g ← μ·g + ∇/‖∇‖₁ ; x ← clip(x + α·sign(g)); no random start.

    Distance Measure : Linf
    Paper: Boosting Adversarial Attacks with Momentum, https://arxiv.org/abs/1710.06081

    Arguments:
        eps (float): L∞ budget (default 8/255).
        alpha (float): step size (default eps/steps, the paper's choice: the path length is eps).
        steps (int): iterations (default 10).
        decay (float): momentum μ (default 1.0).
        bn_mode (str), bounds (tuple | None): see `Attack`.

    Takes input gradients only (torch.autograd.grad on the input), never the parameters'.

    Examples::
        >>> x_adv = MIFGSM(eps=8/255)(model, x, y)
    """

    norms = ("Linf",)

    def __init__(self, eps: float = 8 / 255, alpha: float | None = None, steps: int = 10, decay: float = 1.0, *,
                 norm: str = "Linf", bn_mode: str = "eval", bounds=(0.0, 1.0)):
        super().__init__(eps, norm=norm, bn_mode=bn_mode, bounds=bounds)
        self.steps = check_int("steps", steps, 1)
        self.alpha = check_number("alpha", self.eps / self.steps if alpha is None else alpha, 0.0)
        self.decay = check_number("decay", decay, 0.0)

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x_adv = x.clone()
        g = torch.zeros_like(x)
        for _ in range(self.steps):
            x_adv.requires_grad_(True)
            loss = F.cross_entropy(model(x_adv).float(), y, reduction="sum")
            grad, = torch.autograd.grad(loss, x_adv)
            # per-sample L1 normalisation (the mean |g| differs by a constant factor: same signs)
            grad = grad / grad.abs().flatten(1).mean(1).clamp_min(1e-12).view(-1, *[1] * (x.dim() - 1))
            g = self.decay * g + grad
            x_adv = x_adv.detach() + self.alpha * g.sign()
            x_adv = torch.min(torch.max(x_adv, x - self.eps), x + self.eps)
            if self.bounds is not None:
                x_adv = x_adv.clamp(*self.bounds)
        return x_adv.detach()

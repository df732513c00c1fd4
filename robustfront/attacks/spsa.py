"""SPSA (Uesato et al., 2018): a gradient-free attack, batched over images and perturbation samples.

Gradient-free attacks do not read the model's gradients, so a defence that masks them cannot
hide from SPSA: SPSA accuracy clearly below a gradient attack's is a sign of gradient masking.
"""
from __future__ import annotations

import torch
from torch import nn

from .base import Attack, check_int, check_number
from .lp import project
from .pgd import margin


class SPSA(Attack):
    r"""SPSA with Adam on the CW margin max_{j≠y} z_j − z_y (the image is fooled once it is > 0).

    Paper: Adversarial Risk and the Dangers of Evaluating Against Weak Attacks, https://arxiv.org/abs/1802.05666

    Each iteration draws `samples` Rademacher directions v per image (antithetic pairs ±v), estimates
    the gradient as mean[(f(x+δv) − f(x−δv)) / 2δ · v], takes an Adam step of size `lr` and projects
    onto the `norm` ball ∩ `bounds`. Per image the first fooling point found is kept.

    Arguments:
        eps (float): budget (default 8/255).
        norm (str): "Linf" (default; the setting of the paper), "L2" or "L1" (projection only).
        iterations (int): Adam steps (default 100).
        samples (int): function evaluations per step and image, even (default 128).
        lr (float): Adam learning rate (default 0.01).
        delta (float): finite-difference step (default 0.01).
        max_batch (int): largest forward batch, images × samples (default 8192).
        bounds (tuple | None): the input box (default (0, 1)); None for unbounded inputs.

    Examples::
        >>> x_adv = SPSA(eps=8/255)(model, x, y)
    """

    def __init__(self, eps: float = 8 / 255, norm: str = "Linf", iterations: int = 100, samples: int = 128,
                 lr: float = 0.01, delta: float = 0.01, max_batch: int = 8192, *, bounds=(0.0, 1.0)):
        super().__init__(eps, norm=norm, bn_mode="eval", bounds=bounds)
        self.iterations = check_int("iterations", iterations, 1)
        self.samples = check_int("samples", samples, 2)
        if self.samples % 2:
            raise ValueError(f"samples={samples} is invalid; allowed: an even integer >= 2 (antithetic pairs)")
        self.lr = check_number("lr", lr, 0.0, strict=True)
        self.delta = check_number("delta", delta, 0.0, strict=True)
        self.max_batch = check_int("max_batch", max_batch, 1)

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        per = max(1, self.max_batch // self.samples)
        with torch.no_grad():
            return torch.cat([self._run(model, x[i:i + per], y[i:i + per]) for i in range(0, len(y), per)])

    def _run(self, model, x, y):
        n, half = len(y), self.samples // 2
        shape = x.shape[1:]
        view = (-1, *[1] * len(shape))
        delta = torch.zeros_like(x)
        m1, m2 = torch.zeros_like(x), torch.zeros_like(x)
        b1, b2, tiny = 0.9, 0.999, 1e-8
        best = x.clone()
        done = margin(model(x).float(), y) > 0
        y_rep = y.repeat_interleave(self.samples)
        for t in range(1, self.iterations + 1):
            v = torch.empty((n, half, *shape), device=x.device).bernoulli_(0.5).mul_(2).sub_(1)
            v = torch.cat([v, -v], 1)                                      # (n, S, ...)
            xq = (x + delta)[:, None] + self.delta * v
            if self.bounds is not None:
                xq = xq.clamp(*self.bounds)
            f = margin(model(xq.flatten(0, 1)).float(), y_rep).view(n, self.samples)
            # f(x+δv) − f(x−δv) pairs up sample k with k + S/2; v_k = −v_{k+S/2}
            diff = (f[:, :half] - f[:, half:]) / (2 * self.delta)
            grad = (diff.view(n, half, *[1] * len(shape)) * v[:, :half]).mean(1)
            grad = -grad                                                   # Adam descends; we ascend the margin
            m1.mul_(b1).add_(grad, alpha=1 - b1)
            m2.mul_(b2).addcmul_(grad, grad, value=1 - b2)
            step = self.lr * (m1 / (1 - b1 ** t)) / ((m2 / (1 - b2 ** t)).sqrt() + tiny)
            delta = project(delta - step, x, self.eps, self.norm, self.bounds)
            x_adv = x + delta
            fooled = margin(model(x_adv).float(), y) > 0
            new = fooled & ~done
            best = torch.where(new.view(view), x_adv, best)
            done |= fooled
            if bool(done.all()):  # sync: one read per iteration lets a batch stop early
                break
        # images never fooled keep their last iterate (the attack's best effort)
        return torch.where(done.view(view), best, x + delta)

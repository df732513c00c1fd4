"""Adversarial Vertex Mixup (Lee, Lee & Yoon, CVPR 2020): soft-labelled mixup towards an
adversarial vertex.

Paper: Adversarial Vertex Mixup: Toward Better Adversarially Robust Generalization,
https://arxiv.org/abs/2003.02484
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor

from ..validation import check_choice, check_number
from .base import OBJECTIVES, Objective, correct

Labels = Literal["soft", "hard"]
LABELS = get_args(Labels)


def smooth_labels(y: Tensor, num_classes: int, factor: float) -> Tensor:
    """φ(y, λ): probability λ on the true class, (1-λ)/(K-1) on each other class (rows sum to 1)."""
    other = (1.0 - factor) / (num_classes - 1)
    out = torch.full((len(y), num_classes), other, device=y.device)
    return out.scatter(1, y[:, None], factor)


@OBJECTIVES.register("avmixup")
@dataclass(eq=False, repr=False)
class AVmixup(Objective):
    r"""AVmixup: with δ = x' - x from the training attack,

        x_av = clip(x + γ·δ)                                   (the adversarial vertex)
        a_i ~ U(0, 1) per sample (Beta(1, 1))
        x̃   = a·x + (1-a)·x_av,     ỹ = a·φ(y, λ1) + (1-a)·φ(y, λ2)
        adv = mean_i CE_soft(f(x̃_i), ỹ_i) = -mean_i Σ_k ỹ_ik log p_k(x̃_i)

    φ is label smoothing (see `smooth_labels`). labels="hard" trains CE(f(x̃), y) with the hard
    labels instead, as AGR's reference code does (it builds ỹ but passes the hard targets to its
    loss). One train-mode forward (x̃); the aux term `clean` = CE(f(x), y) costs one more, only
    when requested (AGR + AVmixup takes g_c from it).

    The defaults are those of the PyTorch AVmixup code that AGR's reference copies (γ=2, λ1=0.5, λ2=0.7).
    The vertex is clipped to the attack's `bounds` (none: [0, 1] when no attack is given).

    Returns `({"adv"} [+ {"clean"}], {"adv_correct"} [+ {"clean_correct"}])`; adv_correct counts
    train-mode predictions on x̃ against y.
    """
    terms = ("adv",)
    aux = ("clean",)
    slots = {"clean": ("clean",), "adv": ("adv",)}

    gamma: float = 2.0      # γ: how far out the adversarial vertex lies, x + γ·δ
    lambda1: float = 0.5    # λ1: label smoothing of the soft label at the clean end, in [0, 1]
    lambda2: float = 0.7    # λ2: label smoothing of the soft label at the vertex, in [0, 1]
    labels: Labels = "soft"  # soft: the paper's mixed soft labels; hard: CE with y (AGR's reference code)

    def __post_init__(self):
        super().__post_init__()
        self.gamma = check_number("gamma", self.gamma, 0.0)
        self.lambda1 = check_number("lambda1", self.lambda1, 0.0, hi=1.0)
        self.lambda2 = check_number("lambda2", self.lambda2, 0.0, hi=1.0)
        self.labels = check_choice("labels", self.labels, LABELS)

    def mixed(self, x: Tensor, x_adv: Tensor, a: Tensor) -> Tensor:
        x_av = x + self.gamma * (x_adv - x)
        bounds = (0.0, 1.0) if self.attack is None else self.attack.bounds  # no attack: reused x' of [0,1] images
        if bounds is not None:
            x_av = x_av.clamp(*bounds)
        a = a.view(-1, *[1] * (x.dim() - 1)).to(x.dtype)
        return a * x + (1 - a) * x_av

    def compute(self, model, x, y):
        x_adv = self.attacked(model, x, y)
        a = self.cached("a", lambda: torch.rand(len(y), device=x.device))
        logits = model(self.mixed(x, x_adv, a)).float()
        if self.labels == "soft":
            k = logits.shape[1]
            af = a.float()[:, None]
            target = af * smooth_labels(y, k, self.lambda1) + (1 - af) * smooth_labels(y, k, self.lambda2)
            adv = -(target * F.log_softmax(logits, dim=1)).sum(1).mean()
        else:
            adv = F.cross_entropy(logits, y)
        losses, stats = {"adv": adv}, {"adv_correct": correct(logits, y)}
        if "clean" in self.wanted:
            logits_clean = model(x).float()
            losses["clean"] = F.cross_entropy(logits_clean, y)
            stats["clean_correct"] = correct(logits_clean, y)
        return losses, stats


__all__ = ["AVmixup", "smooth_labels"]

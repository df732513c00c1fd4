"""Fast Gradient Sign Method (Goodfellow et al., 2015)."""
from __future__ import annotations

from .pgd import PGD


class FGSM(PGD):
    r"""FGSM: x' = clip(x + eps·sign(∇ₓ loss), box); one L∞ step of PGD from x, no random start.

    Distance Measure : Linf
    Paper: Explaining and Harnessing Adversarial Examples, https://arxiv.org/abs/1412.6572

    Arguments:
        eps (float): L∞ budget (default 8/255).
        loss (str): "ce" (default) or "cw".
        bn_mode (str), bounds (tuple | None): see `Attack`.

    Shape:
        - x: (N, ...) in bounds; y: (N,) int64; output: (N, ...) like x, detached.

    Examples::
        >>> x_adv = FGSM(eps=8/255)(model, x, y)
    """

    norms = ("Linf",)

    def __init__(self, eps: float = 8 / 255, loss: str = "ce", *, norm: str = "Linf", bn_mode: str = "eval",
                 bounds=(0.0, 1.0)):
        super().__init__(eps, alpha=eps, steps=1, norm=norm, random_start=False, loss=loss,
                         bn_mode=bn_mode, bounds=bounds)

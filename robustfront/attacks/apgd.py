"""APGD-CE, APGD-DLR and targeted APGD-DLR (Croce & Hein, 2020) as training attacks.

Wraps the official implementation (`pyautoattack.autopgd_base`), imported when the attack first
runs, so this module imports without it.
"""
from __future__ import annotations

import warnings

import torch
from torch import nn

from . import official
from .base import Attack, check_choice, check_int, check_number
from .pgd import margin
from .threat import DEFAULT_EPS, NORMS as APGD_NORMS

APGD_LOSSES = ("ce", "dlr")


class APGD(Attack):
    r"""APGD with the training-attack call shape `x_adv = atk(model, x, y)`.

    Distance Measure : Linf, L2 or L1
    Paper: Reliable evaluation of adversarial robustness with an ensemble of diverse parameter-free
    attacks, https://arxiv.org/abs/2003.01690

    One run (n_restarts = 1) of the official `APGDAttack.attack_single_run` on every sample of the
    batch, returning per sample the iterate with the highest loss (the official `best_loss=True`
    output: fooled samples come back fooled when the loss says so, the others at their strongest
    point, never reset to x as AutoAttack's evaluation output does). Targeted (loss "dlr" only,
    `APGDAttack_targeted`): one run per target class, the classes ranked 2nd, 3rd, … by the clean
    logits (eval mode), keeping per sample the run with the largest CW margin max_{j≠y} z_j - z_y
    (so any fooling run wins).

    The official code's own `perturb` reseeds the global RNG with a fixed seed on every call
    (every batch would get the same random start); it is not used here, so the random start draws
    from the caller's RNG stream. The official code reads values on the host (`nonzero`, boolean
    indexing inside its step-size schedule), so these attacks synchronise the GPU a few times per
    step; that is accepted for these optional training attacks (PGD does not sync).

    The model runs in eval mode (`bn_mode`, see `Attack`) and its modes are restored; logits are
    cast to fp32 before the official losses; input gradients come from torch.autograd.grad, so
    parameters' .grad are untouched. The device is taken from x. The official "points with zero
    gradient" warning is silenced (a training batch often has a few such samples).

    Arguments:
        eps (float): budget; default by norm: Linf 8/255, L2 128/255, L1 2000/255.
        steps (int): APGD iterations (default 100, AutoAttack's budget; a training threat model
            passes its own, e.g. 10).
        norm (str): "Linf", "L2" or "L1" (the official L1 variant).
        loss (str): "ce" or "dlr" (DLR needs at least 3 classes, the targeted DLR at least 4).
        targeted (bool): targeted DLR (APGD-T); requires loss="dlr".
        n_target_classes (int | None): target classes tried by APGD-T, each one run of `steps`
            iterations; None (default): AutoAttack's 9 (L1: 5), at most K - 1 for K classes.
        rho (float): the official step-size-halving threshold (default 0.75).
        alpha: accepted so that the trainer can build every attack with the same keywords as PGD,
            and ignored: APGD sets its own step size (2·eps at first, halved when progress stalls).
        bn_mode (str): "eval" (default) or "train", see `Attack`.
        bounds: only (0, 1), the box the official code clips to.

    Shape:
        - x: (N, ...) in [0, 1]; y: (N,) int64; output: (N, ...) like x, detached.

    Examples::
        >>> x_adv = APGD(eps=8/255, steps=10, loss="dlr")(model, x, y)
    """

    def __init__(self, eps: float | None = None, steps: int = 100, norm: str = "Linf", loss: str = "ce",
                 targeted: bool = False, n_target_classes: int | None = None, rho: float = 0.75,
                 alpha: float | None = None, *, bn_mode: str = "eval", bounds=(0.0, 1.0)):
        check_choice("norm", norm, APGD_NORMS)
        official.check_unit_box(bounds, "APGD")
        super().__init__(DEFAULT_EPS[norm] if eps is None else eps, norm=norm, bn_mode=bn_mode, bounds=(0.0, 1.0))
        self.steps = check_int("steps", steps, 1)
        self.loss = check_choice("loss", loss, APGD_LOSSES)
        self.targeted = bool(targeted)
        if self.targeted and self.loss != "dlr":
            raise ValueError(f"loss={loss!r} with targeted=True is invalid; allowed: loss='dlr' (APGD-T)")
        self.n_target_classes = None if n_target_classes is None else check_int("n_target_classes",
                                                                                 n_target_classes, 1)
        self.rho = check_number("rho", rho, 0.0, strict=True)

    @property
    def official_name(self) -> str:
        """This attack's name among the official AutoAttack attacks (robustfront's spelling)."""
        return "apgd_t" if self.targeted else f"apgd_{self.loss}"

    def targets(self, n_classes: int) -> int:
        """Target classes APGD-T tries on a model with `n_classes` outputs."""
        if self.n_target_classes is None:
            return min(5 if self.norm == "L1" else 9, n_classes - 1)
        if self.n_target_classes > n_classes - 1:
            raise ValueError(f"n_target_classes={self.n_target_classes} is invalid for {n_classes} classes; "
                             f"allowed: 1 to {n_classes - 1}")
        return self.n_target_classes

    def robust_mask(self, model, x, y, *, batch_size: int = 500, seed: int = 0, progress=None):
        """The official AutoAttack runner's per-sample result (its seeding, its check of the model,
        attacks on the still-correct points only), with this attack's iterations and targets. Evaluation
        takes the same result from robustfront's cascade (eval/cascade.py) and uses this at ε = 0 only."""
        from .autoattack import run_official
        out = run_official(model, x, y, eps=self.eps, norm=self.norm, attacks=[self.official_name], seed=seed,
                           batch_size=batch_size, n_iter=self.steps, n_target_classes=self.n_target_classes)
        if progress is not None:
            progress.update(len(y))
        return out

    def _official(self, model: nn.Module, x: torch.Tensor):
        need = 4 if self.targeted else 3 if self.loss == "dlr" else 2

        def predict(z):
            logits = model(z).float()
            # DLR reads the 3rd (targeted: 4th) largest logit; checked on the shape, no extra forward
            if logits.shape[1] < need:
                name = "targeted APGD-DLR" if self.targeted else f"APGD-{self.loss.upper()}"
                raise ValueError(f"{name} needs at least {need} classes; the model has {logits.shape[1]}")
            return logits

        kw = dict(n_iter=self.steps, norm=self.norm, n_restarts=1, eps=self.eps, seed=0, rho=self.rho,
                  device=x.device, verbose=False)
        if self.targeted:
            kw["n_target_classes"] = 1
        atk = official.apgd_object(predict, targeted=self.targeted, loss=self.loss, **kw)
        atk.init_hyperparam(x)
        return atk

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.eps == 0:
            return x.clone()
        with warnings.catch_warnings():
            # the official DLR code warns about zero input gradients on every batch where some
            # sample has one (e.g. confidently classified samples): noise for a training attack
            warnings.filterwarnings("ignore", message=r"there are \d+ points? with zero gradient")
            return self._perturb(model, x, y)

    def _perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        atk = self._official(model, x)
        if not self.targeted:
            return atk.attack_single_run(x, y)[0].clamp(0.0, 1.0)
        with torch.no_grad():
            logits = atk.model(x)  # the checked predict above
        n_targets = self.targets(logits.shape[1])
        order = logits.sort(dim=1)[1]
        best, best_m = None, None
        for target_class in range(2, n_targets + 2):
            atk.y_target = order[:, -target_class]
            x_adv = atk.attack_single_run(x, y)[0].clamp(0.0, 1.0)
            if best is None:
                best = x_adv
                if n_targets == 1:
                    break
                with torch.no_grad():
                    best_m = margin(model(best).float(), y)
                continue
            with torch.no_grad():
                m = margin(model(x_adv).float(), y)
                better = m > best_m
                best = torch.where(better.view(-1, *[1] * (x.dim() - 1)), x_adv, best)
                best_m = torch.where(better, m, best_m)
        return best



__all__ = ["APGD"]

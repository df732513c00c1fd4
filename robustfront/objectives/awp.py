"""Adversarial Weight Perturbation (Wu, Xia & Wang, 2020) around any objective.

Paper: Adversarial Weight Perturbation Helps Robust Generalization, https://arxiv.org/abs/2004.05884
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..attacks.base import check_int, check_number
from .base import Objective
from .pgd_at import PGDAT
from .vanilla import Vanilla


class _Record:
    """Stands in for an attack: runs it and keeps every output, in call order."""

    def __init__(self, attack):
        self.attack, self.outputs = attack, []

    def __call__(self, model, x, y):
        x_adv = self.attack(model, x, y)
        self.outputs.append(x_adv)
        return x_adv


class _Replay:
    """Stands in for an attack: returns the recorded outputs again, in the same order."""

    def __init__(self, outputs):
        self.outputs, self.i = outputs, 0

    def __call__(self, model, x, y):
        if self.i >= len(self.outputs) or self.outputs[self.i].shape != x.shape:
            raise RuntimeError("AWP: the wrapped objective called its attack differently on the second pass")
        x_adv = self.outputs[self.i]
        self.i += 1
        return x_adv


class AWP(Objective):
    r"""Adversarial weight perturbation around a wrapped objective.

    One call `losses, stats = awp(model, x, y)`:

    (a) the wrapped objective runs at the current weights w; the sum of its terms named in
        `perturb_terms` (all terms by default) is differentiated w.r.t. every trainable weight
        tensor with `p.dim() > 1` (conv and linear weights; biases and BatchNorm stay unperturbed,
        as in the reference code) — one train-mode pass like the reference's proxy step;
    (b) each such tensor is moved in place by v = γ·‖w‖·g/‖g‖ (layer-wise; ‖g‖ = 0 gives v = 0);
    (c) the wrapped objective runs again at w + v, reusing the adversarial examples of (a) (its
        attack is recorded in (a) and replayed in (c), as the reference computes x' once at w);
        its losses and stats are returned, so the trainer's gradients are taken at w + v;
    (d) `after_backward(model)` — the trainer calls it after computing gradients and before
        `optimizer.step()` — copies the saved weights back, exactly (no w + v - v rounding).

    Differences from the reference code (csdongxian/AWP): the reference restores w *after* the
    optimiser step (w + v - lr·g - v), so weight decay there sees w + v; here the step is taken
    from w. The reference's proxy forward updates only the proxy's BatchNorm statistics; here
    pass (a) runs on the model itself, and its BatchNorm buffers are saved before (a) and put back
    after it, so the running statistics are updated once per step, by pass (c).

    Cost: one extra forward/backward of the wrapped objective's loss terms per step (the attack is
    not repeated); objectives whose attack is None are simply run twice. If a previous call's
    perturbation was never removed (after_backward not called), it is removed first.

    Arguments:
        objective: the wrapped objective (any, with `attack` attribute or not).
        gamma (float): γ, the relative size of the weight perturbation (default 0.01).
        warmup_epochs (int): no perturbation before this epoch; the trainer must then call
            `on_epoch(epoch)` at the start of each epoch (default 0: always on).
        perturb_terms (tuple | None): terms whose sum gives the perturbation direction (None: all
            terms). AT-AWP's reference uses the adversarial CE only, TRADES-AWP the whole TRADES loss.

    No host sync: norms and scales stay on the device.
    """

    def __init__(self, objective: Objective, gamma: float = 0.01, warmup_epochs: int = 0,
                 perturb_terms: tuple[str, ...] | None = None):
        super().__init__(objective.attack)
        self.objective = objective
        self.gamma = check_number("gamma", gamma, 0.0)
        self.warmup_epochs = check_int("warmup_epochs", warmup_epochs, 0)
        self.perturb_terms = None if perturb_terms is None else tuple(perturb_terms)
        unknown = set(self.perturb_terms or ()) - set(objective.terms)
        if unknown:
            raise ValueError(f"perturb_terms {sorted(unknown)} are not terms of {type(objective).__name__}; "
                             f"allowed: {', '.join(objective.terms)}")
        self.terms = objective.terms
        self.terms_overlap = objective.terms_overlap
        self.views = objective.views
        self.epoch = 0
        self._saved: list[tuple[Tensor, Tensor]] | None = None

    def on_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    @property
    def active(self) -> bool:
        return self.gamma > 0 and self.epoch >= self.warmup_epochs

    @staticmethod
    def perturbed_params(model: nn.Module) -> list[Tensor]:
        return [p for p in model.parameters() if p.requires_grad and p.dim() > 1]

    def __call__(self, model, x, y):
        self.after_backward(model)  # a perturbation left over from an interrupted step
        if not self.active:
            return self.objective(model, x, y)
        inner = self.objective
        has_attack = inner.attack is not None
        record = _Record(inner.attack) if has_attack else None
        buffers = [b.detach().clone() for b in model.buffers()]
        try:
            if has_attack:
                inner.attack = record
            losses, _ = inner(model, x, y)  # (a)
            names = self.perturb_terms or tuple(losses)
            loss = torch.stack([losses[k].float() for k in names]).sum()
            params = self.perturbed_params(model)
            grads = torch.autograd.grad(loss, params, allow_unused=True)
            del losses, loss
        finally:
            if has_attack:
                inner.attack = record.attack
            # after the backward: BatchNorm saves its running buffers for backward
            with torch.no_grad():
                for b, saved in zip(model.buffers(), buffers):
                    b.copy_(saved)
        with torch.no_grad():  # (b)
            saved = []
            for p, g in zip(params, grads):
                if g is None:
                    continue
                saved.append((p, p.detach().clone()))
                scale = self.gamma * p.norm() / (g.norm() + 1e-20)
                p.add_(g * scale.to(g.dtype))
            self._saved = saved
        try:  # (c)
            if has_attack:
                inner.attack = _Replay(record.outputs)
            return inner(model, x, y)
        finally:
            if has_attack:
                inner.attack = record.attack

    def after_backward(self, model: nn.Module | None = None) -> None:
        """Put the unperturbed weights back (exact copy); a no-op when nothing is perturbed."""
        if self._saved is None:
            return
        with torch.no_grad():
            for p, w in self._saved:
                p.copy_(w)
        self._saved = None

    def __repr__(self) -> str:
        return (f"AWP(objective={self.objective!r}, gamma={self.gamma}, warmup_epochs={self.warmup_epochs}, "
                f"perturb_terms={self.perturb_terms!r})")


class AWPAT(AWP):
    """AT-AWP: AWP around PGD-AT (adv = CE(f(x'), y)); the registry's `awp`."""

    def __init__(self, attack=None, gamma: float = 0.01, warmup_epochs: int = 0):
        super().__init__(PGDAT(attack), gamma=gamma, warmup_epochs=warmup_epochs)


class AWPVanilla(AWP):
    """AWP around `Vanilla` (clean = CE(f(x), y), adv = CE(f(x'), y)) for gradient-surgery combiners
    (AGR + AWP): the weight perturbation comes from the adversarial CE only, as in AT-AWP; both
    terms are then evaluated at the perturbed weights."""

    def __init__(self, attack=None, gamma: float = 0.01, warmup_epochs: int = 0):
        super().__init__(Vanilla(attack), gamma=gamma, warmup_epochs=warmup_epochs, perturb_terms=("adv",))


__all__ = ["AWP", "AWPAT", "AWPVanilla"]

"""Adversarial Weight Perturbation (Wu, Xia & Wang, 2020) around any objective.

Paper: Adversarial Weight Perturbation Helps Robust Generalization, https://arxiv.org/abs/2004.05884
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..validation import check_int, check_number, invalid
from .base import WRAPPERS, Wrapper
from .pgd_at import PGDAT
from .vanilla import Vanilla


class _Carry(torch.autograd.Function):
    """value (a detached loss) whose backward hands each parameter a precomputed gradient: a term
    whose gradient was taken at other weights than the ones in place when the trainer backpropagates."""

    @staticmethod
    def forward(ctx, value, grads, *params):
        ctx.grads = grads
        return value.clone()

    @staticmethod
    def backward(ctx, grad_out):
        return (None, None, *[None if g is None else g * grad_out.to(g.dtype) for g in ctx.grads])


@WRAPPERS.register("awp")
@dataclass(eq=False, repr=False)
class AWP(Wrapper):
    r"""Adversarial weight perturbation around a wrapped objective.

    One call `losses, stats = awp(model, x, y)`:

    (a) the wrapped objective runs at the current weights w (its attack runs here, once); the
        direction loss — the objective's own loss, or the sum of `perturb_terms` — is
        differentiated w.r.t. every trainable weight tensor with `p.dim() > 1` (conv and linear
        weights; biases and BatchNorm stay unperturbed, as in the reference code);
    (b) each such tensor is moved in place by v = γ·‖w‖·g/‖g‖ (layer-wise; ‖g‖ = 0 gives v = 0);
    (c) the wrapped objective runs again at w + v on the adversarial examples (and random draws)
        of (a) — `objective(model, x, y, adv)`, no attack; its losses and stats are returned, so
        the trainer's gradients are taken at w + v, except for the terms in `at_w`: their value and
        gradient are those of pass (a), at w (AGR + AWP takes g_c at w in its reference);
    (d) `after_backward(model)` — the trainer calls it after computing gradients and before
        `optimizer.step()` — copies the saved weights back, exactly (no w + v - v rounding).

    Differences from the reference code (csdongxian/AWP): the reference restores w *after* the
    optimiser step (w + v - lr·g - v), so weight decay there sees w + v; here the step is taken
    from w. The reference's proxy forward updates only the proxy's BatchNorm statistics; here
    pass (a) runs on the model itself, and its BatchNorm buffers are saved before (a) and put back
    after it, so the running statistics are updated once per step, by pass (c).

    Cost: one extra forward/backward of the wrapped objective's loss per step (the attack is not
    repeated), plus one backward per `at_w` term. A perturbation left in place (after_backward not
    called) is removed first. perturb_terms: AT-AWP's reference uses the adversarial CE, TRADES-AWP
    the whole TRADES loss, AGR + AWP the adversarial CE only ("adv").

    No host sync: norms and scales stay on the device.
    """
    gamma: float = 0.01                           # γ: size of the weight perturbation relative to each weight's norm
    warmup_epochs: int = 0                        # no perturbation before this epoch (0: always on)
    perturb_terms: tuple[str, ...] | None = None  # terms whose sum gives the perturbation direction (none: the loss)
    at_w: tuple[str, ...] = ()                    # terms whose value and gradient are taken at the unperturbed weights

    def __post_init__(self):
        super().__post_init__()
        objective = self.objective
        self.gamma = check_number("gamma", self.gamma, 0.0)
        self.warmup_epochs = check_int("warmup_epochs", self.warmup_epochs, 0)
        known = tuple(objective.terms) + tuple(objective.aux)
        self.perturb_terms = None if self.perturb_terms is None else tuple(self.perturb_terms)
        self.at_w = tuple(self.at_w)
        for name, ts in (("perturb_terms", self.perturb_terms or ()), ("at_w", self.at_w)):
            if set(ts) - set(known):
                raise invalid(name, list(ts), f"terms of {type(objective).__name__}: {', '.join(known)}")
        if set(self.at_w) & set(objective.aux):
            objective.request(set(objective.wanted) | (set(self.at_w) & set(objective.aux)))
        self.terms, self.aux, self.slots = objective.terms, objective.aux, objective.slots
        self._saved: list[tuple[Tensor, Tensor]] | None = None

    wanted = property(lambda self: self.objective.wanted)

    def request(self, names) -> None:
        self.objective.request(set(names) | (set(self.at_w) & set(self.objective.aux)))

    @property
    def active(self) -> bool:
        return self.gamma > 0 and self.epoch >= self.warmup_epochs

    @staticmethod
    def perturbed_params(model: nn.Module) -> list[Tensor]:
        return [p for p in model.parameters() if p.requires_grad and p.dim() > 1]

    def __call__(self, model, x, y, adv=None):
        self.after_backward(model)  # a perturbation left over from an interrupted step
        inner = self.objective
        if not self.active:
            return inner(model, x, y) if adv is None else inner(model, x, y, adv)
        buffers = [b.detach().clone() for b in model.buffers()]
        try:
            losses, _ = inner(model, x, y) if adv is None else inner(model, x, y, adv)  # (a)
            used = dict(inner.last_adv)
            direction = inner.loss(losses) if self.perturb_terms is None else \
                torch.stack([losses[t].float() for t in self.perturb_terms]).sum()
            params = self.perturbed_params(model)
            grads = torch.autograd.grad(direction, params, allow_unused=True, retain_graph=bool(self.at_w))
            carried = {}
            if self.at_w:
                trainable = [p for p in model.parameters() if p.requires_grad]
                for i, t in enumerate(self.at_w):
                    g = torch.autograd.grad(losses[t], trainable, allow_unused=True,
                                            retain_graph=i + 1 < len(self.at_w))
                    carried[t] = _Carry.apply(losses[t].detach(), g, *trainable)
            del losses, direction
        finally:
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
                p.add_(g * (self.gamma * p.norm() / (g.norm() + 1e-20)).to(g.dtype))
            self._saved = saved
        out, stats = inner(model, x, y, used)  # (c)
        out.update(carried)
        return out, stats

    def after_backward(self, model: nn.Module | None = None) -> None:
        """Put the unperturbed weights back (exact copy); a no-op when nothing is perturbed."""
        self.objective.after_backward(model)
        if self._saved is None:
            return
        with torch.no_grad():
            for p, w in self._saved:
                p.copy_(w)
        self._saved = None

    def __repr__(self) -> str:
        return (f"AWP(objective={self.objective!r}, gamma={self.gamma}, warmup_epochs={self.warmup_epochs}, "
                f"perturb_terms={self.perturb_terms!r}, at_w={self.at_w!r})")


class AWPAT(AWP):
    """AT-AWP: AWP around PGD-AT (adv = CE(f(x'), y)); the preset `awp`."""

    def __init__(self, attack=None, **options):
        super().__init__(PGDAT(attack), **options)


class AWPVanilla(AWP):
    """AWP around `Vanilla` (clean = CE(f(x), y), adv = CE(f(x'), y)) as AGR + AWP's reference runs
    it: the weight perturbation comes from the adversarial CE only, and the clean CE (g_c) is
    taken at the unperturbed weights w; the preset `agr_awp`."""

    def __init__(self, attack=None, **options):
        super().__init__(Vanilla(attack), **options, perturb_terms=("adv",), at_w=("clean",))


__all__ = ["AWP", "AWPAT", "AWPVanilla"]

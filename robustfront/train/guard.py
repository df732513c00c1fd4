"""An optimizer step that cannot leave non-finite weights behind, without a host sync.

Zeroing a NaN gradient is not enough: weight decay and momentum would still move the weights, and
a huge learning rate can overflow finite gradients into infinite weights. So the guard keeps a copy
of the weights and momentum buffers, takes the step, and puts the copy back (a `torch.where` on a
device flag, no `if`) when the gradient or the stepped weights are not finite. The step is then
skipped exactly: as if it never happened, and counted in `skipped`.

Momentum buffers are created as zeros up front, so that they exist to be copied: with dampening 0
the first SGD update from a zero buffer (0·μ + g) equals the lazily cloned one (g) bit for bit.
The model's floating-point buffers (BatchNorm running statistics, updated by the train-mode forwards)
are copied by `begin()` before the step's forwards and put back with the rest.
"""
from __future__ import annotations

import torch


class UpdateGuard:
    def __init__(self, params: list[torch.Tensor], opt: torch.optim.Optimizer, buffers=()):
        self.params, self.opt = params, opt
        self.buffers = [b for b in buffers if b.is_floating_point()]
        self.buffer_backup = [b.detach().clone() for b in self.buffers]
        device = params[0].device if params else torch.device("cpu")
        self.skipped = torch.zeros((), dtype=torch.int64, device=device)
        self.rebind()

    def rebind(self) -> None:
        """(Re)collect the state tensors to protect, e.g. after optimizer.load_state_dict."""
        for g in self.opt.param_groups:
            if g.get("momentum", 0) and g.get("dampening", 0) == 0:
                for p in g["params"]:
                    st = self.opt.state[p]
                    if st.get("momentum_buffer") is None:
                        st["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        bufs = [self.opt.state[p][k] for p in self.params for k in ("momentum_buffer",)
                if isinstance(self.opt.state.get(p, {}).get(k), torch.Tensor)]
        self.state = [p.data for p in self.params] + bufs
        self.backup = [t.detach().clone() for t in self.state]

    @torch.no_grad()
    def begin(self) -> None:
        """Before the step's forwards: keep the running statistics they are about to update."""
        if self.buffers:
            torch._foreach_copy_(self.buffer_backup, self.buffers)

    @torch.no_grad()
    def step(self) -> None:
        grads = [p.grad for p in self.params if p.grad is not None]
        if not grads:
            return
        # max-norms: NaN and inf propagate, and unlike a 2-norm they cannot overflow on finite values
        ok = torch.isfinite(torch.stack(torch._foreach_norm(grads, float("inf")))).all()
        torch._foreach_copy_(self.backup, self.state)
        self.opt.step()
        after = self.state + self.buffers
        ok = ok & torch.isfinite(torch.stack(torch._foreach_norm(after, float("inf")))).all()
        for t, b in zip(after, self.backup + self.buffer_backup):
            t.copy_(torch.where(ok, t, b))
        self.skipped.add_((~ok).long())


__all__ = ["UpdateGuard"]

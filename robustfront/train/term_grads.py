"""Per-term gradients into preallocated flat buffers, for combiners that need them separately."""
from __future__ import annotations

import torch


class TermGrads:
    """One flat buffer per loss term, allocated once; each term's backward accumulates into views of it.

    Separate backward passes (no concatenated batch, no per-step allocation): before term t's
    backward every parameter's .grad is pointed at its slice of buffer t (zeroed), so autograd
    writes the gradient there in place. Returns, per term, the list of per-parameter views.
    """

    def __init__(self, params: list[torch.Tensor], terms: tuple[str, ...]):
        if len({(p.dtype, p.device) for p in params}) != 1:
            raise ValueError("flat gradient buffers need parameters of one dtype and device")
        if not all(p.is_contiguous() or p.is_contiguous(memory_format=torch.channels_last) for p in params):
            raise ValueError("flat gradient buffers need dense parameters")
        sizes = [p.numel() for p in params]
        self.params, self.terms = params, terms
        # the terms' buffers are rows of one block, so data-parallel training averages them in ONE all-reduce
        self.block = params[0].new_zeros(len(terms), sum(sizes))
        self.flat = dict(zip(terms, self.block.unbind(0)))
        # each view takes its parameter's strides (e.g. channels_last), as autograd expects of .grad
        self.views = {t: [v.as_strided(p.size(), p.stride()) for v, p in zip(f.split(sizes), params)]
                      for t, f in self.flat.items()}

    def __call__(self, losses: dict[str, torch.Tensor]) -> dict[str, list[torch.Tensor]]:
        for i, t in enumerate(self.terms):
            self.flat[t].zero_()
            for p, v in zip(self.params, self.views[t]):
                p.grad = v
            torch.autograd.backward(losses[t], inputs=self.params, retain_graph=i + 1 < len(self.terms))
        for p in self.params:   # the buffers are read by the combiner; .grad gets the update next
            p.grad = None
        return self.views

"""Synchronised BatchNorm for data-parallel training on any backend (gloo on CPUs as well as NCCL).

torch's own SyncBatchNorm runs on GPUs only; this one is written with a differentiable all-reduce
(`AllReduce`: the sum over the ranks, whose backward is the sum of the ranks' gradients), so the
statistics of a training-mode forward are those of the GLOBAL batch on every rank, exactly as one
process would compute them on that batch, and the backward carries the cross-rank terms. Two
collectives per layer and forward: the per-channel sums (and the count), then the centred squares
(two passes, as numerically safe as one process). Eval mode (attacks, validation) uses the running
statistics and no collective.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


class AllReduce(torch.autograd.Function):
    """Sum over the ranks; the gradient of every rank's input is the sum of all ranks' output gradients."""

    @staticmethod
    def forward(ctx, t):
        t = t.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(t)
        return t

    @staticmethod
    def backward(ctx, grad):
        grad = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(grad)
        return grad


class SyncBatchNorm(_BatchNorm):
    def _check_input_dim(self, x):
        if x.dim() < 2:
            raise ValueError(f"SyncBatchNorm expects inputs of at least 2 dimensions (N, C, ...); got {x.dim()}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        all_reduce = AllReduce.apply
        self._check_input_dim(x)
        C, dims = x.shape[1], [0] + list(range(2, x.dim()))
        shape = [1, C] + [1] * (x.dim() - 2)
        xf = x.float()
        tot = all_reduce(torch.cat([xf.sum(dims), xf.new_full((1,), x.numel() // C)]))
        n = tot[C]
        mean = tot[:C] / n
        d = xf - mean.view(shape)
        var = all_reduce((d * d).sum(dims)) / n              # biased, as BatchNorm normalises
        y = d * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                f = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), f)
                unbiased = var.detach() * n / (n - 1).clamp_min(1)
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), f)
        return y.to(x.dtype)


def convert_sync_batchnorm(module: nn.Module) -> int:
    """Replace every BatchNorm layer of `module` in place by a SyncBatchNorm sharing its parameters and
    buffers (so an optimizer built before keeps working); returns how many were replaced."""
    count = 0
    for name, child in list(module.named_children()):
        if isinstance(child, _BatchNorm) and not isinstance(child, SyncBatchNorm):
            new = SyncBatchNorm(child.num_features, child.eps, child.momentum, child.affine, child.track_running_stats,
                                device=_device(child))
            for k, p in child._parameters.items():
                new._parameters[k] = p
            for k, b in child._buffers.items():
                new._buffers[k] = b
            new.train(child.training)
            setattr(module, name, new)
            count += 1
        else:
            count += convert_sync_batchnorm(child)
    return count


def _device(m: nn.Module):
    for t in list(m.parameters()) + list(m.buffers()):
        return t.device
    return None


__all__ = ["AllReduce", "SyncBatchNorm", "convert_sync_batchnorm"]

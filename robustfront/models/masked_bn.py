"""Train-mode BatchNorm over a subset of the batch chosen by a device mask, without a host sync.

A forward of only the selected samples (x[mask]) needs their count on the host: a data-dependent
batch size, one device->host sync. Forwarding the whole batch under `batch_stats_from(mask)`
instead gives every train-mode BatchNorm the statistics of the selected samples alone (mean and
biased variance for the normalisation, unbiased variance into the running average), so a selected
sample's output, its gradients and the running statistics are those of the compacted forward;
unselected samples are normalised with the same statistics and must be masked out of the loss.
Running statistics move only when at least two samples are selected (train-mode BatchNorm needs
two); `num_batches_tracked` still counts the call (it matters only for momentum=None).

It intercepts `torch.nn.functional.batch_norm` (nn.BatchNorm1d/2d/3d and timm's BatchNorm layers
call it); layers computing batch statistics otherwise (SyncBatchNorm's multi-process path) are
not masked. Eval-mode BatchNorm and per-sample layers (LayerNorm, GroupNorm) need no masking.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.overrides import TorchFunctionMode


def masked_batch_norm(x: Tensor, keep: Tensor, running_mean, running_var, weight, bias, momentum: float,
                      eps: float) -> Tensor:
    """F.batch_norm in training mode with statistics over the samples where `keep` (B,) is True."""
    dims = [0, *range(2, x.dim())]
    shape = [1, -1] + [1] * (x.dim() - 2)
    xf = x.float()                                   # statistics in fp32, as cuDNN keeps them under autocast
    w = keep.to(xf.dtype).view(-1, *[1] * (x.dim() - 1))
    images = keep.sum()
    n = images * (x[0, 0].numel() if x.dim() > 2 else 1)   # values per channel
    mean = (xf * w).sum(dims) / n.clamp_min(1)
    centred = xf - mean.view(shape)
    var = (centred.square() * w).sum(dims) / n.clamp_min(1)
    # under two samples there are no batch statistics (the caller masks these outputs out of its loss):
    # unit variance keeps the outputs, and so their gradients, finite instead of x/sqrt(eps)
    norm_var = torch.where(images >= 2, var, torch.ones_like(var))
    out = centred * torch.rsqrt(norm_var + eps).view(shape)
    if weight is not None:
        out = out * weight.view(shape)
    if bias is not None:
        out = out + bias.view(shape)
    if running_mean is not None:
        # through .data, as BatchNorm's kernel updates them: earlier train-mode forwards saved these
        # buffers for their backward (unused in training mode), and a version bump would fail it
        with torch.no_grad():
            ok = images >= 2
            unbiased = var * n / (n - 1).clamp_min(1)
            running_mean.data.copy_(torch.where(ok, torch.lerp(running_mean, mean.to(running_mean.dtype), momentum),
                                           running_mean))
            running_var.data.copy_(torch.where(ok, torch.lerp(running_var, unbiased.to(running_var.dtype), momentum),
                                          running_var))
    return out.to(x.dtype)


class batch_stats_from(TorchFunctionMode):  # noqa: N801 - used as a context manager, like torch.no_grad
    """`with batch_stats_from(mask): model(x)`: train-mode BatchNorm statistics from x[mask] only."""

    def __init__(self, keep: Tensor):
        super().__init__()
        self.keep = keep

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.batch_norm:
            return self._batch_norm(*args, **kwargs)
        return func(*args, **kwargs)

    def _batch_norm(self, input, running_mean, running_var, weight=None, bias=None, training=False,
                    momentum=0.1, eps=1e-5):
        if not training:   # eval mode: per-sample already
            return F.batch_norm(input, running_mean, running_var, weight, bias, training, momentum, eps)
        return masked_batch_norm(input, self.keep, running_mean, running_var, weight, bias, momentum, eps)


__all__ = ["batch_stats_from", "masked_batch_norm"]

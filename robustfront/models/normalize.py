"""Input normalisation as the first layer of every model, so that callers and attacks work in [0,1]."""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2471, 0.2435, 0.2616)  # per-pixel std of the training set (not the common 0.2023 typo)
# torchvision / timm ImageNet statistics: what most pretrained backbones (and ARES' robust ViT/Swin
# checkpoints) expect outside the model; timm's augreg ViTs use the "inception" 0.5/0.5 instead
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
NAMED_STATS = {"imagenet": (IMAGENET_MEAN, IMAGENET_STD), "inception": ((0.5,) * 3, (0.5,) * 3),
               "cifar10": (CIFAR10_MEAN, CIFAR10_STD)}


def default_stats(channels: int | None) -> tuple[list[float], list[float]]:
    """CIFAR-10's statistics for 3 channels, 0.5/0.5 per channel otherwise, identity (0/1) for flat vectors."""
    if channels is None:
        return [0.0], [1.0]
    if channels == 3:
        return list(CIFAR10_MEAN), list(CIFAR10_STD)
    return [0.5] * channels, [0.5] * channels


def parse_stats(value, name: str = "input_mean") -> list[float] | None:
    """A per-channel statistic from a flag or YAML: None, a number, a list, "0.485,0.456,0.406", or a
    name in NAMED_STATS ("imagenet"), which gives that set's mean, or its std when `name` ends in "std"."""
    if value is None:
        return None
    if isinstance(value, str) and value.strip().lower() in NAMED_STATS:
        mean, std = NAMED_STATS[value.strip().lower()]
        return list(std if name.endswith("std") else mean)
    items = value.split(",") if isinstance(value, str) else (value if isinstance(value, (list, tuple)) else [value])
    try:
        out = [float(v) for v in items]
    except (TypeError, ValueError):
        out = []
    if not out or not all(math.isfinite(v) for v in out):
        raise ValueError(f"{name}={value!r} is invalid; allowed: numbers (one or one per channel, e.g. "
                         f"0.485,0.456,0.406) or one of {', '.join(NAMED_STATS)}")
    return out


class Normalize(nn.Module):
    """(x - mean) / std over dim 1 (channels of B,C,H,W or features of B,D); length-1 stats broadcast.

    channels: the channel count the stats must fit (None for flat vectors: any length).

    mean/std are buffers (saved in the state_dict, moved by .to()); a None takes `default_stats(channels)`.
    `mean_values`/`std_values` keep the plain floats for the model's info(model).config.
    """

    def __init__(self, mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                 channels: int | None = 3):
        super().__init__()
        d_mean, d_std = default_stats(channels)
        mean = [float(v) for v in (d_mean if mean is None else mean)]
        std = [float(v) for v in (d_std if std is None else std)]
        # flat vectors (channels=None) may take one value per feature
        if len(mean) != len(std) or (channels is not None and len(mean) not in {1, channels}):
            fits = "one value each" if channels in (None, 1) else f"1 or {channels} values each, as many as stds"
            raise ValueError(f"--input-mean/--input-std (the normalisation mean/std)={mean}/{std}: {len(mean)}/"
                             f"{len(std)} values do not fit {channels} channels (the model's input); allowed: {fits}"
                             if channels is not None else f"--input-mean/--input-std={mean}/{std} have "
                             f"{len(mean)}/{len(std)} values; allowed: equal lengths")
        if min(std) <= 0:
            raise ValueError(f"std={std} has a value <= 0; allowed: all > 0")
        self.mean_values, self.std_values = mean, std
        self.register_buffer("mean", torch.tensor(mean))
        self.register_buffer("std", torch.tensor(std))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return (x - self.mean.view(shape)) / self.std.view(shape)

    def extra_repr(self) -> str:
        return f"mean={self.mean_values}, std={self.std_values}"

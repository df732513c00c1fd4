"""Multi-layer perceptron for flat vectors (e.g. the synthetic gaussian data) and small images."""
from __future__ import annotations

import math

import torch
from torch import nn

from .factory import MODELS
from .normalize import Normalize


class MLP(nn.Module):
    """Normalize -> flatten -> (Linear, ReLU[, Dropout]) per hidden width -> Linear.

    channels: channel count the Normalize layer sees (None for flat vectors, normalised as a whole).
    """

    def __init__(self, input_dim, num_classes=10, hidden=(256, 256), channels=None, mean=None, std=None,
                 dropout=0.0):
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout={dropout} is invalid; allowed: 0 <= dropout < 1")
        self.normalize = Normalize(mean, std, channels)
        layers, d = [], input_dim
        for h in hidden:
            layers += [nn.Linear(d, h), nn.ReLU()] + ([nn.Dropout(dropout)] if dropout else [])
            d = h
        self.net = nn.Sequential(*layers, nn.Linear(d, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalize(x).flatten(1))


@MODELS.register("mlp")
def mlp(num_classes=10, in_channels=3, input_size=32, mean=None, std=None, hidden=(256, 256),
        input_dim=None, input_shape=None, dropout=0.0):
    """Input: `input_shape` (any shape without the batch dim) if given, else `input_dim` (flat),
    else images of in_channels x input_size x input_size. Inputs of shape (C,H,W) are normalised per
    channel; flat ones as a whole (default identity)."""
    if input_shape is not None:
        input_dim, channels = math.prod(input_shape), (input_shape[0] if len(input_shape) == 3 else None)
    elif input_dim is not None:
        channels = None
    else:
        input_dim, channels = in_channels * input_size ** 2, in_channels
    if input_dim < 1:
        raise ValueError(f"input size {input_dim} is invalid; allowed: >= 1")
    return MLP(input_dim, num_classes, tuple(hidden), channels, mean, std, dropout)

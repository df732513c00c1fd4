"""A small conv net for quick runs: 8x8 digits to 32x32 images in seconds on a CPU."""
from __future__ import annotations

import torch
from torch import nn

from .factory import MODELS
from .normalize import Normalize


def _conv_bn_relu(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU())


class SmallCNN(nn.Module):
    """Four conv-BN-ReLU layers (width w, w, 2w, 2w; the 2nd and 4th with stride 2), global
    average pooling (so any input size works), one linear layer."""

    def __init__(self, num_classes=10, in_channels=3, mean=None, std=None, width=32):
        super().__init__()
        if width < 1:
            raise ValueError(f"width={width} is invalid; allowed: >= 1")
        self.normalize = Normalize(mean, std, in_channels)
        self.features = nn.Sequential(_conv_bn_relu(in_channels, width, 1), _conv_bn_relu(width, width, 2),
                                      _conv_bn_relu(width, 2 * width, 1), _conv_bn_relu(2 * width, 2 * width, 2),
                                      nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(self.normalize(x)))


@MODELS.register("small_cnn")
def small_cnn(num_classes=10, in_channels=3, input_size=32, mean=None, std=None, width=32):
    return SmallCNN(num_classes, in_channels, mean, std, width)

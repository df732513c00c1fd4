"""Wide ResNets (Zagoruyko & Komodakis, 2016): WRN-28-10 and WRN-34-10.

Layer names (block1..3, convShortcut, bn1, fc) follow the TRADES/MART code and RobustBench, so
their WRN checkpoints load once the `normalize.*` buffers are added.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .factory import MODELS
from .normalize import Normalize


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, out_planes: int, stride: int, dropout: float = 0.0):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, 1, 1, bias=False)
        self.dropout = dropout
        self.equal_in_out = in_planes == out_planes and stride == 1
        if not self.equal_in_out:
            self.convShortcut = nn.Conv2d(in_planes, out_planes, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = F.relu(self.bn1(x))
        # as in the reference: the projection shortcut sees the pre-activated input
        shortcut = x if self.equal_in_out else self.convShortcut(o)
        out = F.relu(self.bn2(self.conv1(o)))
        out = F.dropout(out, p=self.dropout, training=self.training)
        return self.conv2(out) + shortcut


class NetworkBlock(nn.Module):
    def __init__(self, n: int, in_planes: int, out_planes: int, stride: int, dropout: float):
        super().__init__()
        self.layer = nn.Sequential(*[BasicBlock(in_planes if i == 0 else out_planes, out_planes,
                                                stride if i == 0 else 1, dropout) for i in range(n)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


class WideResNet(nn.Module):
    """WRN-depth-widen: 3 groups of (depth-4)/6 pre-activation blocks, widths 16k, 32k, 64k."""

    def __init__(self, depth=28, widen=10, num_classes=10, in_channels=3, mean=None, std=None, dropout=0.0):
        super().__init__()
        if depth < 10 or (depth - 4) % 6:
            raise ValueError(f"depth={depth} is invalid for a Wide ResNet; allowed: 6n+4, n >= 1 (10, 16, 28, ...)")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout={dropout} is invalid; allowed: 0 <= dropout < 1")
        n, w = (depth - 4) // 6, [16, 16 * widen, 32 * widen, 64 * widen]
        self.normalize = Normalize(mean, std, in_channels)
        self.conv1 = nn.Conv2d(in_channels, w[0], 3, 1, 1, bias=False)
        self.block1 = NetworkBlock(n, w[0], w[1], 1, dropout)
        self.block2 = NetworkBlock(n, w[1], w[2], 2, dropout)
        self.block3 = NetworkBlock(n, w[2], w[3], 2, dropout)
        self.bn1 = nn.BatchNorm2d(w[3])
        self.fc = nn.Linear(w[3], num_classes)
        for m in self.modules():  # the reference initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block3(self.block2(self.block1(self.conv1(self.normalize(x)))))
        out = F.relu(self.bn1(out))
        return self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))


def wide_resnet(depth, widen, num_classes=10, in_channels=3, mean=None, std=None, dropout=0.0):
    return WideResNet(depth, widen, num_classes, in_channels, mean, std, dropout)


@MODELS.register("wrn28_10")
def wrn28_10(num_classes=10, in_channels=3, input_size=32, mean=None, std=None, dropout=0.0):
    return wide_resnet(28, 10, num_classes, in_channels, mean, std, dropout)


@MODELS.register("wrn34_10")
def wrn34_10(num_classes=10, in_channels=3, input_size=32, mean=None, std=None, dropout=0.0):
    return wide_resnet(34, 10, num_classes, in_channels, mean, std, dropout)

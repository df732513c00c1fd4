"""ResNet-18/34 for CIFAR (He et al., 2016): BasicBlock, 3x3 stem, no max-pool.

Layer names follow kuangliu/pytorch-cifar, the code TRADES, MART and RAAT build on, so their
checkpoints load once the `normalize.*` buffers are added.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .factory import MODELS
from .normalize import Normalize


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


def stages(block, width: int, num_blocks) -> list[nn.Sequential]:
    """The four stages of a (pre-activation) ResNet: `num_blocks[i]` blocks of width·2^i channels, the
    first block of stages 2-4 striding 2."""
    out, in_planes = [], width
    for i, n in enumerate(num_blocks):
        planes, layers = width * 2 ** i, []
        for stride in [1 if i == 0 else 2] + [1] * (n - 1):
            layers.append(block(in_planes, planes, stride))
            in_planes = planes
        out.append(nn.Sequential(*layers))
    return out


class ResNet(nn.Module):
    """CIFAR ResNet. Adaptive average pooling at the end, so any input of 8x8 or more works.

    Args:
        num_blocks: BasicBlocks per stage ([2,2,2,2] is ResNet-18, [3,4,6,3] ResNet-34).
        width: channels of the first stage (64 in the paper); stages double it.
    """

    def __init__(self, num_blocks, num_classes=10, in_channels=3, mean=None, std=None, width=64):
        super().__init__()
        self.normalize = Normalize(mean, std, in_channels)
        self.conv1 = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.layer1, self.layer2, self.layer3, self.layer4 = stages(BasicBlock, width, num_blocks)
        self.linear = nn.Linear(8 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(self.normalize(x))))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))


@MODELS.register("resnet18")
def resnet18(num_classes=10, in_channels=3, input_size=32, mean=None, std=None, width=64):
    return ResNet([2, 2, 2, 2], num_classes, in_channels, mean, std, width)


@MODELS.register("resnet34")
def resnet34(num_classes=10, in_channels=3, input_size=32, mean=None, std=None, width=64):
    return ResNet([3, 4, 6, 3], num_classes, in_channels, mean, std, width)

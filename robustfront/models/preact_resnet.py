"""PreActResNet-18 for CIFAR (He et al., 2016, "Identity Mappings in Deep Residual Networks").

The architecture of AGR's reference setup and of Rice et al.'s robust-overfitting code; layer
names follow that code (conv1, layer1..4, bn, linear). `head_bn=False` drops the final BN-ReLU
before pooling: kuangliu/pytorch-cifar's PreActResNet (used by TRADES/MART-style repositories)
has none, so its checkpoints carry no `bn.*` keys and its logits come from the raw last block.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .factory import MODELS
from .normalize import Normalize
from .resnet import stages


class PreActBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        # a projection where the shape changes; None (no module, no state_dict keys): the identity
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        # a projection shortcut sees the pre-activated input, the identity the raw one
        shortcut = x if self.shortcut is None else self.shortcut(out)
        out = self.conv2(F.relu(self.bn2(self.conv1(out))))
        return out + shortcut


class PreActResNet(nn.Module):
    def __init__(self, num_blocks, num_classes=10, in_channels=3, mean=None, std=None, width=64, head_bn=True):
        super().__init__()
        self.normalize = Normalize(mean, std, in_channels)
        self.conv1 = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
        self.layer1, self.layer2, self.layer3, self.layer4 = stages(PreActBlock, width, num_blocks)
        # the final BN-ReLU; None (no module, no `bn.*` keys): kuangliu's layout, logits from the raw last block
        self.bn: nn.Module | None = nn.BatchNorm2d(8 * width) if head_bn else None
        self.linear = nn.Linear(8 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.normalize(x))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        if self.bn is not None:
            out = F.relu(self.bn(out))
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))


@MODELS.register("preact_resnet18")
def preact_resnet18(num_classes=10, in_channels=3, input_size=32, mean=None, std=None, width=64, head_bn=True):
    return PreActResNet([2, 2, 2, 2], num_classes, in_channels, mean, std, width, head_bn)

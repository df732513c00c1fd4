"""Networks in the layouts of other code bases, written for the tests from those layouts' published
descriptions (module names, block order, pooling), independently of robustfront's own classes:

- kuangliu/pytorch-cifar ResNet (TRADES, MART, RAAT, Cons-AT) and PreActResNet (no final BN),
- Rice et al.'s PreActResNet (with a final BN-ReLU), the one AWP builds on,
- the TRADES WideResNet (with the never-called sub_block1), which RobustBench's WideResNet copies,
- RobustBench's normalize_model wrapper, a Sequential(normalizer, net) and a net with mu/sigma buffers.

Every net takes inputs that are already normalised, as those code bases do.
"""
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn


class KBasic(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h)) + self.shortcut(x)
        return F.relu(h)


class KPreAct(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False))

    def forward(self, x):
        a = F.relu(self.bn1(x))
        skip = self.shortcut(a) if hasattr(self, "shortcut") else x
        return self.conv2(F.relu(self.bn2(self.conv1(a)))) + skip


class KuangliuNet(nn.Module):
    """ResNet (block=KBasic, stem conv1+bn1) or PreActResNet (block=KPreAct, stem conv1 only)."""

    def __init__(self, block, blocks, width=64, num_classes=10, final_bn=False):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, 1, 1, bias=False)
        if block is KBasic:
            self.bn1 = nn.BatchNorm2d(width)
        cin = width
        for i, (n, mult) in enumerate(zip(blocks, (1, 2, 4, 8)), 1):
            layers = []
            for j in range(n):
                layers.append(block(cin, width * mult, (1 if i == 1 else 2) if j == 0 else 1))
                cin = width * mult
            setattr(self, f"layer{i}", nn.Sequential(*layers))
        if final_bn:
            self.bn = nn.BatchNorm2d(cin)
        self.linear = nn.Linear(cin, num_classes)

    def forward(self, x):
        h = self.conv1(x)
        if hasattr(self, "bn1"):
            h = F.relu(self.bn1(h))
        h = self.layer4(self.layer3(self.layer2(self.layer1(h))))
        if hasattr(self, "bn"):
            h = F.relu(self.bn(h))
        h = F.avg_pool2d(h, 4)  # 32x32 inputs: a 4x4 map
        return self.linear(h.view(h.size(0), -1))


class TBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.relu1 = nn.ReLU()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu2 = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.equalInOut = cin == cout
        self.convShortcut = None if self.equalInOut else nn.Conv2d(cin, cout, 1, stride, 0, bias=False)

    def forward(self, x):
        a = self.relu1(self.bn1(x))
        h = self.conv2(self.relu2(self.bn2(self.conv1(a))))
        return h + (x if self.equalInOut else self.convShortcut(a))


class TGroup(nn.Module):
    def __init__(self, n, cin, cout, stride):
        super().__init__()
        self.layer = nn.Sequential(*[TBlock(cin if i == 0 else cout, cout, stride if i == 0 else 1) for i in range(n)])

    def forward(self, x):
        return self.layer(x)


class TradesWRN(nn.Module):
    def __init__(self, depth=34, widen=10, num_classes=10, sub_block1=True, bias_last=True):
        super().__init__()
        n, ch = (depth - 4) // 6, [16, 16 * widen, 32 * widen, 64 * widen]
        self.conv1 = nn.Conv2d(3, ch[0], 3, 1, 1, bias=False)
        self.block1 = TGroup(n, ch[0], ch[1], 1)
        if sub_block1:
            self.sub_block1 = TGroup(n, ch[0], ch[1], 1)  # built, never called
        self.block2 = TGroup(n, ch[1], ch[2], 2)
        self.block3 = TGroup(n, ch[2], ch[3], 2)
        self.bn1 = nn.BatchNorm2d(ch[3])
        self.relu = nn.ReLU()
        self.fc = nn.Linear(ch[3], num_classes, bias=bias_last)

    def forward(self, x):
        h = self.block3(self.block2(self.block1(self.conv1(x))))
        h = F.avg_pool2d(self.relu(self.bn1(h)), 8)  # 32x32 inputs: an 8x8 map
        return self.fc(h.view(h.size(0), -1))


class Normalizer(nn.Module):
    """RobustBench's ImageNormalizer: buffers of shape (1, 3, 1, 1)."""

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))

    def forward(self, x):
        return (x - self.mean) / self.std


def robustbench_wrapped(net, mean, std):
    return nn.Sequential(OrderedDict([("normalize", Normalizer(mean, std)), ("model", net)]))


class MuSigma(nn.Module):
    """A net that normalises with its own mu/sigma buffers (Rice et al.-style)."""

    def __init__(self, net, mean, std):
        super().__init__()
        self.register_buffer("mu", torch.tensor(mean).view(3, 1, 1))
        self.register_buffer("sigma", torch.tensor(std).view(3, 1, 1))
        self.net = net

    def forward(self, x):
        return self.net((x - self.mu) / self.sigma)


def randomize_bn(net, seed=0):
    """BatchNorm statistics and affine parameters away from their defaults, so that eval-mode
    outputs depend on every BN buffer landing in the right place."""
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(0.1 * torch.randn(c, generator=g))
            m.running_var.copy_(0.5 + torch.rand(c, generator=g))
            m.weight.data.copy_(1 + 0.2 * torch.randn(c, generator=g))
            m.bias.data.copy_(0.1 * torch.randn(c, generator=g))
    return net.eval()

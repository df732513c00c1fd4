"""Parameter-efficient layers: the bottleneck adapter and LoRA, inserted into a built model in place.

Both keep every existing state-dict key (a timm checkpoint still loads into the adapted model) and
add their own: `<...>.mlp.adapter.{down,up}.{weight,bias}` and `<...>.qkv.lora_A / lora_B`. Both
are the identity at initialisation (the up-projection and B start at zero).
"""
from __future__ import annotations

import copy
import itertools
import math

import torch
import torch.nn.functional as F
from torch import nn


class Adapter(nn.Module):
    """Bottleneck adapter (Houlsby et al., 2019, https://arxiv.org/abs/1902.00751), the design of
    CA-AT's adversarial PEFT: h + up(GELU(down(h))), down to dim // reduction, `up` initialised to
    zero so the adapted network starts as the pretrained one. Applied to an MLP's output by a forward
    hook on that MLP (`add_adapters`), so the MLP's own keys are untouched."""

    def __init__(self, dim: int, reduction: int = 8):
        super().__init__()
        hidden = max(1, dim // reduction)
        self.down, self.act, self.up = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.up(self.act(self.down(h)))

    def hook(self, module, inputs, output):  # forward hook of the MLP it follows
        return self(output)


def _last_linear(module: nn.Module) -> nn.Linear | None:
    linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
    return linears[-1] if linears else None


def add_adapters(model: nn.Module, reduction: int = 8, where: str = "mlp") -> list[str]:
    """An Adapter after every module whose name ends in `where` ("mlp": each transformer block's MLP,
    ours and timm's ViT/Swin/ConvNeXt alike); its width is the MLP's last linear's out_features.
    Returns the adapted module names."""
    found = [(n, m) for n, m in model.named_modules() if n.split(".")[-1] == where and _last_linear(m) is not None]
    widest = max((_last_linear(m).out_features for _, m in found), default=None)
    narrowest = min((_last_linear(m).out_features for _, m in found), default=None)
    if found and reduction > narrowest:  # width dim // reduction would be 0: a silent 1-wide adapter
        raise ValueError(f"adapter_reduction={reduction} leaves no adapter width for blocks of width {narrowest}; "
                         f"allowed: 1 to {narrowest} (--adapter-reduction; the widest block is {widest})")
    for _, mlp in found:
        ref = _last_linear(mlp).weight
        mlp.adapter = Adapter(_last_linear(mlp).out_features, reduction).to(ref.device, ref.dtype)
        mlp.register_forward_hook(mlp.adapter.hook)
    return [n for n, _ in found]


class LoRALinear(nn.Module):
    """LoRA (Hu et al., 2022, https://arxiv.org/abs/2106.09685): y = x Wᵀ + b + (alpha/rank)·x Aᵀ Bᵀ,
    with the pretrained W, b (shared with the replaced nn.Linear, same keys), A of shape
    (rank, in) initialised like a linear layer and B (out, rank) initialised to zero."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float):
        super().__init__()
        self.in_features, self.out_features = base.in_features, base.out_features
        self.weight = base.weight
        self.register_parameter("bias", base.bias)
        self.lora_A = nn.Parameter(base.weight.new_empty(rank, base.in_features))
        self.lora_B = nn.Parameter(base.weight.new_zeros(base.out_features, rank))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.rank, self.alpha, self.scaling = rank, float(alpha), float(alpha) / rank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias) + F.linear(F.linear(x, self.lora_A), self.lora_B) * self.scaling

    def merged_weight(self) -> torch.Tensor:
        """W + (alpha/rank)·B A (differentiable; detach for a copy)."""
        return torch.addmm(self.weight, self.lora_B, self.lora_A, alpha=self.scaling)

    def merge(self) -> nn.Linear:
        """A plain nn.Linear holding the merged weight (a copy; this layer is unchanged)."""
        out = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None,
                        device=self.weight.device, dtype=self.weight.dtype)
        with torch.no_grad():
            out.weight.copy_(self.merged_weight())
            if self.bias is not None:
                out.bias.copy_(self.bias)
        return out

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, rank={self.rank}, alpha={self.alpha:g}"


def _set(model: nn.Module, name: str, module: nn.Module) -> None:
    *path, attr = name.split(".")
    setattr(model.get_submodule(".".join(path)) if path else model, attr, module)


def add_lora(model: nn.Module, rank: int, alpha: float, targets, exclude: str = "") -> list[str]:
    """Replace each nn.Linear whose last name is in `targets` (e.g. qkv, proj, fc1, fc2) by a
    LoRALinear; `exclude` (the head) is never adapted. Returns the replaced names."""
    names = [n for n, m in model.named_modules()
             if type(m) is nn.Linear and n.split(".")[-1] in targets and n != exclude]
    if names:  # before allocating: a rank beyond min(in, out) adds nothing and can ask for gigabytes
        most = min(min(model.get_submodule(n).in_features, model.get_submodule(n).out_features) for n in names)
        if rank > most:
            raise ValueError(f"lora_rank={rank} is larger than the adapted layers allow; allowed: 1 to {most} "
                             f"(--lora-rank; the smallest side of the {len(names)} adapted linear layers)")
    for n in names:
        _set(model, n, LoRALinear(model.get_submodule(n), rank, alpha))
    return names


class _MergedLinear(nn.Module):
    """A linear layer of the attack view: one matmul with W + (alpha/r)·BA of its LoRALinear, merged
    afresh (without autograd) at every forward. Re-merging costs out·r·in multiply-adds, against
    tokens·r·(in+out) for the two LoRA matmuls it replaces (ViT-B qkv, batch 128: 44 times less), and
    it cannot go stale: fused optimizers update weights without moving autograd's version counters,
    so "merge only after a change" could not be detected reliably."""

    def __init__(self, src: LoRALinear):
        super().__init__()
        self._src = [src]  # a plain list: the source stays a module of the trained model only
        self.bias = src.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():  # attacks take input gradients only
            weight = self._src[0].merged_weight()
        return F.linear(x, weight, self.bias)


class MergedView(nn.Module):
    """The model with each LoRALinear as one merged matmul, for attack passes (input gradients only).

    Every other parameter and buffer is the trained model's own tensor (shared, not copied), so the
    head, adapters, normaliser and LoRA factors are always current: build the view once, after the
    model is on its device. Extra memory during a pass: one merged copy of each adapted weight.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        shared = {id(t): t for t in itertools.chain(model.parameters(), model.buffers())}
        self.net = copy.deepcopy(model, shared)
        for name, m in list(self.net.named_modules()):
            if isinstance(m, LoRALinear):
                _set(self.net, name, _MergedLinear(m))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


__all__ = ["Adapter", "LoRALinear", "MergedView", "add_adapters", "add_lora"]

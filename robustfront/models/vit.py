"""Vision Transformer (Dosovitskiy et al., 2021, https://arxiv.org/abs/2010.11929) with timm's names.

Parameter names, shapes and numerics follow timm's `VisionTransformer` with its defaults (class
token, learned absolute position embedding, pre-norm blocks, LayerNorm eps 1e-6, exact (erf) GELU,
qkv with bias, class-token pooling, no dropout), so a timm / ARES / RobustBench ViT state dict loads
with strict=True (plus our `normalize.*` buffers, which `load_pretrained` fills) and gives the same
logits. Weights trained at another image size load through `adapt_pretrained`, which resamples the
position embedding (bicubic, class token kept), as timm does.

    vit_tiny_patch16_224 / vit_small_patch16_224 / vit_base_patch16_224: ImageNet sizes; the normaliser
        defaults to that timm name's default tag's pretrained_cfg (augreg: mean = std = 0.5, TIMM_TAGS),
        so `vit_base_patch16_224` and `timm:vit_base_patch16_224` agree; ARES/RobustBench ImageNet
        files need `input_mean/input_std="imagenet"` (docs/finetuning.md lists the families)
    vit_tiny_patch4_32 / vit_small_patch4_32: 4-px patches for 32-px inputs (8x8 grid), CIFAR mean/std
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .factory import MODELS
from .info import record
from .pretrained import AdaptsPretrained
from .normalize import NAMED_STATS, Normalize

# the timm tag each 224-px name resolves to by default (timm 1.0) and its pretrained_cfg statistics;
# tests/timm check these against the real timm
TIMM_TAGS = {"vit_tiny_patch16_224": ("augreg_in21k_ft_in1k", "inception"),
             "vit_small_patch16_224": ("augreg_in21k_ft_in1k", "inception"),
             "vit_base_patch16_224": ("augreg2_in21k_ft_in1k", "inception")}


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        # qkv is laid out (3, heads, head_dim) along its output features, as in timm
        q, k, v = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(head_dim)) v
        return self.proj(x.transpose(1, 2).reshape(B, N, C))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim, eps=1e-6), Attention(dim, num_heads)
        self.norm2, self.mlp = nn.LayerNorm(dim, eps=1e-6), Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, patch: int, in_channels: int, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, patch, patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # B, grid*grid, dim (row-major patches)


class VisionTransformer(AdaptsPretrained, nn.Module):
    """ViT taking inputs in [0,1] of size `img_size` (a multiple of `patch`).

    Args:
        img_size: input height = width. patch: patch size. dim: embedding width. depth: blocks.
        num_heads: attention heads (dim must divide). mlp_ratio: MLP hidden width / dim (4).
    """
    def __init__(self, img_size=224, patch=16, num_classes=1000, in_channels=3, mean=None, std=None,
                 dim=768, depth=12, num_heads=12, mlp_ratio=4.0):
        super().__init__()
        for key, v, ok in (("input_size", img_size, img_size % patch == 0), ("embed_dim", dim, dim % num_heads == 0)):
            if not ok:
                raise ValueError(f"{key}={v} is invalid for patch {patch} / {num_heads} heads; allowed: a multiple "
                                 f"of {patch if key == 'input_size' else num_heads}")
        self.normalize = Normalize(mean, std, in_channels)
        self.img_size, self.grid = img_size, img_size // patch
        self.patch_embed = PatchEmbed(patch, in_channels, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.grid ** 2 + 1, dim))
        self.blocks = nn.Sequential(*[Block(dim, num_heads, mlp_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, num_classes)
        record(self, head="head")  # the classifier that fine-tuning replaces (see models/pretrained.py)
        # timm's default initialisation: truncated normal 0.02 for linears and the position embedding
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) != (self.img_size, self.img_size):  # python ints: no host sync
            raise ValueError(f"input size {tuple(x.shape[-2:])} is invalid for this ViT; allowed: "
                             f"({self.img_size}, {self.img_size}) (build it with input_size=...)")
        x = self.patch_embed(self.normalize(x))
        x = torch.cat([self.cls_token.expand(len(x), -1, -1), x], dim=1) + self.pos_embed
        return self.head(self.norm(self.blocks(x))[:, 0])

    def adapt_pretrained(self, state: dict) -> tuple[dict, list[str]]:
        """`state` with its position embedding resampled to this model's grid; notes for the report."""
        pe = state.get("pos_embed")
        if pe is None or pe.dim() != 3 or pe.shape == self.pos_embed.shape or pe.shape[-1] != self.pos_embed.shape[-1]:
            return state, []  # absent, equal, or a width mismatch the match report names
        old = math.isqrt(pe.shape[1] - 1)
        if old * old != pe.shape[1] - 1:
            return state, []  # not a square grid with one class token: reported as a shape mismatch
        note = f"pos_embed resampled from a {old}x{old} to a {self.grid}x{self.grid} grid (bicubic, class token kept)"
        return {**state, "pos_embed": resample_pos_embed(pe, self.grid)}, [note]


def resample_pos_embed(pos_embed: torch.Tensor, grid: int, prefix_tokens: int = 1) -> torch.Tensor:
    """(1, prefix + g*g, D) -> (1, prefix + grid*grid, D): the prefix (class) tokens kept, the square
    grid interpolated bicubically (antialiased when shrinking), in float32, returned in the input dtype."""
    prefix, body = pos_embed[:, :prefix_tokens], pos_embed[:, prefix_tokens:]
    old, dim = math.isqrt(body.shape[1]), body.shape[-1]
    img = body.float().reshape(1, old, old, dim).permute(0, 3, 1, 2)
    img = F.interpolate(img, size=(grid, grid), mode="bicubic", align_corners=False, antialias=True)
    body = img.permute(0, 2, 3, 1).reshape(1, grid * grid, dim).to(pos_embed.dtype)
    return torch.cat([prefix, body], dim=1)


def _vit(name, patch, width, blocks, heads, default_size):
    def build(num_classes=10, in_channels=3, input_size=default_size, mean=None, std=None, embed_dim=None,
              depth=None, num_heads=None, mlp_ratio=4.0):
        """embed_dim / depth / num_heads / mlp_ratio override the variant's (small models for tests)."""
        source = "given" if mean is not None and std is not None else "robustfront default (CIFAR-10 statistics)"
        if name in TIMM_TAGS and in_channels == 3 and source != "given":  # the same name's timm statistics
            tag, stats = TIMM_TAGS[name]
            mean = list(NAMED_STATS[stats][0]) if mean is None else mean
            std = list(NAMED_STATS[stats][1]) if std is None else std
            source = f"timm pretrained_cfg of {name}.{tag} (mean = std = 0.5; ARES/RobustBench: imagenet)"
        model = VisionTransformer(input_size, patch, num_classes, in_channels, mean, std, embed_dim or width,
                                  depth or blocks, num_heads or heads, mlp_ratio)
        return record(model, norm_source=source)
    return build


for _name, _args in {"vit_tiny_patch16_224": (16, 192, 12, 3, 224),
                     "vit_small_patch16_224": (16, 384, 12, 6, 224),
                     "vit_base_patch16_224": (16, 768, 12, 12, 224),
                     "vit_tiny_patch4_32": (4, 192, 12, 3, 32),
                     "vit_small_patch4_32": (4, 384, 12, 6, 32)}.items():
    MODELS.register(_name)(_vit(_name, *_args))

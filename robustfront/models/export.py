"""A model as plain files that code which has never seen robustfront can load.

    paths = export_plain(model, "release/ca_at_wrn28")   # release/ca_at_wrn28.{pt,safetensors,json}
    export_plain(model, "release/ca_at_wrn28", formats=("safetensors",))   # .safetensors and .json only

Both weight files hold the same flat state dict {name: tensor}: the `.pt` through torch.save (read it
with torch.load(..., weights_only=True)), the `.safetensors` through safetensors. The input
normalisation is inside, as two buffers in front of the network:

    normalize.mean, normalize.std   shape [C] (or [1], broadcast over channels); the network sees
                                    (x - mean[None, :, None, None]) / std[None, :, None, None]
                                    for inputs x in [0, 1]
    everything else                 the architecture's own names: kuangliu/pytorch-cifar's for
                                    resnet18/34 and preact_resnet18 (no `bn.*` when head_bn=False),
                                    TRADES/RobustBench's for wrn28_10/34_10 (see docs/evaluation_any_model.md)

A model from a `module.py:factory` file (robustfront's WithNormalize) keeps the factory's names under `net.`.
The `.json` beside them records the architecture (robustfront's model config), the stats and the key count.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from .. import checkpoint as ckpt
from .info import info

SUFFIXES = (".pt", ".pth", ".safetensors", ".json")


def _base(path) -> Path:
    path = Path(path)
    return path.with_suffix("") if path.suffix in SUFFIXES else path


def plain_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """{name: tensor} on the CPU, contiguous and unshared (what safetensors requires)."""
    return {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}


def export_plain(model: nn.Module, path, formats=("pt", "safetensors")) -> dict[str, Path]:
    """Write `<path>.pt` and/or `<path>.safetensors` (`formats`), and `<path>.json` (a suffix on
    `path` is dropped); returns {"pt", "safetensors", "json"} -> path for the files written, each
    atomically."""
    base = _base(path)
    bad = [f for f in formats if f not in ("pt", "safetensors")]
    if bad or not formats:
        raise ValueError(f"formats={list(formats)!r} is invalid; allowed: pt, safetensors or both")
    state = plain_state_dict(model)
    norm = dict(model.named_children()).get("normalize")
    config = info(model).config
    meta = {"format": "plain state dict, inputs in [0, 1], normalisation inside as normalize.mean/std",
            "architecture": config if config is not None else {"class": type(model).__name__},
            "mean": state["normalize.mean"].tolist() if "normalize.mean" in state else None,
            "std": state["normalize.std"].tolist() if "normalize.std" in state else None,
            "num_keys": len(state),
            "normalize": type(norm).__name__ if norm is not None else None,
            "files": [base.with_suffix("." + f).name for f in formats]}
    out = {}
    if "pt" in formats:
        out["pt"] = ckpt.save_atomic(state, base.with_suffix(".pt"))
    if "safetensors" in formats:
        from safetensors.torch import save as st_bytes
        blob = st_bytes(state, metadata={"format": "pt", "robustfront": json.dumps(meta["architecture"])})
        out["safetensors"] = ckpt.write_bytes_atomic(base.with_suffix(".safetensors"), blob)
    out["json"] = ckpt.write_json_atomic(base.with_suffix(".json"), meta)
    return out


__all__ = ["export_plain", "plain_state_dict"]

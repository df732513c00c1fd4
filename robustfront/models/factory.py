"""Model registry, factory and checkpoint loader (timm-style: name -> builder -> kwargs)."""
from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn
from torch.nn.modules.utils import consume_prefix_in_state_dict_if_present

from .. import checkpoint as _checkpoint
from ..registry import Registry
from ..validation import check_like
from .normalize import Normalize

MODELS = Registry("model")
# every builder takes these; everything else in its signature is an architecture option
_COMMON = ("num_classes", "in_channels", "input_size", "mean", "std")


def _plain(v: Any, key: str) -> Any:
    """Config values must survive torch.load(weights_only=True) and JSON: tuples become lists."""
    if isinstance(v, (tuple, list)):
        return [_plain(e, key) for e in v]
    if isinstance(v, dict):
        return {str(k): _plain(e, key) for k, e in v.items()}
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    raise ValueError(f"model option {key}={v!r} is not a plain python value; "
                     "allowed: bool, int, float, str, list, dict")


def _builder(name: str):
    """The registered builder, or for "timm:<name>" one that creates the timm model (timm imported on use)."""
    if isinstance(name, str) and name.startswith("timm:"):
        from .timm_models import timm_builder
        return timm_builder(name)
    return MODELS.get(name)


def create_model(name: str, num_classes: int = 10, *, in_channels: int = 3, input_size: int | None = None,
                 mean: list[float] | None = None, std: list[float] | None = None, **kw: Any) -> nn.Module:
    """Build model `name` taking inputs in [0,1]; its first layer is `Normalize(mean, std)`.

    name: a registered name (`list_models()`) or "timm:<timm name>" (needs timm installed).
    input_size: None takes the builder's default (32 for the CIFAR nets, 224 for the ImageNet ViTs).

    mean/std default to CIFAR-10's statistics for 3 channels, 0.5/0.5 for other channel counts,
    and 0/1 (identity) for flat vector inputs (mlp with `input_dim` or a 1-D `input_shape`).
    kw are architecture options (e.g. `width`, `dropout`, `hidden`); None values keep the defaults.
    Sets `model.rf_config`, the plain-python dict that `load_model` rebuilds the model from.
    """
    builder = _builder(name)
    params = inspect.signature(builder).parameters
    if input_size is None:
        input_size = params["input_size"].default
    for key, v in (("num_classes", num_classes), ("in_channels", in_channels), ("input_size", input_size)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{key}={v!r} is invalid; allowed: an integer >= 1")
    kw = {k: v for k, v in kw.items() if v is not None}
    options = [p for p in params if p not in _COMMON]
    unknown = [k for k in kw if k not in options]
    if unknown:
        raise ValueError(f"unknown option {unknown[0]!r} for model '{name}'; allowed: {', '.join(options) or 'none'}")
    kw = {k: check_like(k, v, params[k].default) if params[k].default is not inspect.Parameter.empty else v
          for k, v in kw.items()}
    model = builder(num_classes=num_classes, in_channels=in_channels, input_size=input_size,
                    mean=mean, std=std, **kw)
    norm = next(model.children(), None)
    assert isinstance(norm, Normalize), f"model '{name}' must register Normalize as its first child"
    model.rf_config = {"name": name, "num_classes": num_classes, "in_channels": in_channels,
                       "input_size": input_size, "mean": list(norm.mean_values), "std": list(norm.std_values),
                       **{k: _plain(v, k) for k, v in kw.items()}}
    return model


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching an fnmatch pattern, sorted."""
    return MODELS.names(pattern)


def load_model(checkpoint: str | Any, device: str | torch.device = "cpu", *, base=None) -> nn.Module:
    """Rebuild a model from a checkpoint path or dict {"model": state_dict, "model_config": rf_config},
    or from a fine-tuning checkpoint (a training run's, or `models.peft.peft_state_dict`'s trainable
    delta + base file reference; `base` names the base weights file where it has moved).

    Files are read with weights_only=True (no arbitrary code). Returns the model on `device` in eval mode.
    """
    ckpt = checkpoint if isinstance(checkpoint, dict) else _checkpoint.load(checkpoint, device)
    if "peft" in ckpt:  # adapters / LoRA / a frozen backbone: the structure is rebuilt before loading
        from .peft import load_peft
        return load_peft(ckpt, base=base, device=device)
    missing = [k for k in ("model", "model_config") if k not in ckpt]
    if missing:
        raise ValueError(f"checkpoint lacks {missing}; found keys {sorted(map(str, ckpt))}; expected "
                         "{'model': state_dict, 'model_config': rf_config}")
    cfg = dict(ckpt["model_config"])
    if "name" not in cfg:
        raise ValueError(f"checkpoint's model_config has no 'name'; found keys {sorted(cfg)}")
    model = create_model(cfg.pop("name"), **cfg)
    state = dict(ckpt["model"])
    for prefix in ("_orig_mod.", "module."):  # saved from torch.compile / DistributedDataParallel wrappers
        consume_prefix_in_state_dict_if_present(state, prefix)
    model.load_state_dict(state)
    return model.to(device).eval()

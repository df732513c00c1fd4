"""Model registry, factory and checkpoint loader (timm-style: name -> builder -> kwargs)."""
from __future__ import annotations

import math
import numbers
from typing import Any

import torch
from torch import nn
from torch.nn.modules.utils import consume_prefix_in_state_dict_if_present

from .. import checkpoint as _checkpoint
from ..registry import Registry, parameters
from ..validation import invalid, one_line, reason, shown
from .budget import check_elements, meta_parameter_count
from .info import record
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


def _check_option(model: str, key: str, v: Any, default: Any) -> None:
    """An architecture option has the type of the builder's default (width=2.5 or "abc" for an int,
    hidden="abc" for a tuple of widths): refused in one line, before the builder fails somewhere inside."""
    if isinstance(default, bool):
        ok = isinstance(v, bool)
        allowed = "true or false"
    elif isinstance(default, int):
        ok = isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 1
        allowed = "an integer >= 1"
    elif isinstance(default, float):
        ok = isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)
        allowed = "a finite number"
    elif isinstance(default, (tuple, list)):
        ok = isinstance(v, (tuple, list)) and all(isinstance(e, numbers.Integral) and not isinstance(e, bool)
                                                  and e >= 1 for e in v)
        allowed = "a list of integers >= 1, e.g. [256, 256]"
    else:
        return
    if not ok:
        raise invalid(key, v, f"{allowed} (model '{model}' option)")


def create_model(name: str, num_classes: int = 10, *, in_channels: int = 3, input_size: int | None = None,
                 mean: list[float] | None = None, std: list[float] | None = None, **kw: Any) -> nn.Module:
    """Build model `name` taking inputs in [0,1]; its first layer is `Normalize(mean, std)`.

    name: a registered name (`list_models()`) or "timm:<timm name>" (needs timm installed).
    input_size: None takes the builder's default (32 for the CIFAR nets, 224 for the ImageNet ViTs).

    mean/std default to CIFAR-10's statistics for 3 channels, 0.5/0.5 for other channel counts,
    and 0/1 (identity) for flat vector inputs (mlp with `input_dim` or a 1-D `input_shape`).
    kw are architecture options (e.g. `width`, `dropout`, `hidden`); None values keep the defaults.
    Records `info(model).config`, the plain-python dict that `load_model` rebuilds the model from.
    """
    builder = _builder(name)
    params = parameters(builder)
    if input_size is None:
        input_size = params["input_size"]
    for key, v in (("num_classes", num_classes), ("in_channels", in_channels), ("input_size", input_size)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{key}={v!r} is invalid; allowed: an integer >= 1")
    kw = {k: v for k, v in kw.items() if v is not None}
    options = [p for p in params if p not in _COMMON]
    unknown = [k for k in kw if k not in options]
    if unknown:
        raise ValueError(f"unknown option {unknown[0]!r} for model '{name}'; allowed: {', '.join(options) or 'none'}")
    for k, v in kw.items():
        _check_option(name, k, v, params[k])
    def build():
        return builder(num_classes=num_classes, in_channels=in_channels, input_size=input_size, mean=mean, std=std,
                       **kw)
    n = meta_parameter_count(build)  # shapes only: a huge width or class count is refused before allocating
    if n is not None:
        check_elements(n, one_line(f"model '{name}' with num_classes={num_classes} and options {shown(kw)}"),
                       "smaller sizes (--model-arg, --num-classes)")
    try:
        model = build()
    except (TypeError, OverflowError, RuntimeError, MemoryError) as e:
        # a value of the right type that still builds nothing: width=10**30, hidden=[-1], ...
        raise ValueError(one_line(f"model '{name}' with options {shown(kw)} cannot be built ({reason(e)}); "
                                  f"allowed: sizes >= 1 that fit in memory")) from None
    norm = next(model.children(), None)
    assert isinstance(norm, Normalize), f"model '{name}' must register Normalize as its first child"
    return record(model, config={"name": name, "num_classes": num_classes, "in_channels": in_channels,
                                 "input_size": input_size, "mean": list(norm.mean_values),
                                 "std": list(norm.std_values), **{k: _plain(v, k) for k, v in kw.items()}})


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching an fnmatch pattern, sorted."""
    return MODELS.names(pattern)


def load_plain(checkpoint: str | Any, device: str | torch.device = "cpu", *, where: str | None = None) -> nn.Module:
    """Rebuild a model from a checkpoint path or dict {"model": state_dict, "model_config": the model's
    `info(model).config`} (fine-tuning checkpoints: `models.loading.load_model`, which reads both kinds).

    Files are read with weights_only=True (no arbitrary code). Returns the model on `device` in eval mode.
    Every way a checkpoint can fail to make the model (keys missing, a config that builds nothing,
    weights of other shapes) is one ValueError line naming the checkpoint (`where`).
    """
    from .weights import format_report, match_report

    where = where or ("checkpoint" if isinstance(checkpoint, dict) else one_line(f"checkpoint {checkpoint}"))
    ckpt = checkpoint if isinstance(checkpoint, dict) else _checkpoint.load(checkpoint, device)
    missing = [k for k in ("model", "model_config") if k not in ckpt]
    if len(missing) == 2 and ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        raise ValueError(one_line(f"{where} is a bare state dict ({len(ckpt)} tensors, no architecture recorded); "
                                  f"allowed: give --model NAME (or --model-file FILE.py:FACTORY) to name its "
                                  f"architecture, as for weights trained elsewhere"))
    if missing:
        raise ValueError(one_line(f"{where} lacks {missing}; found keys {shown(sorted(map(str, ckpt)))}; allowed: "
                                  "robustfront's {'model': state_dict, 'model_config': {'name': ..., options}}"))
    cfg, state = ckpt["model_config"], ckpt["model"]
    if not isinstance(cfg, dict) or not isinstance(cfg.get("name"), str):
        raise ValueError(one_line(f"{where} has model_config={shown(cfg)}; allowed: a dict with a model 'name' "
                                  f"({', '.join(list_models())}) and its options"))
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(one_line(f"{where} has a 'model' entry that is not a state dict of tensors "
                                  f"({type(state).__name__}); allowed: model.state_dict()"))
    cfg = dict(cfg)
    name = cfg.pop("name")
    state = dict(state)
    for prefix in ("_orig_mod.", "module."):  # saved from torch.compile / DistributedDataParallel wrappers
        consume_prefix_in_state_dict_if_present(state, prefix)
    # build on the meta device first: a damaged config (width=10**9) costs no memory before it is refused
    with torch.device("meta"):
        shell = _build(where, name, cfg)
    report = match_report(shell, state)
    if any(report.values()):
        raise ValueError(one_line(f"{where}: its weights do not fit the '{name}' model its model_config "
                                  f"describes: {format_report(report)}"))
    model = _build(where, name, cfg)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:  # e.g. tensors on another device than the model
        raise ValueError(one_line(f"{where}: its weights cannot be loaded into the model ({reason(e)})")) from None
    return model.to(device).eval()


def _build(where: str, name: str, cfg: dict) -> nn.Module:
    try:
        return create_model(name, **cfg)
    except ValueError as e:
        raise ValueError(one_line(f"{where}: {e}")) from None
    except Exception as e:  # noqa: BLE001 - a builder given values of the wrong type (width="abc", ...)
        raise ValueError(one_line(f"{where} has model_config options {shown(cfg)} that do not build a "
                                  f"'{name}' model ({reason(e)})")) from None

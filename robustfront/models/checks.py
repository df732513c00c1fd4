"""Checks on a loaded model before anything is measured with it: a NaN model scores like a constant
classifier (10 % on ten classes) and a model with the wrong number of outputs scores 0 % or dies
half-way through an attack, so both are refused in one line naming the file and the flag.
"""
from __future__ import annotations

import torch
from torch import nn

from ..validation import one_line


def nonfinite_keys(state) -> list[str]:
    """Names of the floating-point tensors of a state dict (or a module's) holding NaN or Inf."""
    if isinstance(state, nn.Module):
        state = state.state_dict()
    return [k for k, v in state.items()
            if isinstance(v, torch.Tensor) and v.is_floating_point() and not torch.isfinite(v).all()]


def check_finite(model: nn.Module, source: str, flag: str) -> None:
    """Refuse weights holding NaN or Inf: no accuracy means anything for them."""
    bad = nonfinite_keys(model)
    if bad:
        more = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
        raise ValueError(one_line(f"{flag}={source!r} holds non-finite weights (NaN/Inf in {bad[0]}{more}); "
                                  f"allowed: a model whose weights are all finite (e.g. an earlier checkpoint)"))


def output_count(model: nn.Module, x: torch.Tensor) -> int:
    """Classes the model scores: the width of its output for one example."""
    with torch.no_grad():
        return int(model(x[:1]).reshape(1, -1).shape[1])


def check_classes(model: nn.Module, x: torch.Tensor, classes: int, data: str, source: str, flag: str,
                  data_flag: str = "--data") -> None:
    """Refuse a model whose output count differs from the data's class count (0 % or an IndexError later)."""
    if not len(x):
        return
    out = output_count(model, x)
    if out != classes:
        raise ValueError(one_line(f"{flag}={source!r} has {out} outputs but {data_flag}={data!r} has {classes} "
                                  f"classes; allowed: a model with {classes} outputs, or data with {out} classes"))


def check_loaded(model: nn.Module, x: torch.Tensor, classes: int, data: str, source: str, flag: str) -> None:
    """Both checks, cheapest first: what evaluation and analysis run before the first attack."""
    check_finite(model, source, flag)
    check_classes(model, x, classes, data, source, flag)


__all__ = ["check_classes", "check_finite", "check_loaded", "nonfinite_keys", "output_count"]

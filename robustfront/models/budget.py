"""Sizes refused before anything is allocated: a mistyped width, class count or LoRA rank must be one
line, not a 19 GB allocation that the OOM killer ends (on a shared machine, maybe in another job).

The model is first built on the meta device (shapes only, no memory) to count its parameters; a
model whose float32 weights alone exceed half the memory available now cannot also hold gradients,
optimizer state and activations, so it is refused.
"""
from __future__ import annotations

import torch
from torch import nn

from ..device import available_memory
from ..validation import one_line


def _gb(n: float) -> str:
    return f"{n / 1e9:.3g} GB"


def check_elements(n: int, what: str, allowed: str, limit: int | None = None) -> None:
    """Refuse `n` float32 elements when they exceed half of `limit` bytes (default: memory available)."""
    limit = available_memory() if limit is None else limit
    if limit is not None and 4 * n > limit // 2:
        raise ValueError(one_line(f"{what} needs {n:,} parameters ({_gb(4 * n)} as float32), more than half of the "
                                  f"{_gb(limit)} of memory available; allowed: {allowed}"))


def meta_parameter_count(build) -> int | None:
    """Parameters of the module `build()` returns, built on the meta device; None if it cannot be."""
    try:
        with torch.device("meta"):
            model = build()
    except Exception:  # noqa: BLE001 - a builder that needs real tensors: the real build reports its errors
        return None
    return sum(p.numel() for p in model.parameters()) if isinstance(model, nn.Module) else None


__all__ = ["check_elements", "meta_parameter_count"]

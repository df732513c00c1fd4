"""`load_model`: any robustfront checkpoint back into a model - a plain one (factory.load_plain) or a
fine-tuning one (peft.load_peft). It sits above both, so that neither imports the other's loader
(factory is below peft: peft builds its models with create_model)."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .. import checkpoint as _checkpoint
from ..validation import one_line
from .factory import load_plain
from .peft import load_peft


def load_model(checkpoint: str | Any, device: str | torch.device = "cpu", *, base=None) -> nn.Module:
    """Rebuild a model from a checkpoint path or dict {"model": state_dict, "model_config": info(model).config},
    or from a fine-tuning checkpoint (a training run's, or `models.peft.peft_state_dict`'s trainable
    delta + base file reference; `base` names the base weights file where it has moved).

    Files are read with weights_only=True (no arbitrary code). Returns the model on `device` in eval mode.
    Every way a checkpoint can fail to make the model (keys missing, a config that builds nothing,
    weights of other shapes) is one ValueError line naming the checkpoint.
    """
    where = "checkpoint" if isinstance(checkpoint, dict) else one_line(f"checkpoint {checkpoint}")
    ckpt = checkpoint if isinstance(checkpoint, dict) else _checkpoint.load(checkpoint, device)
    if "peft" in ckpt:  # adapters / LoRA / a frozen backbone: the structure is rebuilt before loading
        return load_peft(ckpt, base=base, device=device)
    return load_plain(ckpt, device, where=where)


__all__ = ["load_model"]

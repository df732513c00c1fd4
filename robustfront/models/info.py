"""What robustfront knows about a model it built, declared once: `ModelInfo`, set by the code that
builds or changes a model and read through `info(model)`.

    info(model).config      # {"name", "num_classes", ...}: what load_model rebuilds the model from
    info(model).peft        # the fine-tuning mode (prepare_finetune), None when there is none
    record(model, pretrained={"path": ..., "sha256": ...})   # set facts (a new record, attached)

Who sets what: create_model (config), the ViT and timm wrappers (head, weights_prefix) and their
builders (norm_source), load_pretrained (pretrained; config's mean/std), replace_head (config's
num_classes), build_model (pretrained_report), prepare_finetune (peft).

The record is a plain attribute of the module, neither parameter nor buffer: state_dict keys stay the
architecture's, copy.deepcopy (the EMA / RAAT# averaged model, LoRA's merged view) copies it with the
module, and what checkpoints carry is written out as the plain dicts it always was ("model_config",
"peft", "base"), so files written before this record existed load unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from torch import nn

_ATTR = "_robustfront_info"  # the module attribute holding the record; read and written only here


@dataclass(frozen=True)
class ModelInfo:
    """Facts about a model that its weights do not say. Frozen: change them with `record`, so a
    write can never land on a detached default and be lost."""

    # the model's name and every argument create_model rebuilds it from ({"name", "num_classes",
    # "in_channels", "input_size", "mean", "std", options...}; plain python, saved as a checkpoint's
    # "model_config"); None: not built by create_model (a user's factory, a wrapper)
    config: dict[str, Any] | None = None
    # the classifier module's name, where the architecture declares it ("head" for the ViT, "net.<name>"
    # for a timm wrapper); None: find_head takes the last nn.Linear registered
    head: str | None = None
    # what a plain state dict of the inner network needs in front of its keys to fit this model
    # ("net." for the timm wrapper); "" when the keys are the model's own
    weights_prefix: str = ""
    # where the normaliser's statistics came from when the model was built (timm's pretrained_cfg,
    # robustfront's default, ...): said when a weights file brings no normaliser
    norm_source: str = "the model's default"
    # {"path", "sha256"} of the weights file load_pretrained loaded: the base a fine-tuning checkpoint's
    # delta refers to (saved as "base"); None: no file loaded
    pretrained: dict[str, str] | None = None
    # load_pretrained's report when build_model loaded the file (written to OUT/pretrained.json)
    pretrained_report: dict[str, Any] | None = None
    # {"mode": full|linear|adapter|lora, + that mode's options} set by prepare_finetune (saved as
    # "peft"); None: the model was not prepared for fine-tuning
    peft: dict[str, Any] | None = None

    @property
    def name(self) -> str | None:
        """The registered model name (config["name"]), None for a model built elsewhere."""
        return None if self.config is None else self.config.get("name")


def info(model: nn.Module) -> ModelInfo:
    """The model's record; a model robustfront did not build reads as `ModelInfo()` (the defaults).

    This is the one place that probes a module for it: models reach robustfront from elsewhere (a
    user's factory, an nn.Sequential, DistributedDataParallel) and carry no record. getattr, not
    vars(): a torch.compile wrapper forwards attribute reads to the module it compiled."""
    found = getattr(model, _ATTR, None)
    return found if isinstance(found, ModelInfo) else ModelInfo()


def record(model: nn.Module, **facts: Any) -> nn.Module:
    """Set `facts` (ModelInfo fields) on the model's record, attaching one on first use; returns the
    model. An unknown field is a TypeError (dataclasses.replace)."""
    setattr(model, _ATTR, replace(info(model), **facts))
    return model


__all__ = ["ModelInfo", "info", "record"]

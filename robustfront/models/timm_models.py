"""`create_model("timm:<name>")`: any timm model (Swin, ConvNeXt, DeiT, ...) behind our Normalize layer.

timm is optional (`pip install 'robustfront[timm]'`) and imported only here, when such a model is
built: it imports torchvision, which cannot be imported next to some CPU builds of torch. timm is
never asked to download weights (pretrained=False); load a file with `load_pretrained`, which maps a
plain timm state dict onto the wrapper (`rf_weights_prefix`).
"""
from __future__ import annotations

from torch import nn

from .normalize import IMAGENET_MEAN, IMAGENET_STD, Normalize

INSTALL = "pip install 'robustfront[timm]' (timm needs a torchvision that matches torch)"


def _import_timm(full_name: str):
    try:
        import timm
    except Exception as e:  # noqa: BLE001 - missing, or installed but broken (torchvision mismatch)
        why = "which is not installed" if isinstance(e, ModuleNotFoundError) else \
            f"which fails to import ({(str(e).splitlines() or [type(e).__name__])[0][:120]})"
        raise ValueError(f"{full_name} needs timm, {why}; allowed: {INSTALL}, or a built-in model such as "
                         f"vit_base_patch16_224") from None
    return timm


class TimmModel(nn.Module):
    """Normalize(mean, std) then a timm model `net`; the head is the timm model's classifier."""

    rf_weights_prefix = "net."  # a plain timm state dict maps onto "net.<key>"

    def __init__(self, net: nn.Module, mean, std, in_channels: int):
        super().__init__()
        self.normalize = Normalize(mean, std, in_channels)
        self.net = net
        head = net.get_classifier() if hasattr(net, "get_classifier") else None
        names = [n for n, m in net.named_modules() if m is head and n]
        if names:  # else models.pretrained.find_head uses its convention (the last nn.Linear)
            self.rf_head = "net." + names[0]

    def forward(self, x):
        return self.net(self.normalize(x))


def timm_builder(full_name: str):
    """A builder with the registry's signature for "timm:<name>" (validated when called)."""
    timm_name = full_name[len("timm:"):]

    def build(num_classes=10, in_channels=3, input_size=224, mean=None, std=None, timm_kwargs=None):
        """timm_kwargs: extra keyword arguments for timm.create_model (e.g. drop_path_rate)."""
        if not isinstance(timm_kwargs or {}, dict):
            raise ValueError(f"timm_kwargs={timm_kwargs!r} is invalid; allowed: a mapping of timm.create_model "
                             "keyword arguments")
        timm = _import_timm(full_name)
        args = dict(pretrained=False, num_classes=num_classes, in_chans=in_channels, **(timm_kwargs or {}))
        try:
            try:  # transformers take the input size; CNNs (no img_size argument) take any size
                net = timm.create_model(timm_name, **{"img_size": input_size, **args})
            except TypeError:
                net = timm.create_model(timm_name, **args)
        except RuntimeError as e:  # timm: "Unknown model (name)"
            raise ValueError(f"model={full_name!r} is unknown to timm ({str(e).splitlines()[0][:120]}); allowed: "
                             f"a name from timm.list_models()") from None
        cfg = getattr(net, "pretrained_cfg", None) or {}
        if mean is None and in_channels == 3:  # the timm recipe's own statistics, else ImageNet's
            mean = list(cfg.get("mean", IMAGENET_MEAN))
        if std is None and in_channels == 3:
            std = list(cfg.get("std", IMAGENET_STD))
        return TimmModel(net, mean, std, in_channels)
    return build

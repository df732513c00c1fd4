"""`create_model("timm:<name>")`: any timm model (Swin, ConvNeXt, DeiT, ...) behind our Normalize layer.

timm is optional (`pip install 'robustfront[timm]'`) and imported only here, when such a model is
built: it imports torchvision, which cannot be imported next to some CPU builds of torch. timm is
never asked to download weights (pretrained=False); load a file with `load_pretrained`, which maps a
plain timm state dict onto the wrapper (`info(model).weights_prefix`) and adapts it to the model's input size
through timm's own per-model filter (`TimmModel.adapt_pretrained`).
"""
from __future__ import annotations

import sys

from torch import nn

from .info import info, record
from .normalize import IMAGENET_MEAN, IMAGENET_STD, Normalize
from .pretrained import AdaptsPretrained

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


def pretrained_stats(net: nn.Module, what: str) -> tuple[list[float], list[float], str]:
    """(mean, std, where they come from): the timm model's pretrained_cfg, else ImageNet's."""
    cfg = getattr(net, "pretrained_cfg", None) or {}  # timm's attribute, absent on some of its models
    if "mean" in cfg and "std" in cfg:
        tag = cfg.get("tag")
        return list(cfg["mean"]), list(cfg["std"]), f"timm pretrained_cfg of {what}" + (f".{tag}" if tag else "")
    return list(IMAGENET_MEAN), list(IMAGENET_STD), f"ImageNet (timm gives {what} no pretrained_cfg statistics)"


class TimmModel(AdaptsPretrained, nn.Module):
    """Normalize(mean, std) then a timm model `net`; the head is the timm model's classifier."""

    def __init__(self, net: nn.Module, mean, std, in_channels: int):
        super().__init__()
        self.normalize = Normalize(mean, std, in_channels)
        self.net = net
        has_head = hasattr(net, "get_classifier")  # timm's accessor; a model other code registers may lack it
        head = net.get_classifier() if has_head else None
        names = [n for n, m in net.named_modules() if m is head and n]
        # a plain timm state dict maps onto "net.<key>"; without a named classifier
        # models.pretrained.find_head uses its convention (the last nn.Linear)
        record(self, weights_prefix="net.", head="net." + names[0] if names else None)

    def forward(self, x):
        return self.net(self.normalize(x))

    def adapt_pretrained(self, state: dict) -> tuple[dict, list[str]]:
        """`state` run through timm's own filter for this architecture (`checkpoint_filter_fn` of the
        model's timm module: ViT position embeddings and patch embedding resampled, Swin's relative
        position tables resized, old key layouts renamed); notes name each tensor it changed."""
        module = sys.modules.get(type(self.net).__module__)
        filt = getattr(module, "checkpoint_filter_fn", None)  # timm's per-model filter, where its module has one
        p, head = info(self).weights_prefix, info(self).head
        inner = {k[len(p):]: v for k, v in state.items() if k.startswith(p)}
        if filt is None or not inner:
            return state, []
        head = head[len(p):] + "." if head else None
        try:
            out = filt(inner, self.net)
        except Exception as e:  # noqa: BLE001 - a file timm's filter cannot read: the match report names it
            return state, [f"timm's {module.__name__}.checkpoint_filter_fn could not adapt the file "
                           f"({type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''})"]
        where = f"{module.__name__}.checkpoint_filter_fn"
        notes = [f"{k} {tuple(inner[k].shape)} -> {tuple(v.shape)} by timm's {where}" for k, v in out.items()
                 if k in inner and tuple(v.shape) != tuple(inner[k].shape) and not (head and k.startswith(head))]
        renamed = sorted(set(out) - set(inner))
        if renamed:
            notes.append(f"{len(renamed)} key(s) renamed by timm's {where} (e.g. {renamed[0]})")
        rest = {k: v for k, v in state.items() if not k.startswith(p)}
        return {**rest, **{p + k: v for k, v in out.items()}}, notes


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
        source = "given"
        if in_channels == 3 and (mean is None or std is None):  # the timm recipe's own statistics
            cfg_mean, cfg_std, source = pretrained_stats(net, timm_name)
            mean = cfg_mean if mean is None else mean
            std = cfg_std if std is None else std
        model = TimmModel(net, mean, std, in_channels)
        return record(model, norm_source=source)
    return build

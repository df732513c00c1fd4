"""Checkpoints trained with other code, loaded into robustfront's architectures or a user's own.

    model, report = load_foreign("wrn34_10", "TRADES_wrn34.pt")            # normalisation: identity
    model, report = load_foreign("resnet18", "mart.pth", input_mean=[0.4914, 0.4822, 0.4465],
                                 input_std=[0.2471, 0.2435, 0.2616])
    model, report = load_foreign(None, "w.safetensors", model_file="net.py:build")

Layouts (robustfront's module names were chosen to equal these, so most keys map to themselves):

    kuangliu ResNet-18/34 (TRADES, MART, RAAT, Cons-AT): conv1, bn1, layerL.B.{conv1,bn1,conv2,bn2,
        shortcut.0,shortcut.1}, linear                                   -> resnet18 / resnet34
    kuangliu PreActResNet-18: conv1, layerL.B.{bn1,conv1,bn2,conv2,shortcut.0}, linear; no final BN
                                                                         -> preact_resnet18, head_bn=False
    Rice et al. / AWP PreActResNet-18: the same plus the final bn        -> preact_resnet18
    TRADES / RobustBench WideResNet: conv1, blockG.layer.B.{bn1,conv1,bn2,conv2,convShortcut}, bn1, fc;
        TRADES' unused `sub_block1.*` is dropped, RobustBench's bias_last=False (no fc.bias) gets a
        zero bias                                                        -> wrn28_10 / wrn34_10
    torchvision-style spellings `downsample.N` and `fc` in ResNets are renamed to shortcut.N / linear.

Normalisation: buffers found in the file (RobustBench's normalize.mean/std beside model.*, "0.mean"
beside "1.*", mean/std or mu/sigma on the net) are used; otherwise input_mean/input_std; otherwise
identity (mean 0, std 1: what most CIFAR code bases train with). Files are read with weights_only=True
onto the CPU (GPU-saved files load anywhere). Matching is strict: anything left over is one error line.
"""
from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import torch
from torch import nn

from ..registry import parameters
from ..validation import invalid, parse_number
from .factory import MODELS, create_model
from .info import info
from .loading import load_model
from .normalize import Normalize
from .weights import (resolve_normalization, fill_bn_counters, format_report, match_report, read_file, read_state_dict, split_normalization,
                      unwrap)

FAMILY = {"resnet18": "resnet", "resnet34": "resnet", "preact_resnet18": "preact", "wrn28_10": "wrn",
          "wrn34_10": "wrn", "small_cnn": "small_cnn", "mlp": "mlp"}
# foreign spelling -> robustfront's; applied only where it turns an unexpected key into an expected one
ALIASES = {"resnet": ((r"\.downsample\.(\d)\.", r".shortcut.\1."), (r"^fc\.", "linear.")),
           "preact": ((r"\.downsample\.0\.", ".shortcut.0."), (r"^fc\.", "linear.")),
           "wrn": ((r"^linear\.", "fc."),)}
# foreign keys that hold no computation of the forward pass
DROP = {"wrn": (r"^sub_block1\.",)}  # TRADES builds a sub_block1 and never calls it
_RESNET_DEPTH = {(2, 2, 2, 2): 18, (3, 4, 6, 3): 34}


def _blocks(state: dict, group: str) -> int:
    """How many blocks a stage holds: the largest B in `group.B.` keys, plus one."""
    found = [int(m.group(1)) for k in state if (m := re.match(re.escape(group) + r"\.(\d+)\.", k))]
    return max(found) + 1 if found else 0


def guess_layout(state: dict) -> str | None:
    """The architecture a state dict looks like ("wrn34_10", "preact_resnet18 (no final bn)", ...) or None."""
    if "block1.layer.0.conv1.weight" in state:
        n = _blocks(state, "block1.layer")
        widen = state["block1.layer.0.conv1.weight"].shape[0] // 16
        trades = "sub_block1.layer.0.conv1.weight" in state
        return f"wrn{6 * n + 4}_{widen}" + (" (TRADES, unused sub_block1)" if trades else "")
    if "layer1.0.conv1.weight" in state:
        depth = _RESNET_DEPTH.get(tuple(_blocks(state, f"layer{i}") for i in range(1, 5)), "?")
        if "bn1.weight" in state:
            return f"resnet{depth}"
        return f"preact_resnet{depth}" + ("" if "bn.weight" in state else " (no final bn)")
    if "features.0.0.weight" in state:
        return "small_cnn"
    return None


def _infer_options(family: str, state: dict) -> dict:
    """Architecture options read off the tensors: channels, widths, classes, the optional head BN."""
    def rows(*keys):
        return next((state[k].shape[0] for k in keys if k in state and state[k].dim() >= 1), None)
    opts = {}
    first = {"small_cnn": "features.0.0.weight"}.get(family, "conv1.weight")
    if first in state and state[first].dim() == 4:
        opts["in_channels"] = state[first].shape[1]
    if family in ("resnet", "preact"):
        opts["width"] = rows("conv1.weight")
        opts["num_classes"] = rows("linear.weight", "fc.weight")
        if family == "preact":
            opts["head_bn"] = "bn.weight" in state
    elif family == "wrn":
        opts["num_classes"] = rows("fc.weight", "linear.weight")
    elif family == "small_cnn":
        opts["width"] = rows("features.0.0.weight")
        opts["num_classes"] = rows("classifier.weight")
    return {k: v for k, v in opts.items() if v is not None}


def _rename(state: dict, family: str, own: set) -> dict:
    """{old: new} for the aliases of `family` that turn a key the model lacks into one it expects."""
    done = {}
    for k in list(state):
        if k in own:
            continue
        for pattern, repl in ALIASES.get(family, ()):
            new = re.sub(pattern, repl, k)
            if new != k and new in own and new not in state:
                state[new] = state.pop(k)
                done[k] = new
                break
    return done


def parse_stats(name: str, text) -> list[float] | None:
    """--input-mean / --input-std values: "0.4914,0.4822,0.4465" (commas or spaces), a list, or None."""
    if text is None:
        return None
    items = text.replace(",", " ").split() if isinstance(text, str) else list(text)
    if not items:
        raise invalid(name, text, "numbers separated by commas, e.g. 0.4914,0.4822,0.4465")
    try:
        return [parse_number(v, name) for v in items]
    except ValueError:
        raise invalid(name, text, "numbers separated by commas, e.g. 0.4914,0.4822,0.4465") from None


def _check_stats(mean, std, name_mean="input_mean", name_std="input_std"):
    if (mean is None) != (std is None):
        raise ValueError(f"{name_mean}/{name_std}: only one of them is given; allowed: both or neither")
    if mean is None:
        return None
    mean, std = [float(v) for v in mean], [float(v) for v in std]
    if len(mean) != len(std) or not mean:
        raise invalid(name_std, std, f"as many values as {name_mean} ({len(mean)})")
    if min(std) <= 0:
        raise invalid(name_std, std, "values > 0")
    return {"mean": mean, "std": std}


def _strict_load(model: nn.Module, state: dict, what: str, path, hint: str = "") -> None:
    rep = match_report(model, state)
    if rep["missing"] or rep["unexpected"] or rep["shape_mismatch"]:
        raise ValueError(f"weights file {path} does not fit {what}: {format_report(rep)}{hint}")
    model.load_state_dict(state, strict=True)


class WithNormalize(nn.Module):
    """A user's network behind robustfront's Normalize: keys `normalize.mean/std` and `net.*`."""

    def __init__(self, net: nn.Module, mean, std, channels: int | None = None):
        super().__init__()
        self.normalize = Normalize(mean, std, channels)
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalize(x))


def load_factory(spec: str, *, num_classes: int | None = None) -> nn.Module:
    """The nn.Module that `factory()` in `path/to/module.py` returns (spec "path/to/module.py:factory").

    The file is imported as Python code (it is the user's own). num_classes is passed when the factory
    takes an argument of that name. Every failure is one ValueError line."""
    if not isinstance(spec, str) or ":" not in spec:
        raise invalid("model_file", spec, "path/to/module.py:factory")
    file, _, attr = spec.rpartition(":")
    path = Path(file)
    if not attr.isidentifier() or not file:
        raise invalid("model_file", spec, "path/to/module.py:factory (factory a Python name)")
    if not path.is_file():
        raise invalid("model_file", spec, "an existing .py file followed by :factory",
                      f"not found ({path} does not exist)")
    name = f"robustfront_user_model_{abs(hash(str(path.resolve())))}"
    try:
        module_spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        module_spec.loader.exec_module(module)
    except Exception as e:  # noqa: BLE001 - any failure of the user's file is reported in one line
        sys.modules.pop(name, None)
        first = (str(e).strip().splitlines() or [""])[0][:200]
        raise ValueError(f"model_file {path} could not be imported ({type(e).__name__}: {first})") from None
    factory = getattr(module, attr, None)  # the user's module: the name is theirs, checked just below
    if not callable(factory):
        found = sorted(k for k, v in vars(module).items() if callable(v) and not k.startswith("_")
                       and getattr(v, "__module__", None) == name)  # the user's objects: defined in their file
        raise invalid("model_file", spec, f"a function or class of {path}: {', '.join(found) or 'none defined'}",
                      f"unknown ({attr!r} is not a callable in the file)")
    kw = {}
    try:
        if num_classes is not None and "num_classes" in parameters(factory):
            kw["num_classes"] = num_classes
    except (TypeError, ValueError):
        pass
    try:
        net = factory(**kw)
    except Exception as e:  # noqa: BLE001
        first = (str(e).strip().splitlines() or [""])[0][:200]
        raise ValueError(f"model_file {spec}: {attr}() failed ({type(e).__name__}: {first})") from None
    if not isinstance(net, nn.Module):
        raise ValueError(f"model_file {spec}: {attr}() returned a {type(net).__name__}; allowed: a torch.nn.Module")
    return net


def _load_user_model(spec, path, mean, std, num_classes, report):
    net = load_factory(spec, num_classes=num_classes)
    report.update(model=spec, layout="model file")
    found = None
    if path is not None:
        state = read_state_dict(path, "cpu")
        own = set(net.state_dict())
        state, found = split_normalization(state, keep=own)
        report["filled"] = fill_bn_counters(net, state)
        layout = guess_layout(state)
        _strict_load(net, state, spec, path, f" (the file looks like {layout})" if layout else "")
    norm = resolve_normalization(found, _check_stats(mean, std))
    report["normalization"] = norm
    return WithNormalize(net, norm["mean"], norm["std"], None)


def load_foreign(model_name: str | None, weights_path, *, input_mean=None, input_std=None,
                 num_classes: int | None = None, device="cpu", model_file: str | None = None):
    """(model in eval mode on `device`, report) for a weights file from another code base.

    model_name: a robustfront architecture (resnet18, resnet34, preact_resnet18, wrn28_10, wrn34_10,
    small_cnn, mlp) or "timm:<name>" (models/timm_foreign.py: the input size read off the file, the
    normaliser from timm's pretrained_cfg unless given); ignored when `model_file` ("module.py:factory") builds the network instead, and
    then weights_path may be None (the factory loads its own weights). Architecture options (input
    channels, width, the classifier's classes, PreAct's final BN) are read off the file; num_classes,
    when given, must agree. report: {"file", "model", "layout", "options", "normalization": {mean, std,
    source}, "renamed": {old: new}, "dropped": [...], "filled": [...]}.
    """
    report = {"file": None if weights_path is None else str(weights_path), "renamed": {}, "dropped": [], "filled": []}
    if model_file is not None:
        model = _load_user_model(model_file, weights_path, input_mean, input_std, num_classes, report)
        return model.to(device).eval(), report
    if not str(model_name).startswith("timm:"):
        MODELS.get(model_name)  # unknown names: one line listing the allowed ones
    if weights_path is None:
        raise invalid("weights", None, "a .pt/.pth/.safetensors file (or model_file=module.py:factory)", "missing")
    obj = read_file(weights_path, "cpu")
    if isinstance(obj.get("model_config"), dict) and isinstance(obj.get("model"), dict):  # robustfront's own
        model = load_model(obj, "cpu")
        report.update(model=info(model).name, layout="robustfront", options=dict(info(model).config))
        norm = next(model.children())
        report["normalization"] = resolve_normalization({"mean": norm.mean_values, "std": norm.std_values,
                                                  "key": "normalize.mean"}, _check_stats(input_mean, input_std))
        return model.to(device).eval(), report
    if model_name.startswith("timm:"):
        from .timm_foreign import load_timm_weights
        model = load_timm_weights(model_name, unwrap(obj), weights_path, _check_stats(input_mean, input_std),
                                  num_classes, report)
        return model.to(device).eval(), report
    family = FAMILY.get(model_name, "other")
    state, found = split_normalization(unwrap(obj))
    layout = guess_layout(state)
    norm = resolve_normalization(found, _check_stats(input_mean, input_std))
    opts = _infer_options(family, state)
    accepted = MODELS.options(model_name)
    opts = {k: v for k, v in opts.items() if k in accepted}
    if num_classes is not None:
        if opts.get("num_classes", num_classes) != num_classes:
            raise invalid("num_classes", num_classes, f"{opts['num_classes']} (the file's classifier has "
                          f"{opts['num_classes']} outputs)", "not the file's")
        opts["num_classes"] = num_classes
    model = create_model(model_name, mean=norm["mean"], std=norm["std"], **opts)
    state, changes = fit_state(model, state, family)
    report.update(changes)
    _strict_load(model, state, model_name, weights_path, f" (the file looks like {layout})" if layout else "")
    report.update(model=model_name, layout=layout or model_name, options=dict(info(model).config),
                  normalization=norm)
    return model.to(device).eval(), report


def fit_state(model: nn.Module, state: dict, family: str) -> tuple[dict, dict]:
    """A foreign state dict (normalisation already taken out) in robustfront's names for `model` of
    `family` ("resnet", "preact", "wrn", ...): unused keys dropped, aliases renamed, the zero bias of
    a bias-free classifier, the model's own normalize buffers and missing BN counters filled in.
    Returns (state, {"renamed", "dropped", "filled"}); the caller loads it strictly."""
    dropped = sorted(k for k in state if any(re.match(p, k) for p in DROP.get(family, ())))
    state = {k: v for k, v in state.items() if k not in dropped}
    own = model.state_dict()
    renamed = _rename(state, family, set(own))
    filled = []
    if family == "wrn" and "fc.weight" in state and "fc.bias" not in state and "fc.bias" in own:
        state["fc.bias"] = torch.zeros_like(own["fc.bias"])  # RobustBench's bias_last=False
        filled.append("fc.bias")
    for k in ("normalize.mean", "normalize.std"):
        if k in own:
            state[k] = own[k]
    filled += fill_bn_counters(model, state)
    return state, {"renamed": renamed, "dropped": dropped, "filled": filled}


def describe(report: dict) -> str:
    """One line for the log: what was loaded and how."""
    n = report.get("normalization", {})
    parts = [f"{report.get('model')} from {report.get('file')} (layout {report.get('layout')})",
             f"normalisation {n.get('source')}: mean {n.get('mean')} std {n.get('std')}"]
    if report.get("renamed"):
        parts.append(f"{len(report['renamed'])} key(s) renamed")
    if report.get("dropped"):
        parts.append(f"{len(report['dropped'])} unused key(s) dropped ({report['dropped'][0]}, ...)")
    if report.get("filled"):
        parts.append(f"filled {', '.join(report['filled'][:3])}" + (" ..." if len(report["filled"]) > 3 else ""))
    return "; ".join(parts)


__all__ = ["WithNormalize", "describe", "fit_state", "guess_layout", "load_factory", "load_foreign", "parse_stats"]

"""Weights from files written elsewhere: `.pt`/`.pth` (always `weights_only=True`) and `.safetensors`,
the type sniffed from the bytes (an HTML error page saved as `.pth` is named as such), the usual
wrappers unwrapped and compile / DataParallel prefixes stripped, and a readable report of how a
state dict matches a model.

    state = read_state_dict("ares_vit_b.pth")        # {name: tensor}
    state, stats = split_normalization(state)        # RobustBench's Sequential(normalize, model), mu/sigma
    report = match_report(model, state)              # missing / unexpected / shape mismatches
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from .. import checkpoint as ckpt
from ..validation import one_line, shown

# keys under which training scripts commonly nest the state dict (TRADES/MART/AWP: plain; timm: "state_dict"
# or "model"; RAAT/Cons-AT: "model" / "state_dict"; others: "net", "model_state_dict")
WRAPPERS = ("state_dict", "model_state_dict", "model", "net", "module", "ema", "state_dict_ema")
PREFIXES = ("module.", "_orig_mod.", "model.")
# where other code keeps its input normalisation: RobustBench's normalize_model (normalize.mean beside
# model.*), nn.Sequential(normalizer, net) ("0.mean" beside "1.*"), buffers on the net itself
# ("mean"/"std", or "mu"/"sigma" as in Rice et al.'s code)
NORM_PREFIXES = ("normalize.", "normalizer.", "normalization.", "norm.", "0.", "")
NORM_NAMES = (("mean", "std"), ("mu", "sigma"))
NET_PREFIXES = ("model.", "net.", "1.")


def sniff(path: Path) -> str:
    """"torch-zip", "torch-legacy", "safetensors", "html", "text", "empty" or "unknown", from the first bytes."""
    with open(path, "rb") as f:
        head = f.read(64)
    if not head:
        return "empty"
    if head.startswith(b"PK\x03\x04"):
        return "torch-zip"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "torch-legacy"
    if len(head) >= 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < 100_000_000:
        return "safetensors"
    text = head.lstrip().lower()
    if text.startswith((b"<!doctype html", b"<html", b"<?xml", b"<head", b"<body")):
        return "html"
    if all(32 <= c < 127 or c in (9, 10, 13) for c in head):
        return "text"
    return "unknown"


def _read_file(path: Path, device) -> dict:
    kind = sniff(path)
    if kind == "safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise ValueError(f"{path} is a .safetensors file and the safetensors package is not installed; "
                             f"allowed: pip install safetensors") from None
        try:
            return load_file(str(path), device=str(device))
        except Exception as e:  # noqa: BLE001 - any parse failure is a bad file
            raise ValueError(f"weights file {path} is a damaged .safetensors file ({str(e).splitlines()[0][:160]})") \
                from None
    if kind in ("torch-zip", "torch-legacy"):
        return ckpt.load(path, device, what="weights file")
    what = {"html": "an HTML page (a failed download?)", "text": "a text file", "empty": "empty (0 bytes)",
            "unknown": "not a known weights format"}[kind]
    raise ValueError(f"weights file {path} is {what}; allowed: a .pt/.pth file written by torch.save or a "
                     f".safetensors file")


def unwrap(obj: dict) -> dict:
    """The state dict inside a training script's checkpoint: robustfront's {"model", "model_config"},
    one of WRAPPERS, nested; then common prefixes (DataParallel, compile, "model.") stripped."""
    if not isinstance(obj, dict):
        raise ValueError(f"found a {type(obj).__name__}, not a state dict; allowed: a dict of tensors")
    for _ in range(len(WRAPPERS) + 1):  # bounded: a pickle can hold a dict that contains itself
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            break
        inner = next((obj[k] for k in WRAPPERS if isinstance(obj.get(k), dict) and obj[k]), None)
        if inner is None:
            tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
            if tensors:  # a state dict with some non-tensor entries beside it (e.g. "epoch")
                obj = tensors
                break
            raise ValueError(one_line(f"found no state dict in the file: top-level keys "
                                      f"{shown(sorted(map(str, obj))[:12])}; allowed: a state dict, or one under "
                                      f"{', '.join(WRAPPERS)}"))
        obj = inner
    else:
        raise ValueError(f"found no state dict in the file: wrappers nested more than {len(WRAPPERS)} deep; "
                         f"allowed: a state dict, or one under {', '.join(WRAPPERS)}")
    return strip_prefixes(dict(obj))


def strip_prefixes(state: dict, prefixes=PREFIXES) -> dict:
    """Drop a prefix that every key carries (repeatedly: "module.model.conv1" -> "conv1")."""
    changed = True
    while changed and state:
        changed = False
        for p in prefixes:
            if all(k.startswith(p) for k in state):
                state = {k[len(p):]: v for k, v in state.items()}
                changed = True
    return state


def split_normalization(state: dict, keep=()) -> tuple[dict, dict | None]:
    """(the network's state, {"mean", "std", "key"} or None): the first normalisation buffer pair found
    (keys in `keep` belong to the network and stay), taken out; a prefix that every remaining key
    then shares ("model.", "net.", "1.") is stripped. mean/std come back as flat lists of floats."""
    for prefix in NORM_PREFIXES:
        for m, s in NORM_NAMES:
            km, ks = prefix + m, prefix + s
            if km in state and ks in state and km not in keep and ks not in keep:
                mean, std = (state[k].detach().float().flatten().cpu().tolist() for k in (km, ks))
                if len(mean) != len(std) or not mean or min(std) <= 0:
                    raise ValueError(f"normalisation buffers {km}/{ks} in the file are invalid (mean {mean}, "
                                     f"std {std}); allowed: equal lengths, every std > 0")
                rest = {k: v for k, v in state.items() if k not in (km, ks)}
                return strip_prefixes(rest, NET_PREFIXES), {"mean": mean, "std": std, "key": km}
    return state, None


def fill_bn_counters(model: nn.Module, state: dict) -> list[str]:
    """Add the BatchNorm `num_batches_tracked` counters that files from torch < 0.4.1 lack (they never
    change an eval-mode output); returns the keys added."""
    added = []
    for k, v in model.state_dict().items():
        if k.endswith(".num_batches_tracked") and k not in state and k[:-19] + "running_mean" in state:
            state[k] = torch.zeros_like(v)
            added.append(k)
    return added


def read_file(path: str | Path, device="cpu") -> dict:
    """The file's top-level dict, as written (a state dict, a training checkpoint, ...), read safely."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"weights file {path} does not exist")
    if not path.is_file():
        raise ValueError(f"weights file {path} is a folder; allowed: a .pt/.pth/.safetensors file")
    return _read_file(path, device)


def read_state_dict(path: str | Path, device="cpu") -> dict[str, torch.Tensor]:
    """{name: tensor} from a .pt/.pth/.safetensors file of any common layout; one ValueError line if bad."""
    try:
        return unwrap(read_file(path, device))
    except ValueError as e:
        text = str(e)
        raise ValueError(text if str(path) in text else one_line(f"weights file {path}: {text}")) from None


def match_report(model: nn.Module, state: dict) -> dict:
    """How `state` fits `model`: keys missing from the file, unexpected in it, and shape mismatches."""
    own = model.state_dict()
    shape = [(k, tuple(state[k].shape), tuple(v.shape)) for k, v in own.items()
             if k in state and tuple(state[k].shape) != tuple(v.shape)]
    return {"missing": sorted(k for k in own if k not in state),
            "unexpected": sorted(k for k in state if k not in own),
            "shape_mismatch": shape}


def check_input_fits(model_config: dict, shape, num_classes: int | None = None, *, what: str = "the data") -> None:
    """Refuse, in one line and before any work, data a model was not built for: another channel count
    or image height (the side recorded as input_size), for an mlp any other shape, for flat-input
    models another length; or more classes than the model has outputs.

    model_config: a model's info(model).config (a checkpoint's "model_config"); shape: one example's shape,
    (C, H, W) or (D,), e.g. `Dataset.shape`.
    """
    shape = tuple(int(v) for v in shape)
    cfg = dict(model_config)
    name = cfg.get("name", "model")
    if cfg.get("input_shape") is not None:
        want = [int(v) for v in cfg["input_shape"]]
        fits = list(shape) == want
    elif cfg.get("input_dim") is not None:
        want = [int(cfg["input_dim"])]
        fits = math.prod(shape) == want[0]
    else:
        c, side = cfg.get("in_channels"), cfg.get("input_size")
        want = [c, side, side]
        fits = len(shape) == 3 and shape[0] == c and shape[1] == side and (name != "mlp" or shape[2] == side)
    if not fits:
        raise ValueError(one_line(f"{what} has examples of shape {list(shape)} but the '{name}' model was built "
                                  f"for {want}; allowed: data of the shape the model was trained on (images "
                                  f"resized with --resize)"))
    classes = cfg.get("num_classes")
    if num_classes is not None and classes is not None and num_classes > classes:
        raise ValueError(one_line(f"{what} has {num_classes} classes but the '{name}' model has {classes} "
                                  f"outputs; allowed: data with at most {classes} classes"))


def format_report(report: dict, limit: int = 8) -> str:
    """One line: what did not match, a few keys of each kind."""
    parts = []
    for kind in ("missing", "unexpected"):
        keys = report[kind]
        if keys:
            more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
            parts.append(f"{len(keys)} {kind} key(s): {', '.join(keys[:limit])}{more}")
    if report["shape_mismatch"]:
        items = [f"{k} file {a} vs model {b}" for k, a, b in report["shape_mismatch"][:limit]]
        parts.append(f"{len(report['shape_mismatch'])} shape mismatch(es): {'; '.join(items)}")
    return "; ".join(parts) or "all keys match"


def resolve_normalization(found: dict | None, given: dict | None) -> dict:
    """The stats to use and where they come from; the file's and the given ones must agree."""
    if found and given:
        a, b = torch.tensor(found["mean"] + found["std"]), torch.tensor(given["mean"] + given["std"])
        if a.shape != b.shape or not torch.allclose(a, b, atol=1e-6):
            raise ValueError(f"the file holds its own normalisation ({found['key']}: mean {found['mean']}, std "
                             f"{found['std']}) and input_mean/input_std differ ({given['mean']}, {given['std']}); "
                             f"allowed: leave them out, or give the file's values")
    if found:
        return {"mean": found["mean"], "std": found["std"], "source": f"file ({found['key']})"}
    if given:
        return {**given, "source": "given"}
    return {"mean": [0.0], "std": [1.0], "source": "identity (none in the file, none given)"}


__all__ = ["check_input_fits", "fill_bn_counters", "format_report", "match_report", "read_file", "read_state_dict",
           "resolve_normalization", "sniff", "split_normalization", "strip_prefixes", "unwrap"]

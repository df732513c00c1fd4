"""Pretrained weights from a file (`--pretrained FILE`) onto a robustfront model, for fine-tuning.

    model = create_model("vit_base_patch16_224", num_classes=200)
    report = load_pretrained(model, "ares_vit_b.pth")       # ImageNet mean/std kept, 1000-class head left

Everything must match except the classifier head (`find_head`): a head of another shape (or none)
in the file leaves the model's new head; any other missing, unexpected or mis-shaped key fails with
one line (`weights.format_report`). The file's own normaliser is usually held outside the model:
without `normalize.*` keys the model's Normalize takes `input_mean/input_std`, else keeps its defaults,
and the report and stderr say which statistics were assumed and why (`info(model).norm_source`).
"""
from __future__ import annotations

import hashlib
import sys
from pathlib import Path

from torch import nn

from .info import info, record
from .normalize import Normalize, parse_stats
from .weights import format_report, match_report, read_state_dict, sniff


class AdaptsPretrained:
    """Mixed into an architecture whose weights from elsewhere need fitting before they load (the ViT
    resamples its position embedding, the timm wrapper runs timm's own filter); load_pretrained calls
    `adapt_pretrained` on the models that declare it."""

    def adapt_pretrained(self, state: dict) -> tuple[dict, list[str]]:
        """(`state` fitted to this model, notes naming each change for the load report)."""
        raise NotImplementedError


def find_head(model: nn.Module) -> str:
    """Name of the classifier module: `info(model).head` where declared (ViT, timm), else the last
    nn.Linear registered (resnet*/preact: linear, wrn: fc, small_cnn: classifier, mlp: net.N)."""
    name = info(model).head
    if name:
        return name
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"model {type(model).__name__} has no nn.Linear classifier; allowed: a model whose head is "
                         "an nn.Linear or that declares it (models.info.record(model, head=NAME))")
    return linears[-1]


def _parent(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    *path, attr = name.split(".")
    return model.get_submodule(".".join(path)) if path else model, attr


def replace_head(model: nn.Module, num_classes: int) -> nn.Linear:
    """A new nn.Linear classifier with `num_classes` outputs in place of the old one (same device/dtype,
    PyTorch's default initialisation from the global RNG); info(model).config follows."""
    name = find_head(model)
    parent, attr = _parent(model, name)
    old = model.get_submodule(name)
    new = nn.Linear(old.in_features, num_classes, bias=old.bias is not None, device=old.weight.device,
                    dtype=old.weight.dtype)
    setattr(parent, attr, new)
    config = info(model).config
    if config is not None:
        record(model, config={**config, "num_classes": num_classes})
    return new


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _normalizer(model: nn.Module) -> tuple[str, Normalize]:
    name, first = next(model.named_children(), (None, None))
    if not isinstance(first, Normalize):
        raise ValueError(f"model {type(model).__name__} has no Normalize first layer; allowed: a model from "
                         "create_model")
    return name, first


def _fit_stats(name: str, value, current: list[float]) -> list[float]:
    """The user's statistic as one value per entry of the model's buffer (a single value is repeated)."""
    if value is None:
        return list(current)
    vals = parse_stats(value, name)
    if len(vals) == 1:
        vals = vals * len(current)
    if len(vals) != len(current):
        raise ValueError(f"{name}={value!r} is invalid for this model; allowed: one value or {len(current)} "
                         f"(one per channel)")
    return vals


def _assumed(model: nn.Module, path: Path, norm: Normalize) -> str:
    """The report's line for a file without a normaliser when none was given, also said on stderr:
    a wrong guess here trains on wrongly scaled inputs without any error."""
    source = info(model).norm_source
    why = f"assumed: {source} (the file holds no normaliser and input_mean/input_std were not given)"
    print(f"robustfront: {path.name}: normaliser mean={norm.mean_values}, std={norm.std_values} {why}; if "
          f"the weights were trained with other statistics give --input-mean/--input-std (imagenet, inception, "
          f"or numbers)", file=sys.stderr, flush=True)
    return f"model default, {why}"


def load_pretrained(model: nn.Module, path: str | Path, *, input_mean=None, input_std=None,
                    num_classes: int | None = None, device="cpu") -> dict:
    """Load weights from `path` (.pt/.pth/.safetensors, any common wrapper/prefix) into `model` in place.

    input_mean/input_std: the normaliser the weights were trained with (per channel, or one value),
    written into the model's Normalize; None keeps the file's `normalize.*` keys if it has them, else
    the model's defaults (for the 224-px ViTs timm's augreg 0.5/0.5), announced on stderr.
    num_classes: replace the head by a new one with this many outputs after loading (None: keep the
    model's head; a file head of another shape is then dropped, as when the model was built for the
    new classes).

    Returns a report {path, sha256, format, loaded, head, normalize, notes, missing, unexpected,
    shape_mismatch} (the last three: the head keys that were allowed to differ) and records
    `info(model).pretrained = {"path", "sha256"}`, the base that fine-tuning checkpoints refer to.
    """
    path = Path(path)
    state = read_state_dict(path, device)
    prefix = info(model).weights_prefix
    if prefix and not any(k.startswith(prefix) for k in state):  # a plain timm state dict for a wrapper
        state = {prefix + k: v for k, v in state.items()}
    notes: list[str] = []
    if isinstance(model, AdaptsPretrained):
        state, notes = model.adapt_pretrained(state)

    file_keys = set(state)
    norm_name, norm = _normalizer(model)
    keys = (f"{norm_name}.mean", f"{norm_name}.std")
    if input_mean is not None or input_std is not None:
        mean = _fit_stats("input_mean", input_mean, norm.mean_values)
        std = _fit_stats("input_std", input_std, norm.std_values)
        given = Normalize(mean, std, channels=None)  # checks std > 0
        state = {**state, keys[0]: given.mean, keys[1]: given.std}
        normalize, values = "from arguments", (mean, std)
    elif all(k in state for k in keys):
        normalize, values = "from the file", None
    else:
        state = {**state, keys[0]: norm.mean, keys[1]: norm.std}
        normalize, values = _assumed(model, path, norm), (list(norm.mean_values), list(norm.std_values))

    head = find_head(model)

    def is_head(key: str) -> bool:
        return key.startswith(head + ".")

    report = match_report(model, state)
    bad = {"missing": [k for k in report["missing"] if not is_head(k)],
           "unexpected": [k for k in report["unexpected"] if not is_head(k)],
           "shape_mismatch": [m for m in report["shape_mismatch"] if not is_head(m[0])]}
    if any(bad.values()):
        raise ValueError(f"weights file {path} does not fit model {type(model).__name__}: {format_report(bad)}; "
                         f"allowed: weights of the same architecture (only the head '{head}' may differ)")
    own = model.state_dict()
    head_keys = [k for k in own if is_head(k)]
    file_head = all(k in state and state[k].shape == own[k].shape for k in head_keys)
    merged = {k: (state[k] if k in state and (file_head or not is_head(k)) else v) for k, v in own.items()}
    model.load_state_dict(merged, strict=True)
    # the values as given (not their float32 round trip), so the config and the report read 0.485
    norm.mean_values, norm.std_values = values or (norm.mean.tolist(), norm.std.tolist())
    config = info(model).config
    if config is not None:
        record(model, config={**config, "mean": list(norm.mean_values), "std": list(norm.std_values)})

    head_note = "loaded from the file" if file_head else "new (the file's head does not fit)"
    out_features = model.get_submodule(head).out_features
    if num_classes is not None and num_classes != out_features:
        replace_head(model, num_classes)
        head_note = f"replaced: {out_features} -> {num_classes} classes"
    sha = file_sha256(path)
    record(model, pretrained={"path": str(path.resolve()), "sha256": sha})
    loaded = sum(k in file_keys and (file_head or not is_head(k)) for k in own)
    return {"path": str(path), "sha256": sha, "format": sniff(path), "loaded": loaded,
            "head": head_note, "normalize": f"{normalize}: mean={norm.mean_values}, std={norm.std_values}",
            "notes": notes, "missing": [k for k in report["missing"] if is_head(k)],
            "unexpected": [k for k in report["unexpected"] if is_head(k)],
            "shape_mismatch": [m for m in report["shape_mismatch"] if is_head(m[0])]}


__all__ = ["AdaptsPretrained", "file_sha256", "find_head", "load_pretrained", "replace_head"]

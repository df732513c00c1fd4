"""Model-hub layout: `robustfront export CKPT --hub-dir DIR` writes a Hugging Face model repository;
`load_model("hf-hub:ORG/NAME")` (and `--checkpoint hf-hub:ORG/NAME`) reads one back.

    DIR/model.safetensors  the architecture's own keys (timm's for timm architectures and the built-in
                           ViTs), normalisation NOT inside: the network sees (x - mean) / std
    DIR/config.json        "architecture" (+ "model_args", "num_classes", "pretrained_cfg" with mean,
                           std, input_size: what timm's hub loader reads), "robustfront": {"model_config":
                           the name and every argument robustfront rebuilds it from}, "normalizer",
                           "threat_model", "evaluation" (summary, and the RobustBench card where one applies)
    DIR/README.md          the model card (YAML front matter, the numbers, how to load it)

A timm architecture loads without robustfront:
    timm.create_model(config["architecture"], pretrained=True, num_classes=..., **config["model_args"],
                      pretrained_cfg_overlay=dict(file="DIR/model.safetensors", num_classes=...))
(num_classes in the overlay too: else timm drops a head that differs from its 1000-class default)
Reading needs `huggingface_hub` (pip install 'robustfront[hub]'); offline (HF_HUB_OFFLINE=1) it reads
its local cache.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from .. import checkpoint as ckpt
from ..registry import parameters
from .info import info

PREFIX = "hf-hub:"
TIMM_NAMES = ("vit_tiny_patch16_224", "vit_small_patch16_224", "vit_base_patch16_224")  # timm's own layout


def timm_architecture(model: nn.Module) -> tuple[str | None, dict]:
    """(timm model name, timm.create_model arguments) when timm can build this network, else (None, {})."""
    cfg = info(model).config or {}
    name, size = str(cfg.get("name", "")), cfg.get("input_size")
    if name.startswith("timm:"):
        net = model.net
        takes_size = "img_size" in parameters(type(net))
        args = dict(cfg.get("timm_kwargs") or {}, **({"img_size": size} if takes_size and size else {}))
        return name[len("timm:"):], args
    plain = not any(k in cfg for k in ("embed_dim", "depth", "num_heads")) and cfg.get("mlp_ratio", 4.0) == 4.0
    if name in TIMM_NAMES and plain:
        return name, {"img_size": size} if size != 224 else {}
    return None, {}


def hub_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The network's tensors without the normaliser, under timm's keys for a timm wrapper."""
    prefix = info(model).weights_prefix
    out = {}
    for k, v in model.state_dict().items():
        if k.startswith("normalize."):
            continue
        out[k[len(prefix):] if prefix and k.startswith(prefix) else k] = v.detach().cpu().contiguous().clone()
    return out


def _evaluation(result: dict | None, source: str | None) -> dict | None:
    if not result:
        return None
    keep = ("data", "split", "n", "n_total", "eps", "norm", "clean_acc", "robust_acc", "official_budgets", "kind")
    out = {k: result[k] for k in keep if k in result}
    out["source"] = source
    try:
        from ..eval.card import model_card
        out["robustbench_card"] = model_card(result, name="-", architecture="-")
    except ValueError as e:
        out["robustbench_card"] = None
        out["robustbench_card_why_not"] = str(e)
    return out


def write_hub(model: nn.Module, out_dir, *, evaluation: dict | None = None, eval_source: str | None = None,
              train_config: dict | None = None, name: str | None = None) -> list[Path]:
    """Write DIR/{model.safetensors, config.json, README.md} for `model` (a robustfront model: its
    info(model).config and Normalize first layer); returns the paths written."""
    from safetensors.torch import save as st_bytes
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rf = dict(info(model).config)
    norm = next(model.children())
    arch, model_args = timm_architecture(model)
    tc = train_config or {}
    threat = {k: tc[k] for k in ("norm", "eps", "alpha", "attack_steps", "method") if k in tc} or None
    channels, size = rf.get("in_channels", 3), rf.get("input_size")
    config = {"architecture": arch or rf["name"], "model_args": model_args, "num_classes": rf["num_classes"],
              "library": "timm" if arch else "robustfront",
              "pretrained_cfg": {"input_size": [channels, size, size], "mean": list(norm.mean_values),
                                 "std": list(norm.std_values), "num_classes": rf["num_classes"],
                                 "interpolation": "bicubic", "crop_pct": 1.0},
              "normalizer": {"mean": list(norm.mean_values), "std": list(norm.std_values),
                             "inside_weights": False, "inputs": "RGB in [0, 1], (x - mean) / std per channel"},
              "threat_model": threat, "data": tc.get("data"),
              "evaluation": _evaluation(evaluation, eval_source),
              "robustfront": {"model_config": rf, "format": 1}}
    blob = st_bytes(hub_state(model), metadata={"format": "pt"})
    files = [ckpt.write_bytes_atomic(out / "model.safetensors", blob),
             ckpt.write_json_atomic(out / "config.json", config)]
    from .hub_card import model_card_text
    files.append(ckpt.write_text_atomic(out / "README.md", model_card_text(config, name or out.name)))
    return files


def is_hub(ref) -> bool:
    return isinstance(ref, str) and ref.startswith(PREFIX)


def read_hub(ref: str, device="cpu") -> dict:
    """A checkpoint dict {"model", "model_config", "config"} from hf-hub:ORG/NAME (through huggingface_hub,
    its cache when offline); load_model and evaluation take it like a robustfront checkpoint."""
    repo = ref[len(PREFIX):]
    if repo.count("/") != 1 or not all(repo.split("/")):
        raise ValueError(f"checkpoint={ref!r} is invalid; allowed: hf-hub:ORG/NAME")
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise ValueError(f"{ref} needs huggingface_hub, which is not installed; allowed: pip install "
                         f"'robustfront[hub]'") from None
    try:
        cfg_path = hf_hub_download(repo, "config.json")
        weights = hf_hub_download(repo, "model.safetensors")
    except Exception as e:  # noqa: BLE001 - not found, offline without a cached copy, network errors
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise ValueError(f"{ref} cannot be read ({type(e).__name__}: {first}); allowed: a model repository with "
                         f"config.json and model.safetensors (robustfront export --hub-dir), cached when "
                         f"HF_HUB_OFFLINE=1") from None
    return read_hub_dir(Path(cfg_path).parent, device, where=ref, files=(Path(cfg_path), Path(weights)))


ckpt.READERS[PREFIX] = read_hub  # checkpoint.load("hf-hub:ORG/NAME") reads through here


def read_hub_dir(folder, device="cpu", *, where: str | None = None, files=None) -> dict:
    """The checkpoint dict from a folder in the hub layout (what read_hub downloads)."""
    folder = Path(folder)
    cfg_path, weights = files or (folder / "config.json", folder / "model.safetensors")
    where = where or str(folder)
    try:
        config = json.loads(Path(cfg_path).read_text())
        rf = dict(config["robustfront"]["model_config"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{where}: config.json has no robustfront model_config ({type(e).__name__}); allowed: a "
                         f"repository written by robustfront export --hub-dir") from None
    from safetensors.torch import load_file
    state = load_file(str(weights), device="cpu")  # load_model moves the model to its device
    prefix = "net." if str(rf.get("name", "")).startswith("timm:") else ""
    state = {prefix + k: v for k, v in state.items()}
    norm = config.get("normalizer") or {}
    state["normalize.mean"] = torch.tensor(norm.get("mean", rf.get("mean")), dtype=torch.float32)
    state["normalize.std"] = torch.tensor(norm.get("std", rf.get("std")), dtype=torch.float32)
    run = {"data": config["data"]} if config.get("data") else {}
    return {"model": state, "model_config": rf, "config": run, "hub": {"ref": where, "config": config}}


__all__ = ["hub_state", "is_hub", "read_hub", "read_hub_dir", "timm_architecture", "write_hub"]

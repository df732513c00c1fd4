"""Fine-tuning modes (`--finetune full|linear|adapter|lora`), the attack view and PEFT checkpoints.

    model = create_model("vit_base_patch16_224", 200); load_pretrained(model, "ares_vit_b.pth")
    prepare_finetune(model, "adapter", adapter_reduction=8)   # or "lora", lora_rank=8, lora_targets="qkv,proj"
    params = trainable_parameters(model)      # adapters + head: the optimizer's and the combiners' parameters
    view = attack_view(model)                 # LoRA: merged weights for the attack passes; else the model
    torch.save(peft_state_dict(model), ...)   # trainable delta + the base file's path and sha256
    model = load_model(...)                   # load_peft: base + structure + delta; export_merged: plain weights

Modes: full (everything trains), linear (head only), adapter (a bottleneck adapter after each MLP
block + head), lora (LoRA on the chosen linears + head). Everything else has requires_grad=False,
and frozen BatchNorm layers stay in eval mode (their running statistics are part of the frozen
backbone). A model wrapped by the `peft` library is handled by `trainable_parameters` too (it is
requires_grad based); its adapters are its own (merge with peft's merge_and_unload).
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .. import checkpoint as ckpt
from ..validation import check_choice, check_int, check_number, invalid
from .adapters import Adapter, LoRALinear, MergedView, add_adapters, add_lora
from .factory import create_model, load_plain
from .info import info, record
from .pretrained import file_sha256, find_head, load_pretrained

MODES = ("full", "linear", "adapter", "lora")
LORA_TARGETS = ("qkv", "proj", "fc1", "fc2")
_ALIASES = {"attn": ("qkv", "proj"), "mlp": ("fc1", "fc2"), "all": LORA_TARGETS}


def parse_targets(targets) -> list[str]:
    """LoRA targets from "qkv,proj", a list, or the aliases attn (qkv, proj), mlp (fc1, fc2), all."""
    items = targets.split(",") if isinstance(targets, str) else list(targets or [])
    out: list[str] = []
    for t in (str(t).strip() for t in items):
        for name in _ALIASES.get(t, (t,)):
            if name not in LORA_TARGETS:
                raise invalid("lora_targets", targets, f"names among {', '.join(LORA_TARGETS)} or attn, mlp, all")
            if name not in out:
                out.append(name)
    if not out:
        raise invalid("lora_targets", targets, f"at least one of {', '.join(LORA_TARGETS)}", "empty")
    return out


class _FrozenBN:
    """Mixed into a frozen BatchNorm's class: train() keeps it in eval mode (pretrained statistics)."""

    def train(self, mode: bool = True):
        return super().train(False)


_FROZEN_BN: dict[type, type] = {}


def _freeze_batchnorm(model: nn.Module) -> int:
    n = 0
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and not isinstance(m, _FrozenBN) \
                and not any(p.requires_grad for p in m.parameters()):
            cls = type(m)
            m.__class__ = _FROZEN_BN.setdefault(cls, type(f"Frozen{cls.__name__}", (_FrozenBN, cls), {}))
            m.eval()
            n += 1
    return n


def prepare_finetune(model: nn.Module, mode: str = "full", *, adapter_reduction: int = 8, lora_rank: int = 8,
                     lora_alpha: float | None = None, lora_targets="qkv,proj") -> nn.Module:
    """Put `model` (in place; also returned) in fine-tuning `mode`, recorded in `info(model).peft`.

    Args:
        mode: "full" | "linear" | "adapter" | "lora".
        adapter_reduction: adapter width = block width // reduction (8, CA-AT's setting).
        lora_rank: rank r of B A (8). lora_alpha: scale numerator, update (alpha/r)·B A (default: r, scale 1).
        lora_targets: linears to adapt, by last name: qkv, proj (attention), fc1, fc2 (MLP) (qkv,proj).
    The head (`find_head`) always trains. Call after `load_pretrained` (it may replace the head).
    """
    check_choice("finetune", mode, MODES)
    if info(model).peft is not None:
        raise invalid("finetune", mode, "one call per model", f"refused: the model is already in mode "
                      f"{info(model).peft['mode']!r}")
    head = find_head(model)
    kind = info(model).name or type(model).__name__
    cfg: dict = {"mode": mode}
    if mode == "adapter":
        cfg["adapter_reduction"] = check_int("adapter_reduction", adapter_reduction, 1)
        if not add_adapters(model, cfg["adapter_reduction"]):
            raise invalid("finetune", mode, "full, linear (for models without transformer MLP blocks)",
                          f"unavailable for {kind}: it has no module named *.mlp")
    elif mode == "lora":
        cfg["lora_rank"] = check_int("lora_rank", lora_rank, 1)
        cfg["lora_alpha"] = check_number("lora_alpha", cfg["lora_rank"] if lora_alpha is None else lora_alpha, 0,
                                         strict=True)
        cfg["lora_targets"] = parse_targets(lora_targets)
        if not add_lora(model, cfg["lora_rank"], cfg["lora_alpha"], cfg["lora_targets"], exclude=head):
            raise invalid("finetune", mode, "full, linear, or lora_targets naming nn.Linear layers of the model",
                          f"unavailable for {kind}: it has no nn.Linear named {', '.join(cfg['lora_targets'])}")
    for p in model.parameters():
        p.requires_grad_(mode == "full")
    if mode != "full":
        for m in model.modules():
            if isinstance(m, Adapter):
                m.requires_grad_(True)
            elif isinstance(m, LoRALinear):
                m.lora_A.requires_grad_(True)
                m.lora_B.requires_grad_(True)
        model.get_submodule(head).requires_grad_(True)
        _freeze_batchnorm(model)
    return record(model, peft=cfg)


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters that train, in model order: what the optimizer and the combiners' gradient
    vectors must see (works for any module, also one wrapped by the `peft` library)."""
    return [p for p in model.parameters() if p.requires_grad]


def parameter_counts(model: nn.Module) -> dict[str, int]:
    total = sum(p.numel() for p in model.parameters())
    return {"trainable": sum(p.numel() for p in trainable_parameters(model)), "total": total}


def attack_view(model: nn.Module, merge: bool | None = None) -> nn.Module:
    """The module the attack passes should run on: for LoRA a `MergedView` (one matmul per adapted
    linear instead of three, re-merged at each forward, so it follows every update and load);
    otherwise (full, linear, adapter, which cannot be folded, or a `peft`-library model) the model
    itself. merge=False forces the model. Build it once after the model is on its device; attacks
    take input gradients only, so the view gives the same x_adv up to float rounding."""
    if merge is False or not any(isinstance(m, LoRALinear) for m in model.modules()):
        return model
    return MergedView(model)


class OnView:
    """`attack` run on `view` whatever model the caller passes (an objective passes the trained
    model or its compiled wrapper); every other attribute (eps, bounds, steps, ...) is the attack's."""

    def __init__(self, attack, view: nn.Module):
        self.attack, self.view = attack, view

    def __call__(self, model, x, y, *args, **kw):
        return self.attack(self.view, x, y, *args, **kw)

    def __getattr__(self, name: str):
        if name in ("attack", "view"):  # not set yet (copy/pickle): no recursion
            raise AttributeError(name)
        return getattr(self.attack, name)  # delegation: eps, bounds, steps... are the wrapped attack's

    def with_threat(self, **threat) -> "OnView":
        """The attack with another budget (Attack.with_threat), still run on the view."""
        return OnView(self.attack.with_threat(**threat), self.view)

    def __repr__(self) -> str:
        return f"OnView({self.attack!r})"


def on_view(attack, view: nn.Module) -> OnView:
    """attack(model, x, y) -> x_adv run on `view` whatever model the objective passes (its wiring hook)."""
    return OnView(attack, view)


def _normalize_keys(model: nn.Module) -> set[str]:
    name = next(iter(dict(model.named_children())), "")
    return {k for k in model.state_dict() if k.startswith(name + ".")} if name else set()


def peft_state_dict(model: nn.Module) -> dict:
    """{"peft", "model_config", "base", "delta"}: the tensors the mode trains (head, adapters, LoRA
    factors; chosen by name, so an EMA copy with everything frozen saves the same keys) + the
    normaliser, and the base weights file's path and sha256. Full mode, or a model without a base
    file, stores everything."""
    cfg, base = info(model).peft, info(model).pretrained
    if cfg is None:
        raise ValueError("model has no fine-tuning mode; allowed: a model passed through prepare_finetune")
    state = model.state_dict()
    if base is None or cfg["mode"] == "full":
        keep = set(state)
    else:  # by structure, not requires_grad: an EMA copy of the model has every parameter frozen
        head = find_head(model) + "."
        marks = {"linear": (), "adapter": (".adapter.",), "lora": (".lora_A", ".lora_B")}[cfg["mode"]]
        keep = {k for k in state if k.startswith(head) or any(m in k for m in marks)} | _normalize_keys(model)
    return {"peft": dict(cfg), "model_config": dict(info(model).config), "base": dict(base) if base else None,
            "delta": {k: v.detach().clone() for k, v in state.items() if k in keep}}


def load_peft(checkpoint: dict | str | Path, *, base: str | Path | None = None, device="cpu",
              check_sha256: bool = True) -> nn.Module:
    """Rebuild a fine-tuned model: create it, load the base file (`base` overrides the recorded path;
    its sha256 must match), apply the recorded mode, load the delta. A checkpoint holding the whole
    model as well (a training checkpoint: {"model", "model_config", "peft", "base", "delta"}, or a
    merged export with adapters) is rebuilt from "model", without the base file. Returns the model on
    `device` in eval mode."""
    state = checkpoint if isinstance(checkpoint, dict) else ckpt.load(checkpoint, device)
    cfg = dict(state["model_config"])
    model = create_model(cfg.pop("name"), **cfg)
    opts = dict(state["peft"])
    recorded = state.get("base")
    if "model" in state:  # the whole model: full weights of the adapted architecture
        prepare_finetune(model, **opts)
        model.load_state_dict(state["model"])
        return model.to(device).eval()
    if recorded:
        path = Path(base if base is not None else recorded["path"])
        if not path.is_file():
            raise FileNotFoundError(f"base weights file {path} of this fine-tuned checkpoint does not exist; "
                                    f"pass base=PATH (sha256 {recorded['sha256'][:12]}...)")
        if check_sha256 and file_sha256(path) != recorded["sha256"]:
            raise ValueError(f"base weights file {path} has another sha256 than the one the delta was trained "
                             f"on ({recorded['sha256'][:12]}...); allowed: that same file")
        load_pretrained(model, path, device=device)
    prepare_finetune(model, **opts)
    result = model.load_state_dict(state["delta"], strict=False)
    if result.unexpected_keys or (not recorded and result.missing_keys):
        raise ValueError(f"fine-tuned delta does not fit the model: {len(result.unexpected_keys)} unexpected "
                         f"({', '.join(result.unexpected_keys[:4])}), {len(result.missing_keys)} missing key(s) "
                         f"without a base file ({', '.join(result.missing_keys[:4])})")
    return model.to(device).eval()


def delta_checkpoint(state: dict) -> dict:
    """The small artifact of a fine-tuning checkpoint: {"peft", "model_config", "base", "delta"}
    (what `peft_state_dict` gives), taken from a training checkpoint without rebuilding the model."""
    if "delta" in state and "peft" in state:
        return {k: state[k] for k in ("peft", "model_config", "base", "delta")}
    if "peft" in state:  # full mode or no base file: the delta is the whole model
        return peft_state_dict(load_peft(state))
    raise ValueError(f"checkpoint has no fine-tuning record ('peft'); found keys {sorted(map(str, state))}; "
                     f"allowed: a checkpoint of a run with --finetune or --pretrained")


def export_merged(model: nn.Module, *, with_normalize: bool = True) -> dict[str, torch.Tensor]:
    """Plain state dict: LoRA folded into W (W + (alpha/r)·BA; no lora_* keys: the original
    architecture), adapters kept as `*.adapter.*` keys (a nonlinear bottleneck cannot be folded;
    `merged_checkpoint` records the structure so load_model rebuilds it). with_normalize=False drops
    the normaliser and the wrapper prefix: the keys of a plain timm model."""
    lora = {n: m for n, m in model.named_modules() if isinstance(m, LoRALinear)}
    out = {}
    for k, v in model.state_dict().items():
        owner, _, leaf = k.rpartition(".")
        if owner in lora and leaf in ("lora_A", "lora_B"):
            continue
        out[k] = (lora[owner].merged_weight() if owner in lora and leaf == "weight" else v).detach().clone()
    if not with_normalize:
        prefix = info(model).weights_prefix
        out = {k[len(prefix):] if prefix and k.startswith(prefix) else k: v for k, v in out.items()
               if k not in _normalize_keys(model)}
    return out


def merged_checkpoint(model: nn.Module) -> dict:
    """{"model": export_merged(model), "model_config"} (+ "peft" when adapters remain): `load_model` reads it."""
    out = {"model": export_merged(model), "model_config": dict(info(model).config)}
    peft = info(model).peft
    if peft is not None and peft["mode"] == "adapter":
        out["peft"] = dict(peft)
    return out


def export_file(checkpoint: str | Path, out: str | Path, *, base: str | Path | None = None,
                plain: bool = False, delta: bool = False) -> Path:
    """`robustfront export --merge`: the checkpoint (a PEFT delta or a robustfront checkpoint) merged
    and written atomically; .safetensors (or plain=True) writes bare tensors with timm's keys.
    delta=True writes the small artifact instead (`delta_checkpoint`: trained tensors + base reference)."""
    state = ckpt.load(checkpoint)
    if delta:
        return ckpt.save_atomic(delta_checkpoint(state), Path(out))
    model = load_peft(state, base=base) if "peft" in state else load_plain(state)
    out = Path(out)
    if out.suffix == ".safetensors" or plain:
        tensors = {k: v.contiguous() for k, v in export_merged(model, with_normalize=False).items()}
        if out.suffix == ".safetensors":
            from safetensors.torch import save_file
            return ckpt._atomic(out, lambda tmp: save_file(tensors, tmp))
        return ckpt.save_atomic(tensors, out)
    return ckpt.save_atomic(merged_checkpoint(model), out)


__all__ = ["LORA_TARGETS", "MODES", "OnView", "attack_view", "delta_checkpoint", "export_file", "export_merged",
           "load_peft", "merged_checkpoint", "on_view", "parameter_counts", "parse_targets", "peft_state_dict",
           "prepare_finetune", "trainable_parameters"]

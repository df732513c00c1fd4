"""The training configuration: one dataclass, declared once, validated when it is built.

Every field's type says what it accepts, and the CLI's flags are generated from these declarations
(`robustfront train --help`): `Num` fields take numbers or fractions and keep their spelling
("8/255" stays "8/255" in config.yaml), `Literal[...]` fields list their allowed values, and the
comment after a field is its help text. The config saved with a run is the config it used.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Literal, Optional

from ..attacks.threat import Norm
from ..checkpoint import read_yaml
from ..fields import Checked, Num, coerce_fields, field_comments, plain, same_value
from ..validation import check_int, check_number, invalid
from .paths import absolute_paths


Schedule = Literal["multistep", "cosine", "onecycle", "onecycle_epoch", "constant"]
SelectOn = Literal["val", "test", "last"]
BNMode = Literal["eval", "train"]
CompileMode = Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"]
FineTune = Literal["full", "linear", "adapter", "lora"]


class Stats(list, Checked):
    """Type of the normaliser fields: a named set ("imagenet"), one number, or one per channel (a list
    or "0.485,0.456,0.406"). Checked with models.parse_stats; the value keeps its spelling."""

    @classmethod
    def check(cls, name: str, v):
        from ..models.normalize import parse_stats
        parse_stats(v, name)  # one line naming the value when it is no statistic
        return [float(e) for e in v] if isinstance(v, (list, tuple)) else v


# keys a --resume may change: they alter what is logged or how long the run goes, not its trajectory so far
RESUME_SAFE = ("epochs", "progress", "tensorboard", "log_every", "device", "out", "wandb", "wandb_group",
               "as_typed")


@dataclass
class TrainConfig:
    # -- data
    data: str = "digits"                 # digits, gaussian[:k=v,..], cifar10, cifar100, tiny-imagenet, or a folder/.tar/.zip
    data_root: Optional[str] = None      # folder holding the named data sets (default: the cache folder, $ROBUSTFRONT_CACHE)
    download: bool = False               # download cifar10/cifar100/tiny-imagenet when missing
    resize: Optional[int] = None         # resize images to this side once, into the cache
    val_size: Optional[int] = None       # held-out images carved from train (default: 1000 for CIFAR-sized sets, 10% for smaller)
    train_n: Optional[int] = None        # train on a seeded random subset of this many images
    # -- model
    model: str = "small_cnn"             # architecture (inputs in [0,1], normalisation inside)
    model_args: dict = field(default_factory=dict)  # architecture options, e.g. width=16
    # -- fine-tuning a pretrained model (docs/finetuning.md)
    pretrained: Optional[str] = None     # weights file to start from (.pt/.pth/.safetensors, e.g. timm's); new head
    input_mean: Optional[Stats] = None   # normaliser mean: imagenet, inception, cifar10, or numbers (default: the file's)
    input_std: Optional[Stats] = None    # normaliser std, the same forms as input_mean (default: the file's)
    finetune: Optional[FineTune] = None  # what trains: full, linear (head), adapter, lora (default: full with pretrained)
    adapter_reduction: int = 8           # adapter width = block width / this (8 is CA-AT's setting)
    lora_rank: int = 8                   # LoRA rank r
    lora_alpha: Optional[Num] = None     # LoRA scale numerator: the update is (alpha/r)·B A (default: r)
    lora_targets: str = "qkv,proj"       # linears LoRA adapts: qkv, proj, fc1, fc2 or attn, mlp, all
    # -- method = objective x combiner (+ wrappers), with defaults from a named preset
    method: str = "pgd_at"               # a named method, see docs/methods
    objective: Optional[str] = None      # override the preset's objective
    combiner: Optional[str] = None       # override the preset's combiner
    wrap: list = field(default_factory=list)  # objective wrappers, e.g. [awp]
    opts: dict = field(default_factory=dict)  # hyper-parameters: gamma=0.8, combiner.gamma=0.8, lam (weight of the adversarial loss)
    # -- optimisation
    epochs: int = 10                     # training epochs
    batch_size: int = 128                # images per step
    lr: Num = "0.1"                      # peak learning rate
    momentum: Num = "0.9"                # SGD momentum
    nesterov: bool = False               # Nesterov momentum
    weight_decay: Num = "5e-4"           # L2 weight decay
    schedule: Schedule = "multistep"     # learning-rate schedule
    milestones: list = field(default_factory=lambda: [0.5, 0.75])  # multistep decay points: fractions (<1) or epochs
    lr_decay: Num = "0.1"                # multistep decay factor
    warmup: Num = "0.3"                  # onecycle, onecycle_epoch: fraction of the run spent warming up
    div_factor: Num = "25"               # onecycle_epoch: the warm-up starts at lr/div_factor
    final_div_factor: Num = "1e4"        # onecycle_epoch: the run ends at lr/div_factor/final_div_factor
    max_nonfinite: int = 20              # stop when an epoch skips more non-finite steps than this (or half its steps)
    # -- threat model of the training attack
    norm: Norm = "Linf"                  # threat model of the training attack
    eps: Num = "8/255"                   # training budget
    alpha: Optional[Num] = None          # attack step size (default: eps/4)
    attack_steps: int = 10               # attack iterations
    attack: Optional[str] = None         # training attack (default: the method's)
    attack_bn_mode: Optional[BNMode] = None  # BatchNorm mode while attacking (default: the method's, mostly eval)
    # -- augmentation on the device; None = by image size (crop 4 + flip for >= 32 px, none below)
    crop: Optional[int] = None           # random-crop padding in pixels (default: 4 for images >= 32 px, else 0)
    flip: Optional[bool] = None          # random horizontal flip (default: on for images >= 32 px)
    cutout: int = 0                      # Cutout square side in pixels (0: off)
    rrc: Optional[list] = None           # random-resized-crop area range, e.g. 0.08,1 (then crop defaults to 0)
    rrc_ratio: list = field(default_factory=lambda: ["3/4", "4/3"])  # random-resized-crop aspect-ratio range
    # -- weight averaging (RAAT#): EMA of the weights from epoch ema_start (0-based); validated and saved
    ema: Optional[Num] = None            # EMA decay, e.g. 0.999 (default: off)
    ema_start: int = 0                   # first epoch (0-based) of the average
    # -- speed options (docs/performance.md); none changes the algorithm
    bf16: bool = False                   # bf16 autocast for forward passes (attacks keep delta in fp32)
    channels_last: bool = False          # NHWC weights and inputs
    compile: bool = False                # torch.compile the model (skipped where unsupported)
    compile_mode: Optional[CompileMode] = None  # torch.compile mode: default, reduce-overhead (CUDA graphs), max-autotune (default: torch's)
    tf32: Optional[bool] = None          # TF32 matmuls/convs in training on CUDA (default: torch's; evaluation is always exact fp32)
    fused_sgd: bool = True               # fused SGD kernel where the device has one
    device: str = "auto"                 # auto, cpu, cuda, cuda:N, mps
    # -- data parallel under torchrun (docs/distributed.md); batch_size is the global batch
    sync_bn: bool = False                # BatchNorm statistics over the global batch (all ranks), not each rank's shard
    # -- checkpoint selection and logging
    seed: int = 0                        # seeds the split, the subset, the init and the batches
    eval_every: int = 1                  # epochs between held-out PGD evaluations
    eval_steps: int = 10                 # PGD steps of the held-out check
    eval_n: Optional[int] = None         # held-out images used for the per-epoch check (default: all of them)
    select_on: SelectOn = "val"          # best.pt by PGD on: val (held out), test (references' rule), last
    select_stale: bool = False           # CA-AT's rule: every epoch compares the LAST check's score (>=), so best.pt is overwritten until a check scores lower
    log_every: int = 0                   # >0: also write combiner diagnostics every N steps (a host sync each)
    progress: bool = True                # progress bar and one line per epoch on stderr
    tensorboard: bool = False            # also write TensorBoard scalars
    wandb: Optional[str] = None          # Weights & Biases project: per-epoch metrics, diagnostics, config (pip install 'robustfront[wandb]')
    wandb_group: Optional[str] = None    # W&B run group (a sweep sets its name)
    out: Optional[str] = None            # the run folder (required: here or in --config)
    as_typed: Optional[dict] = None      # data/data_root/pretrained as typed, where stored absolute (train/paths.py)

    def __post_init__(self):
        coerce_fields(self)
        typed = absolute_paths(self.__dict__)  # another working directory must find the same files
        if typed:
            self.as_typed = {**(self.as_typed or {}), **typed}
        if self.alpha is None:  # the spelling follows eps: 8/255 -> 2/255
            q = Fraction(self.eps.text) / 4 if "/" in self.eps.text else None
            self.alpha = Num(f"{q.numerator}/{q.denominator}" if q is not None else repr(self.eps / 4))
        self._check()

    # -- validation beyond the declared types
    def _check(self) -> None:
        check_number("eps", self.eps, 0.0)
        check_number("alpha", self.alpha, 0.0, strict=self.eps > 0)
        check_number("lr", self.lr, 0.0, strict=True)
        check_number("momentum", self.momentum, 0.0, hi=1.0, hi_strict=True)
        check_number("weight_decay", self.weight_decay, 0.0)
        check_number("lr_decay", self.lr_decay, 0.0, strict=True, hi=1.0)
        check_number("warmup", self.warmup, 0.0, hi=1.0, hi_strict=True)
        check_number("div_factor", self.div_factor, 0.0, strict=True)
        check_number("final_div_factor", self.final_div_factor, 0.0, strict=True)
        if self.nesterov and self.momentum == 0:
            raise invalid("nesterov", True, "momentum > 0, or nesterov=False", "invalid with momentum=0")
        big = 2**31 - 1  # sizes past this overflow torch's int32 indexing long before they would be useful
        for name in ("epochs", "batch_size", "attack_steps", "eval_every", "eval_steps", "max_nonfinite"):
            # getattr below: this dataclass's own fields, named in the checks' tables
            check_int(name, getattr(self, name), 1, big)
        for name, lo in (("train_n", 1), ("eval_n", 1), ("resize", 1), ("crop", 0), ("val_size", 0), ("cutout", 0),
                         ("ema_start", 0), ("log_every", 0)):
            if getattr(self, name) is not None:
                check_int(name, getattr(self, name), lo, big)
        check_int("seed", self.seed, 0, 2**63 - 1)   # torch.manual_seed takes a signed 64-bit integer
        if self.val_size == 0 and self.select_on == "val":
            raise invalid("val_size", 0, "val_size >= 1, or select_on=last / test (no held-out split to choose "
                                         "best.pt on)")
        if not all(isinstance(m, (int, float)) and not isinstance(m, bool) and m > 0 for m in self.milestones):
            raise invalid("milestones", self.milestones, "a list of positive numbers (fractions < 1 or epochs)")
        if self.ema is not None:
            check_number("ema", self.ema, 0.0, strict=True, hi=1.0, hi_strict=True)
        if not (self.device in ("auto", "cpu", "cuda", "mps") or
                (self.device.startswith("cuda:") and self.device[5:].isdigit())):
            raise invalid("device", self.device, "auto, cpu, cuda, cuda:N, mps", "unknown")
        self._check_finetune()
        if self.out is not None and not self.out.strip():
            raise invalid("out", self.out, "a non-empty folder path")

    def _check_finetune(self) -> None:
        from ..models.peft import parse_targets
        if self.pretrained is not None and not str(self.pretrained).strip():
            raise invalid("pretrained", self.pretrained, "a weights file path, or none")
        check_int("adapter_reduction", self.adapter_reduction, 1)
        check_int("lora_rank", self.lora_rank, 1)
        if self.lora_alpha is not None:
            check_number("lora_alpha", self.lora_alpha, 0.0, strict=True)
        parse_targets(self.lora_targets)
        for key in ("mean", "std"):
            # getattr: the dataclass's input_mean/input_std fields by name
            if getattr(self, f"input_{key}") is not None and key in self.model_args:
                raise invalid(f"input_{key}", getattr(self, f"input_{key}"), f"input_{key} or model_args {key}, "
                              f"not both")
        if self.rrc is not None:
            self.rrc = _range("rrc", self.rrc, "two numbers 0 < lo <= hi <= 1, e.g. 0.08,1", hi=1.0)
            if self.crop:
                raise invalid("crop", self.crop, "crop=0 or unset with rrc (the random-resized-crop replaces "
                                                 "the padded crop)")
        self.rrc_ratio = _range("rrc_ratio", self.rrc_ratio, "two numbers 0 < lo <= hi, e.g. 3/4,4/3")

    # -- IO
    @classmethod
    def fields(cls) -> dict[str, dataclasses.Field]:
        return {f.name: f for f in dataclasses.fields(cls)}

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        if not isinstance(d, dict):
            raise ValueError(f"a config must be a mapping of keys to values, got {type(d).__name__}; allowed: "
                             f"keys {', '.join(cls.fields())}")
        unknown = sorted(set(map(str, d)) - set(cls.fields()))
        if unknown:
            raise ValueError(f"unknown config key(s) {unknown}; allowed: {', '.join(cls.fields())}")
        return cls(**d)

    @classmethod
    def from_yaml(cls, path: str) -> "TrainConfig":
        return cls.from_dict(read_yaml(path))

    def to_dict(self) -> dict:
        """Plain values (fractions as their text), ready for YAML, JSON and torch.save(weights_only)."""
        # getattr: every declared field of this dataclass
        return {f.name: plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def changed(self, other: "TrainConfig") -> dict:
        """{key: (ours, theirs)} for every field that differs (by value: "8/255" equals 0.0313...)."""
        a, b = self.to_dict(), other.to_dict()
        return {k: (a[k], b[k]) for k in a if same_value(a[k]) != same_value(b[k])}


def _range(name: str, v, allowed: str, hi: float | None = None) -> list:
    """[lo, hi] as two Num (spellings kept) with 0 < lo <= hi (<= `hi`), else one line."""
    try:
        lo_v, hi_v = (Num(e, name) for e in v)
    except (TypeError, ValueError):
        raise invalid(name, v, allowed) from None
    if not (0 < lo_v <= hi_v) or (hi is not None and hi_v > hi):
        raise invalid(name, v, allowed)
    return [lo_v, hi_v]


def field_help(name: str) -> str:
    """The comment after a field's declaration (its --help text)."""
    return field_comments(TrainConfig).get(name, "")


__all__ = ["Num", "RESUME_SAFE", "Stats", "TrainConfig", "field_help", "read_yaml"]

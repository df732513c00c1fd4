"""The training configuration: one dataclass, loaded from YAML and/or CLI flags, validated."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import yaml

SCHEDULES = ("multistep", "cosine", "onecycle", "constant")
NORMS = ("Linf", "L2", "L1")
SELECT_ON = ("val", "test")


def parse_number(value: Any, name: str) -> float:
    """Accept 0.03, "0.03" or "8/255" (budgets are written as fractions of 255)."""
    if isinstance(value, bool):
        raise ValueError(f"{name}={value!r} is not a number; allowed: a number or a fraction like 8/255")
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(Fraction(str(value).strip()))
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"{name}={value!r} is not a number; allowed: a number or a fraction like 8/255") from None


@dataclass
class TrainConfig:
    # data
    data: str = "digits"
    data_root: str | None = None
    download: bool = False
    resize: int | None = None
    val_size: int | None = None          # default: 1000 for CIFAR-sized sets, 10 % for small ones
    train_n: int | None = None           # train on a seeded random subset of this many images (CPU runs)
    # model
    model: str = "small_cnn"
    model_args: dict = field(default_factory=dict)
    # method = (objective, combiner) with defaults; `opts` overrides their hyper-parameters
    method: str = "pgd_at"
    opts: dict = field(default_factory=dict)
    # optimisation
    epochs: int = 10
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    schedule: str = "multistep"
    milestones: list = field(default_factory=lambda: [0.5, 0.75])  # fractions of the run (<1) or epochs
    lr_decay: float = 0.1
    warmup: float = 0.3                  # one-cycle: fraction of steps spent warming up
    # threat model of the training attack
    norm: str = "Linf"
    eps: Any = "8/255"
    alpha: Any = None                    # default eps/4 (2/255 for 8/255, 32/255 for L2 128/255)
    attack_steps: int = 10
    attack: str | None = None            # training attack; default: the method's
    # augmentation on the device; None = by image size (crop 4 + flip for >= 32 px, none below)
    crop: int | None = None
    flip: bool | None = None
    cutout: int = 0
    # weight averaging (RAAT#): EMA of the weights with this decay from epoch `ema_start` (0-based);
    # the EMA weights are the ones validated and saved under "model"
    ema: float | None = None
    ema_start: int = 0
    # run
    bf16: bool = False                   # bf16 autocast for forward passes (attacks keep δ in fp32)
    # speed options (see docs/performance.md); none changes the algorithm
    channels_last: bool = False          # NHWC model weights and inputs (faster convs on recent GPUs/oneDNN)
    compile: bool = False                # torch.compile the model for training and attack (skipped if unsupported)
    fused_sgd: bool = True               # fused SGD kernel where the device has one, else foreach
    device: str = "auto"
    seed: int = 0
    eval_every: int = 1                  # epochs between held-out PGD-10 evaluations
    eval_steps: int = 10
    eval_n: int | None = None            # held-out images used for the per-epoch PGD check (default: all)
    select_on: str = "val"               # best.pt by PGD-10 on: "val" (held out from train) or "test" (the
                                         # references' rule, for reproduction only: it tunes on the test set)
    log_every: int = 0                   # >0: also write combiner diagnostics every N steps (a host sync each)
    progress: bool = True
    tensorboard: bool = False
    out: str | None = None

    @classmethod
    def fields(cls) -> dict[str, dataclasses.Field]:
        return {f.name: f for f in dataclasses.fields(cls)}

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = cls.fields()
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise ValueError(f"unknown config key(s) {unknown}; allowed: {', '.join(known)}")
        return cls(**d)

    @classmethod
    def from_yaml(cls, path: str) -> "TrainConfig":
        with open(path) as f:
            d = yaml.safe_load(f) or {}
        if not isinstance(d, dict):
            raise ValueError(f"config file {path} must hold a mapping of keys to values, got {type(d).__name__}")
        return cls.from_dict(d)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    # -- validation ---------------------------------------------------------------
    def resolved(self) -> "TrainConfig":
        """A validated copy with numbers parsed; raises ValueError naming the bad value."""
        c = dataclasses.replace(self, opts=dict(self.opts), model_args=dict(self.model_args))
        c.eps = parse_number(c.eps, "eps")
        c.alpha = c.eps / 4 if c.alpha is None else parse_number(c.alpha, "alpha")
        if c.ema is not None:
            c.ema = parse_number(c.ema, "ema")
        for name in ("lr", "momentum", "weight_decay", "lr_decay", "warmup"):
            setattr(c, name, parse_number(getattr(c, name), name))
        _positive_int(c, "epochs", "batch_size", "attack_steps", "eval_every", "eval_steps")
        _check(c.schedule in SCHEDULES, f"schedule={c.schedule!r} is not known; allowed: {', '.join(SCHEDULES)}")
        _check(c.select_on in SELECT_ON, f"select_on={c.select_on!r} is not known; allowed: {', '.join(SELECT_ON)}")
        _check(c.norm in NORMS, f"norm={c.norm!r} is not known; allowed: {', '.join(NORMS)}")
        _check(c.eps >= 0, f"eps={c.eps} is negative; allowed: eps >= 0")
        _check(c.alpha > 0 or c.eps == 0, f"alpha={c.alpha} must be > 0")
        _check(c.lr > 0, f"lr={c.lr} must be > 0")
        _check(0 <= c.momentum < 1, f"momentum={c.momentum} is out of range; allowed: 0 <= momentum < 1")
        _check(c.weight_decay >= 0, f"weight_decay={c.weight_decay} must be >= 0")
        _check(0 < c.lr_decay <= 1, f"lr_decay={c.lr_decay} is out of range; allowed: 0 < lr_decay <= 1")
        _check(0 <= c.warmup < 1, f"warmup={c.warmup} is out of range; allowed: 0 <= warmup < 1")
        _check(not (c.nesterov and c.momentum == 0), "nesterov=True needs momentum > 0")
        _check(isinstance(c.milestones, (list, tuple)) and all(isinstance(m, (int, float)) and m > 0 for m in c.milestones),
               f"milestones={c.milestones!r} must be a list of positive numbers (fractions < 1 or epochs)")
        for name in ("train_n", "eval_n"):
            v = getattr(c, name)
            _check(v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 1),
                   f"{name}={v!r} must be an integer >= 1")
        for name in ("crop", "cutout", "val_size", "resize"):
            v = getattr(c, name)
            _check(v is None or (isinstance(v, int) and v >= 0), f"{name}={v!r} must be a non-negative integer")
        _check(c.device == "auto" or c.device == "cpu" or c.device.startswith("cuda") or c.device == "mps",
               f"device={c.device!r} is not known; allowed: auto, cpu, cuda, cuda:N, mps")
        _check(c.ema is None or 0 < c.ema < 1, f"ema={c.ema!r} is out of range; allowed: 0 < ema < 1, or None")
        _check(isinstance(c.ema_start, int) and c.ema_start >= 0, f"ema_start={c.ema_start!r} must be an integer >= 0")
        _check(isinstance(c.log_every, int) and c.log_every >= 0, f"log_every={c.log_every!r} must be an integer >= 0")
        _check(isinstance(c.opts, dict), f"opts={c.opts!r} must be a mapping of hyper-parameter names to values")
        return c


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def _positive_int(c: TrainConfig, *names: str) -> None:
    for name in names:
        v = getattr(c, name)
        _check(isinstance(v, int) and not isinstance(v, bool) and v >= 1, f"{name}={v!r} must be an integer >= 1")

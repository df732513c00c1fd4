"""Building a Trainer from a TrainConfig: the model (pretrained weights and fine-tuning mode
included), the method, the optimizer over the trainable parameters, the loader and the schedule.

    trainer = build_trainer(cfg, ds, device)
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .. import checkpoint as ckpt
from ..attacks import ThreatModel
from ..data import DeviceLoader
from ..device import fused_sgd_supported, maybe_compile, warn_emulated_bf16
from ..models import attack_view, create_model, load_pretrained, parse_stats, prepare_finetune, trainable_parameters
from ..models.info import info, record
from ..models.peft import on_view, parameter_counts, peft_state_dict
from ..validation import invalid
from .config import TrainConfig
from .ema import EMA
from .methods import build_method
from .schedule import Schedule
from .trainer import Trainer


def channel_stats(x) -> tuple[list[float], list[float]]:
    """Per-channel mean/std of uint8 training images, for the Normalize layer inside the model."""
    t = torch.as_tensor(x[:10000]).float().div(255).transpose(0, 1).flatten(1)
    return t.mean(1).tolist(), t.std(1).clamp_min(1e-3).tolist()


def build_model(cfg: TrainConfig, ds, device) -> torch.nn.Module:
    """The config's model on `device`: created, then (with `pretrained`) loaded from the weights file
    with a new head for the data's classes, then put in its fine-tuning mode (`finetune`). The load
    report is kept as `info(model).pretrained_report`."""
    kw = dict(cfg.model_args)
    if cfg.pretrained is None:
        if cfg.input_mean is not None or cfg.input_std is not None:  # a known recipe's statistics
            kw["mean"], kw["std"] = _given_stats(cfg, ds.shape[0] if len(ds.shape) == 3 else 1)
        elif ds.x_train.dtype == np.uint8 and "mean" not in kw:
            kw["mean"], kw["std"] = channel_stats(ds.x_train)
    if len(ds.shape) == 3:
        kw.setdefault("in_channels", ds.shape[0])
        kw.setdefault("input_size", ds.shape[1])
    else:
        kw.setdefault("input_shape", list(ds.shape))
    if "num_classes" in kw:  # the head's size is the data's class count, never a free option
        raise invalid("model_args.num_classes", kw["num_classes"], f"leave it out: the data has {len(ds.classes)} "
                      f"classes and the model gets that many outputs (--model-arg)")
    model = create_model(cfg.model, num_classes=len(ds.classes), **kw)
    if cfg.pretrained is not None:  # the file's normaliser, or input_mean/std, or the model's default
        record(model, pretrained_report=load_pretrained(model, cfg.pretrained, input_mean=cfg.input_mean,
                                                        input_std=cfg.input_std))
    mode = cfg.finetune or ("full" if cfg.pretrained is not None else None)
    if mode is not None:
        prepare_finetune(model, mode, adapter_reduction=cfg.adapter_reduction, lora_rank=cfg.lora_rank,
                         lora_alpha=None if cfg.lora_alpha is None else float(cfg.lora_alpha),
                         lora_targets=cfg.lora_targets)
    model = model.to(device)
    return model.to(memory_format=torch.channels_last) if cfg.channels_last else model


def _given_stats(cfg: TrainConfig, channels: int) -> tuple[list[float], list[float]]:
    """input_mean/input_std for a model built from scratch (one value is repeated per channel)."""
    out = []
    for name, value, default in (("input_mean", cfg.input_mean, 0.0), ("input_std", cfg.input_std, 1.0)):
        vals = parse_stats(value, name) or [default]
        if len(vals) not in (1, channels):
            raise invalid(name, value, f"one value or {channels} (one per channel of the data)")
        out.append(vals * channels if len(vals) == 1 else vals)
    return out[0], out[1]


def _attacks_on(objective, view) -> None:
    """Run the objective's training attacks (those it declares, `attacks()`, wrapped objectives' included)
    on `view`, the merged-LoRA copy: input gradients only, one matmul per adapted linear. An attack
    shared by several objectives gets one wrapper."""
    wrapped: dict[int, object] = {}
    objective.replace_attacks(lambda attack: wrapped.setdefault(id(attack), on_view(attack, view)))


class FineTuneTrainer(Trainer):
    """A Trainer whose checkpoints also say how to rebuild the fine-tuned model: the mode ("peft"),
    the base weights file ("base": path + sha256) and the trained tensors alone ("delta"; the whole
    model in full mode stays under "model"). load_model reads them; a resume checks the base file."""

    def state_dict(self) -> dict:
        s = super().state_dict()
        model = self.scored
        peft, base = info(model).peft, info(model).pretrained
        s.update(peft=dict(peft), base=dict(base) if base else None)
        if base and peft["mode"] != "full":  # full mode: the delta is the whole model, once is enough
            s["delta"] = peft_state_dict(model)["delta"]
        return s

    def load_state_dict(self, s: dict) -> None:
        ours, theirs = info(self.model).pretrained, s.get("base")
        if theirs and ours and ours["sha256"] != theirs["sha256"]:
            raise ValueError(f"pretrained={ours['path']} is not the base file this run started from (sha256 "
                             f"{theirs['sha256'][:12]}... at {theirs['path']}); allowed: that same file")
        super().load_state_dict(s)


def build_optimizer(cfg: TrainConfig, params: list, device: torch.device) -> torch.optim.SGD:
    """SGD; fused_sgd=True: one fused kernel where the device has it, else the multi-tensor (foreach)
    path. Same update rule, fewer kernel launches."""
    kw = dict(lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov, weight_decay=cfg.weight_decay)
    if cfg.fused_sgd:
        kw.update({"fused": True} if fused_sgd_supported(device) else {"foreach": True})
    return torch.optim.SGD(params, **{k: float(v) if not isinstance(v, bool) else v for k, v in kw.items()})


def training_threat(cfg: TrainConfig, bounds) -> ThreatModel:
    return ThreatModel(norm=cfg.norm, eps=float(cfg.eps), alpha=float(cfg.alpha), steps=cfg.attack_steps,
                       bounds=bounds)


def build_trainer(cfg: TrainConfig, ds, device: torch.device) -> Trainer:
    """Model, method, optimizer, schedule and device loader for a config; draws torch RNG in a fixed order.

    Fine-tuning: the optimizer (and so the combiners' gradient vectors) gets the trainable parameters
    only; with LoRA the training attack runs on the merged view; the pretrained load report goes to
    OUT/pretrained.json."""
    big = len(ds.shape) == 3 and ds.shape[-1] >= 32
    model = build_model(cfg, ds, device)
    objective, combiner = build_method(cfg, training_threat(cfg, ds.bounds))
    view = attack_view(model)
    if view is not model:
        _attacks_on(objective, maybe_compile(view, device, cfg.compile_mode) if cfg.compile else view)
    opt = build_optimizer(cfg, trainable_parameters(model), device)
    crop = cfg.crop if cfg.crop is not None else (4 if big and cfg.rrc is None else 0)
    loader = DeviceLoader(ds.x_train, ds.y_train, cfg.batch_size, device=device, train=True, crop=crop,
                          flip=cfg.flip if cfg.flip is not None else big, cutout=cfg.cutout, seed=cfg.seed,
                          views=objective.views, rrc=None if cfg.rrc is None else [float(v) for v in cfg.rrc],
                          rrc_ratio=[float(v) for v in cfg.rrc_ratio])
    schedule = Schedule(cfg.schedule, float(cfg.lr), cfg.epochs * len(loader), len(loader),
                        milestones=cfg.milestones, decay=float(cfg.lr_decay), warmup=float(cfg.warmup),
                        epochs=cfg.epochs, div_factor=float(cfg.div_factor),
                        final_div_factor=float(cfg.final_div_factor))
    warn_emulated_bf16(device, cfg.bf16)
    ema = EMA(model, float(cfg.ema), cfg.ema_start) if cfg.ema else None
    if ema is not None:  # RAAT# decides with the averaged weights
        objective.bind(ema.model, cfg.ema_start)
    kind = FineTuneTrainer if info(model).peft is not None else Trainer  # prepared for fine-tuning or not
    trainer = kind(model, objective, combiner, opt, loader, schedule, device=device,
                   net=maybe_compile(model, device, cfg.compile_mode) if cfg.compile else model, ema=ema,
                   bf16=cfg.bf16,
                   channels_last=cfg.channels_last)
    if info(model).pretrained_report is not None:
        _write_pretrained_report(cfg, model)
    return trainer


def _write_pretrained_report(cfg: TrainConfig, model) -> None:
    """OUT/pretrained.json: what the weights file gave (keys loaded, head, normaliser, notes) and
    what trains, so a run folder says what it started from."""
    if cfg.out is None or not Path(cfg.out).is_dir():
        return
    report = {**info(model).pretrained_report, "finetune": dict(info(model).peft), **parameter_counts(model)}
    ckpt.write_json_atomic(Path(cfg.out) / "pretrained.json", report)


__all__ = ["FineTuneTrainer", "build_model", "build_optimizer", "build_trainer", "channel_stats", "training_threat"]

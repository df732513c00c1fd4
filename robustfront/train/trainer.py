"""The Trainer owns one training step and everything a resume needs.

    trainer = build_trainer(cfg, ds, device)
    trainer.on_epoch(epoch)
    for x, y in trainer.loader:
        trainer.step(x, y)
    metrics = trainer.pop_epoch()          # the one host read of the epoch's device-side sums

Nothing in `step` reads a device value back to the host. `trainer.distribute(dist, ...)` makes the
same Trainer data-parallel over torchrun's ranks (train/distributed.py).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .. import checkpoint as ckpt
from ..attacks import ThreatModel
from ..data import DeviceLoader
from ..device import autocast, fused_sgd_supported, maybe_compile, warn_emulated_bf16
from ..models import attack_view, create_model, load_pretrained, parse_stats, prepare_finetune, trainable_parameters
from ..models.peft import on_view, parameter_counts, peft_state_dict
from ..objectives.base import Objective
from ..validation import invalid
from .config import TrainConfig
from .distributed import Dist, rank_seed
from .ema import EMA
from .guard import UpdateGuard
from .methods import build_method
from .schedule import Schedule
from .term_grads import TermGrads


class Trainer:
    """model: the plain module (trained, saved); net: what the objective calls (model itself, or its
    torch.compile wrapper, which shares the parameters); scored: the weights validated and saved under
    "model" (the EMA average when weight averaging is on, else the model)."""

    def __init__(self, model, objective, combiner, opt, loader, schedule, *, net=None, ema=None, bf16=False,
                 channels_last=False, device=torch.device("cpu")):
        self.model, self.net = model, net if net is not None else model
        self.objective, self.combiner, self.opt, self.loader, self.schedule, self.ema = \
            objective, combiner, opt, loader, schedule, ema
        self.device, self.bf16, self.channels_last = device, bf16, channels_last
        self.params = [p for g in opt.param_groups for p in g["params"]]
        self.term_grads = TermGrads(self.params, combiner.terms) if combiner.separate else None
        self.guard = UpdateGuard(self.params, opt, buffers=list(model.buffers()))
        self.epoch, self.lr = 0, schedule.lr()
        self._sums: dict[str, torch.Tensor] = {}
        self._seen = 0
        self.dist, self.sum_grads = Dist(), None

    def distribute(self, dist: Dist, *, seed: int = 0, sync_bn: bool = False) -> None:
        """Data-parallel over dist.world ranks (nothing changes with one process). The loader yields this
        rank's shard of each global batch; step() averages the gradients over the ranks in one all-reduce
        of a flat buffer before the combiner sees them (sum combiners: the one backward; gradient
        surgery: every term's gradient), so each rank makes the same decision and the same update.
        sync_bn: BatchNorm statistics of the global batch (SyncBatchNorm, any backend). Rank 0's weights
        are broadcast once; then each rank's torch RNG gets its own seed (attack starts, random draws)."""
        self.dist = dist
        if not dist.active:
            return
        if self.loader.batch_size % dist.world:
            raise ValueError(f"batch_size={self.loader.batch_size} is not a multiple of the {dist.world} ranks "
                             f"(batch_size is the global batch, split evenly); allowed: a multiple of {dist.world}")
        if sync_bn:
            from .sync_bn import convert_sync_batchnorm
            convert_sync_batchnorm(self.model)
        before = len(self.loader)
        self.loader.shard(dist.rank, dist.world)
        if len(self.loader) != before:  # an epoch's last batch had fewer images than ranks: the schedule counts
            self.schedule.total = max(1, round(self.schedule.total * len(self.loader) / before))
            self.schedule.steps_per_epoch = len(self.loader)
        if self.term_grads is None:  # the one backward lands in a flat buffer too, for the one all-reduce
            self.sum_grads = TermGrads(self.params, ("total",))
        dist.broadcast_([*self.model.parameters(), *self.model.buffers()]
                        + ([*self.ema.model.parameters(), *self.ema.model.buffers()] if self.ema else []))
        torch.manual_seed(rank_seed(seed, dist.rank))

    @property
    def scored(self) -> torch.nn.Module:
        return self.ema.model if self.ema else self.model

    def on_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.model.train()
        self.objective.on_epoch(epoch)
        self.combiner.on_epoch(epoch)

    def step(self, x, y):
        """objective under autocast -> gradients -> combine -> hooks -> guarded SGD step -> EMA."""
        self.lr = self.schedule.apply(self.opt)
        self.guard.begin()
        with autocast(self.device, self.bf16):
            losses, stats = self.objective(self.net, self._format(x), y)
        self.opt.zero_grad(set_to_none=True)
        total = self._gradients(losses)          # one backward (sum combiners) or per-term grads -> combine
        self.objective.after_backward(self.model)  # e.g. AWP takes its weight perturbation back
        self.combiner.after_backward(self.model)
        self.guard.step()                        # opt.step(), undone if the gradient or the result is not finite
        if self.ema:
            self.ema.update(self.model, self.epoch)
        self._accumulate(total, stats, len(y))
        return total, losses, stats

    def _gradients(self, losses):
        if self.term_grads is None:
            total = self.combiner.total_loss(losses)
            if self.sum_grads is None:
                total.backward()
            else:                                # data parallel: into the flat buffer, averaged over the ranks
                grads = self.sum_grads({"total": total})
                self._average(self.sum_grads)
                for p, g in zip(self.params, grads["total"]):
                    p.grad = g
            return total.detach()
        grads = self.term_grads(losses)          # one backward per term, into preallocated flat buffers
        if self.dist.active:
            self._average(self.term_grads)       # the global g_c, g_a (...) BEFORE the combiner decides
        for p, u in zip(self.params, self.combiner.combine(grads)):
            p.grad = u
        return self.objective.reported_loss(losses)

    def _average(self, tg: TermGrads) -> None:
        """Every term's flat gradient averaged over the ranks: one all-reduce (the shards are equal, so
        the mean of the ranks' batch means is the global batch's mean)."""
        self.dist.all_reduce_(tg.block).div_(self.dist.world)

    def _format(self, x):
        if isinstance(x, (tuple, list)):
            return type(x)(self._format(v) for v in x)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.dim() == 4 else x

    def _accumulate(self, total, stats, n: int) -> None:
        s = self._sums
        s["loss"] = s.get("loss", 0) + total.detach().float() * n
        for k, v in stats.items():
            s[k] = s.get(k, 0) + v
        self._seen += n

    def pop_epoch(self) -> dict:
        """The epoch's means (train loss, accuracies, the objective's stats), its non-finite step count
        and the combiner's diagnostics; resets the sums. One host read."""
        names = {"loss": "train_loss", "clean_correct": "train_clean_acc", "adv_correct": "train_adv_acc"}
        keys = list(self._sums)
        sums = torch.stack([torch.as_tensor(self._sums[k], dtype=torch.float64, device=self.device) for k in keys]
                           + [torch.tensor(float(self._seen), dtype=torch.float64, device=self.device),
                              self.guard.skipped.double()])
        # every rank's sums and image counts at once; the skipped-step count is the same on every rank
        vals = self.dist.all_reduce_(sums).tolist()
        seen, vals[-1] = int(vals[-2]), vals[-1] / self.dist.world
        out = {"n_train": seen, "lr": self.lr}
        out.update({names.get(k, "train_" + k): v / max(seen, 1) for k, v in zip(keys, vals)})
        out["nonfinite_steps"] = round(vals[-1])
        self._sums, self._seen = {}, 0
        self.guard.skipped.zero_()
        return out

    # -- resume
    def state_dict(self) -> dict:
        """Everything a resume needs. Data parallel: a collective (every rank calls it), gathering every
        rank's RNG state under "rng_ranks"."""
        rng = ckpt.rng_state(self.device)
        s = {"model": self.scored.state_dict(), "optimizer": self.opt.state_dict(),
             "scheduler": self.schedule.state_dict(), "loader": self.loader.state_dict(),
             "rng": rng, "model_config": self.model.rf_config}
        if self.ema:
            s["model_raw"] = self.model.state_dict()
        if self.dist.active:
            s["world_size"], s["rng_ranks"] = self.dist.world, self.dist.all_gather_object(rng)
        return s

    def load_state_dict(self, s: dict) -> None:
        self.model.load_state_dict(s.get("model_raw", s["model"]))
        if self.ema:
            self.ema.model.load_state_dict(s["model"])
        self.opt.load_state_dict(s["optimizer"])
        self.guard.rebind()
        self.schedule.load_state_dict(s["scheduler"])
        self.loader.load_state_dict(s["loader"])
        world = int(s.get("world_size", 1))
        if world != self.dist.world:
            raise ValueError(f"world_size={self.dist.world} differs from the {world} rank(s) that wrote this "
                             f"checkpoint, so each rank's random stream cannot be restored; allowed: resume with "
                             + ("torchrun --nproc_per_node=... giving WORLD_SIZE=" + str(world) if world > 1
                                else "one process (no torchrun)"))
        ckpt.set_rng_state(s["rng_ranks"][self.dist.rank] if world > 1 else s["rng"], self.device)


# -- building one from a config ----------------------------------------------------------------

def channel_stats(x) -> tuple[list[float], list[float]]:
    """Per-channel mean/std of uint8 training images, for the Normalize layer inside the model."""
    t = torch.as_tensor(x[:10000]).float().div(255).transpose(0, 1).flatten(1)
    return t.mean(1).tolist(), t.std(1).clamp_min(1e-3).tolist()


def build_model(cfg: TrainConfig, ds, device) -> torch.nn.Module:
    """The config's model on `device`: created, then (with `pretrained`) loaded from the weights file
    with a new head for the data's classes, then put in its fine-tuning mode (`finetune`). The load
    report is kept as `model.rf_pretrained_report`."""
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
    model = create_model(cfg.model, num_classes=len(ds.classes), **kw)
    if cfg.pretrained is not None:  # the file's normaliser, or input_mean/std, or the model's default
        model.rf_pretrained_report = load_pretrained(model, cfg.pretrained, input_mean=cfg.input_mean,
                                                     input_std=cfg.input_std)
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
    """Run the objective's training attack (and those of the objectives it wraps, e.g. AWP's inner
    one) on `view`, the merged-LoRA copy: input gradients only, one matmul per adapted linear."""
    wrapped: dict[int, object] = {}
    stack, seen = [objective], set()
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        for v in vars(obj).values():  # wrapped objectives, alone or in lists
            stack += [e for e in (v if isinstance(v, (list, tuple)) else [v]) if isinstance(e, Objective)]
        attack = getattr(obj, "attack", None)
        if attack is not None:
            obj.attack = wrapped.setdefault(id(attack), on_view(attack, view))


class FineTuneTrainer(Trainer):
    """A Trainer whose checkpoints also say how to rebuild the fine-tuned model: the mode ("peft"),
    the base weights file ("base": path + sha256) and the trained tensors alone ("delta"; the whole
    model in full mode stays under "model"). load_model reads them; a resume checks the base file."""

    def state_dict(self) -> dict:
        s = super().state_dict()
        model = self.scored
        base = getattr(model, "rf_pretrained", None)
        s.update(peft=dict(model.rf_peft), base=dict(base) if base else None)
        if base and model.rf_peft["mode"] != "full":  # full mode: the delta is the whole model, once is enough
            s["delta"] = peft_state_dict(model)["delta"]
        return s

    def load_state_dict(self, s: dict) -> None:
        ours, theirs = getattr(self.model, "rf_pretrained", None), s.get("base")
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
    kind = FineTuneTrainer if hasattr(model, "rf_peft") else Trainer
    trainer = kind(model, objective, combiner, opt, loader, schedule, device=device,
                   net=maybe_compile(model, device, cfg.compile_mode) if cfg.compile else model, ema=ema,
                   bf16=cfg.bf16,
                   channels_last=cfg.channels_last)
    if hasattr(model, "rf_pretrained_report"):
        _write_pretrained_report(cfg, model)
    return trainer


def _write_pretrained_report(cfg: TrainConfig, model) -> None:
    """OUT/pretrained.json: what the weights file gave (keys loaded, head, normaliser, notes) and
    what trains, so a run folder says what it started from."""
    if cfg.out is None or not Path(cfg.out).is_dir():
        return
    report = {**model.rf_pretrained_report, "finetune": dict(model.rf_peft), **parameter_counts(model)}
    ckpt.write_json_atomic(Path(cfg.out) / "pretrained.json", report)


__all__ = ["FineTuneTrainer", "Trainer", "build_model", "build_optimizer", "build_trainer", "channel_stats",
           "training_threat"]

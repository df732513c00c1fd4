"""The training loop: the epoch loop a reader holds in their head.

The step itself is `Trainer.step` (train/trainer.py); what is written, and when, is `RunLog`
(train/runlog.py). Nothing reads device values back to the host inside a step; the `sync`
comments mark the reads, once per epoch.
"""
from __future__ import annotations

import sys
import time
from contextlib import ExitStack

import torch

from ..attacks import create_attack
from ..data import load_dataset, subset_indices
from ..device import precision_flags, set_tf32
from ..eval.metrics import accuracy
from ..models import eval_mode
from . import distributed
from .config import TrainConfig
from .runlog import RunLog
from .build import build_trainer, training_threat


def train(cfg: TrainConfig, *, resume: bool = False, stop_after: int | None = None, force: bool = False) -> dict:
    """Train as `cfg` says; returns the last epoch's metrics.

    resume: continue from OUT/checkpoints/last.pt exactly where it stopped (the config must match).
    stop_after: leave after this many epochs in this call (the run stays resumable).
    force: overwrite a run already in OUT (without it, that is an error).
    Under torchrun (WORLD_SIZE > 1) every rank runs this; they train one model data-parallel, rank 0
    writes the run (train/distributed.py).
    """
    with distributed.session(cfg.device) as (dist, device), ExitStack() as stack:
        dist.same_config(cfg.to_dict())   # collective, before anything else: one config on every rank
        # a refusal on one rank (e.g. rank 0's RunLog) is raised on every rank, none waits in a collective
        log, trainer, check = dist.agree(lambda: _setup(cfg, stack, dist, device, resume, force))
        trainer.distribute(dist, seed=cfg.seed, sync_bn=cfg.sync_bn)   # collective: rank 0's weights to all
        start, best = dist.agree(lambda: log.restore(trainer, device) if resume else (0, -1.0))
        if not resume:
            log.start()
        metrics: dict = log.history[-1] if log.history else {}   # a finished run: its last epoch
        stale = _last_score(log.history)   # select_stale: the score of the last check (0 before any)
        if start >= cfg.epochs and dist.main:
            print(f"robustfront: {cfg.out} has finished all {cfg.epochs} epochs; nothing to train (raise --epochs "
                  f"to continue it)", file=sys.stderr)
        for epoch in range(start, cfg.epochs):
            if stop_after is not None and epoch - start >= stop_after:
                break
            t0 = time.perf_counter()
            trainer.on_epoch(epoch)
            for i, (x, y) in enumerate(log.progress(trainer.loader, epoch)):
                _, losses, _ = trainer.step(x, y)
                if cfg.log_every and (i + 1) % cfg.log_every == 0:
                    log.step(epoch, i + 1, losses, trainer.combiner)
            metrics = {"epoch": epoch + 1, **trainer.pop_epoch(), **log.diagnostics(trainer.combiner)}  # sync
            skipped = metrics["nonfinite_steps"]
            if skipped > cfg.max_nonfinite or 2 * skipped >= len(trainer.loader):
                raise ValueError(f"training diverged: {skipped} of {len(trainer.loader)} steps of "
                                 f"epoch {epoch + 1} had a non-finite gradient or update and were skipped; nothing "
                                 f"was saved for this epoch; allowed: a smaller lr (now {cfg.lr}), or a larger "
                                 f"max_nonfinite")
            metrics["epoch_time_s"] = time.perf_counter() - t0
            metrics["precision"] = {"bf16": cfg.bf16, **precision_flags()}   # recorded, as evaluation does
            due = (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs
            if due and check is not None:      # rank 0 only
                metrics.update(check(trainer.scored))
            score = metrics.get("val_pgd_acc", metrics.get("val_clean_acc", 0.0))
            if cfg.select_stale:   # CA-AT's train-wa.py: `if test_adv_acc >= old_score` on every epoch
                stale = score = score if due else stale
                is_best = cfg.select_on == "last" or score >= best
            else:
                is_best = cfg.select_on == "last" or (due and score > best)
            best = score if is_best else best
            state = trainer.state_dict()       # every rank (gathers the ranks' RNG states), after the check
            log.commit({**state, "epoch": epoch + 1, "best_val_robust": best, "config": cfg.to_dict(),
                        "metrics": metrics}, metrics, is_best)   # writes on rank 0 only
        dist.barrier()                         # no rank returns before rank 0 has written the run
    return metrics


def _last_score(history: list) -> float:
    """The score of the last held-out check in a resumed run's history (0.0 before any check)."""
    for m in reversed(history or []):
        if "val_pgd_acc" in m or "val_clean_acc" in m:
            return m.get("val_pgd_acc", m.get("val_clean_acc", 0.0))
    return 0.0


def _setup(cfg: TrainConfig, stack: ExitStack, dist, device, resume: bool, force: bool):
    """The run folder, data, Trainer and held-out check (rank 0's); no collective in here (see agree)."""
    log = stack.enter_context(RunLog(cfg, resume=resume, force=force, rank=dist.rank))
    set_tf32(cfg.tf32)
    torch.manual_seed(cfg.seed)
    ds = load_dataset(cfg.data, root=cfg.data_root, download=cfg.download, val_size=cfg.val_size,
                      resize=cfg.resize, seed=cfg.seed)
    keep = subset_indices(len(ds.y_train), cfg.train_n, cfg.seed)
    ds.x_train, ds.y_train = ds.x_train[keep], ds.y_train[keep]
    trainer = build_trainer(cfg, ds, device)
    check = HeldOut(cfg, ds, device) if dist.main else None
    return log, trainer, check


class HeldOut:
    """Clean and PGD-k accuracy on the held-out split of the training set (eval mode, fp32), or on the
    test set with select_on="test" (the references' rule, for reproducing their numbers)."""

    def __init__(self, cfg: TrainConfig, ds, device):
        split = self.split = "test" if cfg.select_on == "test" else "val"
        n = len(ds.arrays(split)[1])
        # the split keeps file order (often by class): a seeded subset, the same every epoch
        self.x, self.y = ds.tensors(split, device, n=cfg.eval_n, seed=0) if n else (None, None)
        threat = training_threat(cfg, ds.bounds).with_(steps=cfg.eval_steps)
        self.attack = create_attack("pgd", threat) if cfg.eps > 0 else None

    def __call__(self, model) -> dict:
        if self.y is None or len(self.y) == 0:
            return {}
        with eval_mode(model):
            res = {"val_split": self.split, "val_clean_acc": accuracy(model, self.x, self.y)}
            if self.attack is not None:
                res["val_pgd_acc"] = accuracy(model, self.x, self.y, attack=self.attack)
        return res


__all__ = ["HeldOut", "train"]

"""Everything a run writes, and the rules that keep it whole.

A run folder holds config.yaml, metrics.jsonl (one line per epoch), steps.jsonl (with log_every),
checkpoints/{last,best}.pt and optionally tensorboard/ and a Weights & Biases run (wandb.json names it,
tracking.py). `RunLog`:

- locks the folder while it is written (a second writer is refused, naming the holder's PID);
- refuses to overwrite an existing run unless `force`, and on `resume` refuses a config that differs
  from the checkpoint's (with state.StateFolder's one message) except in RESUME_SAFE keys (epochs,
  logging), which are recorded in config_history.jsonl; config.yaml is only rewritten once the new
  config is known to be acceptable;
- commits an epoch as one unit: the checkpoint, which carries the whole metrics history, is written
  atomically first, then the metrics line is appended; a resume rebuilds metrics.jsonl from the
  checkpoint, so a kill between the two loses nothing and duplicates nothing;
- never saves non-finite weights, and removes temporary files an interrupted save left behind.

Data parallel (torchrun), `rank` > 0: the RunLog of a rank that does not write. It reads last.pt for
a resume (the run folder must be visible to every rank: a shared file system across nodes) and
writes nothing, takes no lock, shows no progress; rank 0 does all of that.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import torch
import yaml

from .. import checkpoint as ckpt
from ..state import FolderLock, StateFolder
from .config import RESUME_SAFE, TrainConfig


class RunLog:
    def __init__(self, cfg: TrainConfig, *, resume: bool = False, force: bool = False, rank: int = 0):
        if cfg.out is None:
            raise ValueError("out=None: name an output folder for the run (--out DIR)")
        self.cfg, self.resume, self.force = cfg, resume, force
        self.writes = rank == 0
        self.out = Path(cfg.out)
        self.ckdir = self.out / "checkpoints"
        self.last, self.best = self.ckdir / "last.pt", self.ckdir / "best.pt"
        self.history: list[dict] = []
        self.steps: list[dict] = []
        self._lock = None
        self._writer = None
        self._wandb = None
        self._pending = None          # a resume's safe config changes, recorded with its first epoch
        self._config_written = False

    # -- opening and closing -----------------------------------------------------------------
    def __enter__(self) -> "RunLog":
        if not self.writes:
            if self.resume and not self.last.is_file():
                raise ValueError(f"resume=True but {self.last} is not visible on this rank; allowed: an --out "
                                 f"folder every rank can read (a shared file system)")
            return self
        ckpt.check_out_dir(self.out)
        if self.cfg.tensorboard:
            self._tensorboard_writer_class()  # fail before any work, not after the first epoch
        if self.cfg.wandb:
            from ..tracking import import_wandb
            import_wandb(self.cfg.wandb)
        self._lock = FolderLock(self.out).__enter__()
        try:
            self._open()
            if self.cfg.wandb:  # started before any work: a W&B failure (not logged in) costs no epoch
                from ..tracking import WandbRun
                self._wandb = WandbRun(self.cfg.wandb, self.out, config=self.cfg.to_dict(), group=self.cfg.wandb_group)
        except BaseException:
            self.__exit__(None, None, None)  # a refused run leaves no lock behind
            raise
        return self

    def _open(self) -> None:
        ckpt.clean_temp_files(self.ckdir)
        if self.resume and not self.last.is_file():
            raise ValueError(f"resume=True but {self.last} does not exist; start the run without --resume")
        if not self.resume and self.last.is_file():
            if not self.force:
                raise ValueError(f"out={str(self.out)!r} already holds a run ({self._progress_note()}); allowed: "
                                 f"--resume to continue it, --force to overwrite it, or another --out")
            for p in (self.last, self.best, self.out / "metrics.jsonl", self.out / "steps.jsonl",
                      self.out / "config_history.jsonl"):
                p.unlink(missing_ok=True)

    def __exit__(self, *exc) -> None:
        if self._writer:
            self._writer.close()
        if self._wandb is not None:
            self._wandb.finish()
            self._wandb = None
        if self._lock is not None:
            self._lock.__exit__(*exc)
            self._lock = None

    def _progress_note(self) -> str:
        try:
            state = ckpt.load(self.last)
            done, total = int(state.get("epoch", 0)), int((state.get("config") or {}).get("epochs", 0))
            return f"{done} of {total} epochs done" + (", finished" if done >= total else "")
        except (ValueError, OSError):
            return "its last.pt cannot be read"

    # -- starting or resuming ------------------------------------------------------------------
    def start(self) -> None:
        if not self.writes:
            return
        (self.out / "metrics.jsonl").write_text("")
        if self.cfg.log_every:
            (self.out / "steps.jsonl").write_text("")
        self._write_config(self.cfg)

    def restore(self, trainer, device) -> tuple[int, float]:
        """Load last.pt into the trainer after checking the config; returns (next epoch, best score)."""
        state = ckpt.load(self.last, device)
        stored = TrainConfig.from_dict(state["config"])
        # the settings the checkpoint was trained with, compared as every state folder compares them
        StateFolder(self.out, "config.yaml", kind="run folder", allowed=(
            f"to resume, the run's own values (see {self.out / 'config.yaml'}) with changes to "
            f"{', '.join(RESUME_SAFE)} only; or a new --out")).open(
            self.cfg.to_dict(), unchecked=RESUME_SAFE, recorded=stored.to_dict())
        try:
            trainer.load_state_dict(state)
        except (RuntimeError, KeyError) as e:
            raise ValueError(f"{self.last} does not fit this run's model or optimizer "
                             f"({str(e).splitlines()[0][:120]}); allowed: resume with the run's own config") from None
        start = int(state["epoch"])
        self.history = [m for m in state.get("history", []) if m["epoch"] <= start]
        if not self.writes:
            return start, float(state["best_val_robust"])
        if self.history or "history" in state:
            ckpt.write_text_atomic(self.out / "metrics.jsonl", "".join(json.dumps(m) + "\n" for m in self.history))
        else:  # a checkpoint written before histories were kept
            _truncate_jsonl(self.out / "metrics.jsonl", start)
        self._restore_steps(state, start)
        safe = {k: list(v) for k, v in stored.changed(self.cfg).items() if k != "out"}
        # recorded once the resumed run commits its first epoch: a resume that fails changes nothing
        self._pending = {"resumed_at_epoch": start, "changed": safe} if safe else None
        return start, float(state["best_val_robust"])

    def _restore_steps(self, state: dict, start: int) -> None:
        path = self.out / "steps.jsonl"
        _truncate_jsonl(path, start)
        have = {r["epoch"] for r in ckpt.read_jsonl(path)}
        missing = [r for r in state.get("steps", []) if r["epoch"] not in have]
        if missing:
            with open(path, "a") as f:
                f.writelines(json.dumps(r) + "\n" for r in missing)

    def _write_config(self, cfg: TrainConfig) -> None:
        ckpt.write_text_atomic(self.out / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))

    # -- during the run ----------------------------------------------------------------------
    def progress(self, loader, epoch: int):
        if not self.cfg.progress or not self.writes:
            return loader
        from tqdm import tqdm
        return tqdm(loader, desc=f"epoch {epoch + 1}/{self.cfg.epochs}", leave=False, dynamic_ncols=True,
                    file=sys.stderr)

    def step(self, epoch: int, step: int, losses: dict, combiner) -> None:
        """A step record (log_every > 0): the losses and the combiner's diagnostics. Host sync: opted in."""
        if not self.writes:
            combiner.pop_diagnostics()
            return
        self.steps.append({"epoch": epoch + 1, "step": step, **{f"loss_{k}": v.item() for k, v in losses.items()},
                           **combiner.pop_diagnostics()})

    def diagnostics(self, combiner) -> dict:
        """The epoch's combiner diagnostics: the mean over its step records and what is left to pop."""
        recs = [{k: v for k, v in r.items() if k not in ("epoch", "step") and not k.startswith("loss_")}
                for r in self.steps] + [combiner.pop_diagnostics()]
        return _mean_dicts(recs)

    def commit(self, state: dict, metrics: dict, is_best: bool) -> None:
        """Checkpoint(s) first (atomic, carrying the metrics history), then the metrics line."""
        if not self.writes:
            return
        bad = [k for k, v in state["model"].items() if v.is_floating_point() and not torch.isfinite(v).all()]
        if bad:
            raise ValueError(f"epoch {metrics['epoch']}: weights {bad[0]} are non-finite; nothing was saved "
                             f"(the last good checkpoint is {self.last}); allowed: a smaller lr")
        if self._pending is not None:
            with open(self.out / "config_history.jsonl", "a") as f:
                f.write(json.dumps(self._pending) + "\n")
            self._pending = None
        if self.resume and not self._config_written:
            self._write_config(self.cfg)
        self._config_written = True
        self.history.append(metrics)
        state = {**state, "history": self.history, "steps": self.steps}
        if is_best:
            ckpt.save_atomic(state, self.best)
        ckpt.save_atomic(state, self.last)
        with open(self.out / "metrics.jsonl", "a") as f:
            f.write(json.dumps(metrics) + "\n")
        if self.steps:
            with open(self.out / "steps.jsonl", "a") as f:
                f.writelines(json.dumps(r) + "\n" for r in self.steps)
        self.steps = []
        self._tensorboard(metrics)
        if self._wandb is not None:  # a copy of the metrics line (with the combiner's diagnostics); JSONL stays the record
            self._wandb.log(metrics, step=metrics["epoch"])
        if self.cfg.progress:
            print(_summary(metrics), file=sys.stderr, flush=True)

    def _tensorboard(self, metrics: dict) -> None:
        if not self.cfg.tensorboard:
            return
        if self._writer is None:
            self._writer = self._tensorboard_writer_class()(str(self.out / "tensorboard"))
        for k, v in metrics.items():
            if isinstance(v, (int, float)) and math.isfinite(v):
                self._writer.add_scalar(k, v, metrics["epoch"])


    @staticmethod
    def _tensorboard_writer_class():
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ValueError("tensorboard=True needs the tensorboard package; allowed: pip install tensorboard, "
                             "or --no-tensorboard") from None
        return SummaryWriter


def _mean_dicts(dicts: list[dict]) -> dict:
    """Average diagnostics over the step records of an epoch (lists element-wise)."""
    dicts = [d for d in dicts if d]
    out = {}
    for k in dicts[0] if dicts else []:
        vals = [d[k] for d in dicts if k in d]
        out[k] = [sum(c) / len(c) for c in zip(*vals)] if isinstance(vals[0], list) else sum(vals) / len(vals)
    return out


def _truncate_jsonl(path: Path, epochs: int) -> None:
    """On resume, drop records written after the checkpoint we continue from (and any cut-off line)."""
    if path.is_file():
        ckpt.write_text_atomic(path, "".join(json.dumps(r) + "\n" for r in ckpt.read_jsonl(path) if r["epoch"] <= epochs))


def _summary(m: dict) -> str:
    keys = ("train_loss", "train_clean_acc", "train_adv_acc", "val_clean_acc", "val_pgd_acc")
    parts = [f"{k}={m[k]:.4f}" for k in keys if k in m]
    return f"epoch {m['epoch']}: " + " ".join(parts) + f" ({m['epoch_time_s']:.1f}s)"


__all__ = ["RunLog"]

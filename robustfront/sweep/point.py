"""One point's folder: what it is (point.json), how far it got (status.json, checkpoints, eval.json),
and `run_point`, the body every executor runs (train, resuming from last.pt, then evaluate).

    POINT/point.json     name, varied values, the whole run config and its hash, the eval protocol and its hash
    POINT/config.yaml, metrics.jsonl, checkpoints/{last,best}.pt     written by robustfront.train.train
    POINT/eval.json      the evaluation, stamped with both hashes
    POINT/status.json    running | done | failed | interrupted, the error's last line, timings, attempts
    POINT/.point.lock    held (flock) by the process working on the point, released when it dies (.lock is
                         the run's own, held by train while it writes)

A folder whose config hash differs from the sweep's is never reused: `check_folder` refuses it with
state.StateFolder's one line naming the differing keys, or moves it to OUT/_stale/ when asked.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import time
import traceback
from pathlib import Path

from ..checkpoint import read_jsonl, write_json_atomic
from ..state import FolderLock, StateFolder, flat
from .names import short_hash

# execution details that do not change what is computed (recorded in the run, left out of the hash)
CONFIG_EXCLUDE = ("out", "device", "progress", "tensorboard", "wandb", "wandb_group")
EVAL_EXCLUDE = ("batch_size",)
STALE = "_stale"
POINT_LOCK = ".point.lock"   # not the run folder's .lock, which RunLog takes inside the same process


def config_hash(cfg: dict) -> str:
    return short_hash({k: v for k, v in cfg.items() if k not in CONFIG_EXCLUDE})


def eval_hash(ev: dict) -> str:
    return short_hash({k: v for k, v in ev.items() if k not in EVAL_EXCLUDE})


def point_record(point, eval_spec: dict) -> dict:
    """The content of point.json for a `spec.Point`."""
    return {"name": point.name, "varied": point.varied, "config": point.config, "config_hash": config_hash(point.config),
            "eval": eval_spec, "eval_hash": eval_hash(eval_spec)}


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def has_results(folder: Path) -> bool:
    """Has anything been computed in this point folder (training started, or an evaluation)?"""
    return any((Path(folder) / f).exists() for f in ("config.yaml", "metrics.jsonl", "checkpoints", "eval.json"))


def _settings(record: dict, part: str) -> dict:
    """The settings `part` ("config" or "eval") of a point record as compared: dotted keys, execution
    details left out; eval keys named eval.KEY."""
    exclude, prefix = (CONFIG_EXCLUDE, "") if part == "config" else (EVAL_EXCLUDE, "eval.")
    return flat({k: v for k, v in record.get(part, {}).items() if k not in exclude}, prefix)


def _refusal(folder: Path, old: dict, record: dict, part: str, allowed: str) -> str:
    """StateFolder's one line naming what differs in `part` (the hash alone if no key does)."""
    st = StateFolder(folder, "point.json", kind="point folder", allowed=allowed)
    hashes = {f"{part}_hash": old.get(f"{part}_hash")}, {f"{part}_hash": record[f"{part}_hash"]}
    return (st.mismatch(_settings(record, part), recorded=_settings(old, part))
            or st.mismatch(hashes[1], recorded=hashes[0]))


def conflict(folder: Path, record: dict) -> tuple[str, str] | None:
    """Why `folder` cannot simply be used for `record`: ("foreign" | "config" | "eval", one-line message), or None.

    A folder holding only an old point.json (nothing trained yet) is simply claimed for the new config."""
    folder = Path(folder)
    old = read_json(folder / "point.json") if folder.is_dir() else None
    if folder.is_dir() and old is None and any(folder.iterdir()):
        return "foreign", (f"point folder {folder} exists but holds no readable point.json (not a point of this "
                           f"sweep); allowed: an empty or absent folder (move it away)")
    if old is None:
        return None
    if old.get("config_hash") != record["config_hash"] and has_results(folder):
        return "config", _refusal(folder, old, record, "config", (
            f"the same sweep config, another --out, or move_stale=True (--move-stale) to move the old folder "
            f"to {STALE}/"))
    if old.get("eval_hash") != record["eval_hash"] and (folder / "eval.json").is_file():
        return "eval", _refusal(folder, old, record, "eval", (
            f"the same eval block, or move_stale=True (--move-stale) to move its eval.json to {STALE}/ and "
            f"re-evaluate"))
    return None


def check_folder(folder: Path, record: dict, *, move_stale: bool = False) -> str:
    """Claim a point folder or check it belongs to `record`: 'new' or 'existing'.

    A config hash that differs raises `conflict`'s ValueError line naming the differing keys (or,
    with move_stale, moves the folder to OUT/_stale/NAME.HASH and starts afresh); an eval protocol
    that differs does the same for eval.json only (the training is still valid).
    """
    folder = Path(folder)
    stale = folder.parent.parent / STALE
    c = conflict(folder, record)
    if c is not None:
        kind, message = c
        if kind == "foreign" or not move_stale:
            raise ValueError(message)
        old = read_json(folder / "point.json") or {}
        stale.mkdir(parents=True, exist_ok=True)
        if kind == "config":
            shutil.move(str(folder), str(stale / f"{folder.name}.{old.get('config_hash', 'unknown')[:8]}"))
        else:
            shutil.move(str(folder / "eval.json"),
                        str(stale / f"{folder.name}.eval.{old.get('eval_hash', 'unknown')[:8]}.json"))
    old = read_json(folder / "point.json")
    if old is None:
        write_json_atomic(folder / "point.json", record)
        return "new"
    if old != record:  # same hashes, other execution details (device, ...), or a new eval block: these apply
        write_json_atomic(folder / "point.json", record)
    return "existing"


def is_done(folder: Path, record: dict) -> bool:
    """Finished: eval.json is there, readable, and stamped with this point's config and eval hashes."""
    ev = read_json(Path(folder) / "eval.json")
    return bool(ev) and ev.get("config_hash") == record["config_hash"] and ev.get("eval_hash") == record["eval_hash"]


def point_lock(folder: Path) -> FolderLock:
    """The lock of the process working on a point (released when it ends or dies, SIGKILL included)."""
    return FolderLock(folder, POINT_LOCK, what="point folder",
                      how="one process per point (it is being worked on; wait for it, or stop that process)")


def is_busy(folder: Path) -> bool:
    """Is a process (here or on another node sharing the folder) working on this point now?"""
    return point_lock(Path(folder)).held_elsewhere()


def error_line(e: BaseException) -> str:
    """The exception's last line, 'Type: message', for status files and the progress view."""
    lines = [ln.strip() for ln in traceback.format_exception_only(type(e), e)[-1].splitlines() if ln.strip()]
    return lines[-1] if lines else type(e).__name__


def epochs_done(folder: Path) -> int:
    return len(read_jsonl(Path(folder) / "metrics.jsonl"))


def _update_status(folder: Path, **kw) -> dict:
    st = read_json(folder / "status.json") or {}
    st.update(kw)
    write_json_atomic(folder / "status.json", st)
    return st


def run_point(folder: str | Path, *, threads: int | None = None, device: str | None = None, log=None) -> str:
    """Train the point (resuming from checkpoints/last.pt when there is one) and evaluate it.

    Returns 'done', or 'busy' when another process holds the point's lock. An error is recorded in
    status.json (its last line) and the traceback in error.txt, then re-raised; an interruption
    that Python sees (Ctrl-C, the SystemExit of a submitit requeue) is recorded as 'interrupted'; a
    process killed outright leaves 'running' behind, which the next sweep treats the same way.
    """
    import torch
    folder = Path(folder)
    if threads:
        torch.set_num_threads(threads)
    lock = point_lock(folder)
    if not lock.acquire():
        return "busy"
    with lock:
        rec = read_json(folder / "point.json")
        if rec is None:
            raise ValueError(f"point folder {folder} holds no readable point.json; allowed: a folder made by run_sweep")
        if is_done(folder, rec):
            return "done"
        prev = read_json(folder / "status.json") or {}
        attempt = int(prev.get("attempt", 0)) + 1
        t0 = time.time()
        resume = (folder / "checkpoints" / "last.pt").is_file()
        (folder / "error.txt").unlink(missing_ok=True)  # a previous attempt's; log.txt keeps every attempt
        _update_status(folder, status="running", attempt=attempt, started=t0, finished=None, error=None,
                       pid=os.getpid(), host=socket.gethostname(), threads=torch.get_num_threads(),
                       cuda_visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES"),
                       resumed_from_epoch=epochs_done(folder) if resume else None)
        try:
            from ..train import TrainConfig, train
            cfg = dict(rec["config"], out=str(folder), progress=False, **({"device": device} if device else {}))
            if cfg.get("wandb") and not cfg.get("wandb_group"):  # one W&B run per point, grouped by the sweep
                cfg["wandb_group"] = folder.resolve().parent.parent.name
            train(TrainConfig.from_dict(cfg), resume=resume)
            t1 = time.time()
            from .evaluate import evaluate_point
            res = evaluate_point(folder, rec["eval"], device=cfg.get("device", "auto"), log=log)
            res.update(config_hash=rec["config_hash"], eval_hash=rec["eval_hash"], point=rec["name"])
            write_json_atomic(folder / "eval.json", res)
            if cfg.get("wandb"):
                from ..tracking import WandbRun
                run = WandbRun(cfg["wandb"], folder, group=cfg["wandb_group"])
                run.summary(res)
                run.finish()
            _update_status(folder, status="done", finished=time.time(), train_wall_s=t1 - t0,
                           eval_wall_s=time.time() - t1)
            return "done"
        except Exception as e:
            (folder / "error.txt").write_text(traceback.format_exc())
            _update_status(folder, status="failed", finished=time.time(), error=error_line(e))
            raise
        except BaseException as e:  # KeyboardInterrupt, SystemExit: resumable, not a failure
            _update_status(folder, status="interrupted", finished=time.time(), error=error_line(e))
            raise


__all__ = [
    "check_folder",
    "config_hash",
    "conflict",
    "epochs_done",
    "error_line",
    "eval_hash",
    "is_busy",
    "is_done",
    "point_lock",
    "point_record",
    "read_json",
    "run_point",
]

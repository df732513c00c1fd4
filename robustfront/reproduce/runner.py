"""`reproduce`: train every selected entry through the sweep, evaluate each checkpoint under both
protocols (protocols.evaluate_protocol), write the side-by-side report.

    OUT/runs/ENTRY_ID/         one sweep folder per entry (points/NAME/ = a run folder; resumable)
    OUT/runs/ENTRY_ID/points/NAME/reproduce/{paper,standard}.json   the two evaluations of its checkpoint
    OUT/reproduce.json, OUT/reproduce.md                            the report (report.py)

Re-running skips finished points and evaluations (an evaluation file records its protocol and
scale; one made under another is redone). The sweep's own evaluation is a one-step PGD smoke check
(its completion marker); every reported number comes from the two protocols.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from ..checkpoint import write_json_atomic
from .protocols import STANDARD, evaluate_protocol

SMOKE_EVAL = {"attacks": ["pgd1"], "n": 100, "seed": 0, "split": "test"}   # one step: any norm
TINY = {"data": "digits", "data_root": None, "resize": None, "model": "small_cnn", "model_args": {"width": 4},
        "pretrained": None, "input_mean": None, "input_std": None, "epochs": 1, "batch_size": 32, "train_n": 64,
        "attack_steps": 1, "eval_steps": 1, "eval_every": 1, "eval_n": 16, "milestones": [0.5], "crop": 0,
        "flip": False, "cutout": 0, "rrc": None, "bf16": False, "compile": False, "channels_last": False,
        "device": "cpu", "ema_start": 0, "tf32": None}
TINY_VIT = {"model": "vit_tiny_patch4_32", "model_args": {"embed_dim": 16, "depth": 1, "num_heads": 2}}
TINY_N = 16


def tiny_config(cfg: dict) -> dict:
    """The entry's recipe at CPU-smoke scale: digits, a tiny model, one epoch, one attack step; the
    method, its options, the schedule's kind and the selection rule stay the entry's own."""
    out = {**cfg, **TINY}
    if cfg.get("finetune") in ("adapter", "lora"):   # the PEFT entries: a tiny ViT keeps the adapters real
        out.update(TINY_VIT)
    if cfg.get("val_size"):
        out["val_size"] = None                       # digits' default held-out split (10 %)
    opts = dict(cfg.get("opts") or {})
    for k in ("start_epoch", "combiner.start_epoch"):   # AGR's branches start within the one epoch
        if k in opts:
            opts[k] = 0
    out["opts"] = opts
    return out


def entry_sweep(entry, *, seeds: int, tiny: bool) -> dict:
    """The sweep mapping that trains ENTRY: its recipe, its seeds, its figure grid."""
    base = tiny_config(entry.config) if tiny else dict(entry.config)
    base.pop("out", None)
    spec = {"name": entry.id, "base": base, "seeds": list(range(seeds)),
            "eval": {**SMOKE_EVAL, **({"n": TINY_N} if tiny else {})}}
    if entry.grid:
        spec["grid"] = dict(entry.grid)
    return spec


def _eval_file(point: Path, protocol: dict, n, tiny: bool, log) -> dict:
    path = point / "reproduce" / f"{'paper' if protocol['name'] != 'standard' else 'standard'}.json"
    stamp = {"protocol": protocol, "n": n, "tiny": tiny}
    try:
        old = json.loads(path.read_text())
        if old.get("stamp") == json.loads(json.dumps(stamp)):
            return old
    except (OSError, ValueError):
        pass
    res = evaluate_protocol(point / "checkpoints" / "best.pt", protocol, n=n, tiny=tiny,
                            device="cpu" if tiny else "auto", log=log)
    res["stamp"] = stamp
    write_json_atomic(path, res)
    return json.loads(path.read_text())


PROTOCOLS = ("paper", "standard")


def reproduce(entries, out, *, seeds: int | None = None, tiny: bool = False, eval_n: int | None = None,
              jobs: int | None = None, executor: str = "local", slurm: dict | None = None,
              protocols=PROTOCOLS, log=None) -> dict:
    """Train and evaluate ENTRIES (train status only) under OUT; returns the report mapping.

    protocols: which of "paper" (a) and "standard" (b) to evaluate (both by default; an empty tuple
    trains only, and the report shows "not run" for what was not evaluated). tiny: one thread per
    process (tensors this small only contend for cores)."""
    from ..sweep import run_sweep
    from ..sweep.point import is_done, read_json
    from .report import write_report
    log = log or (lambda m: print(m, file=sys.stderr, flush=True))
    for p in protocols:
        if p not in PROTOCOLS:
            raise ValueError(f"protocol {p!r} is unknown; allowed: {', '.join(PROTOCOLS)}")
    if tiny:
        import torch
        torch.set_num_threads(1)
    out = Path(out)
    n = TINY_N if tiny else eval_n
    results, failed = {}, {}
    for e in entries:
        if e.status != "train":
            continue
        folder = out / "runs" / e.id
        summary = run_sweep(entry_sweep(e, seeds=seeds or e.seeds, tiny=tiny), folder, jobs=jobs, executor=executor,
                  slurm=slurm, log=log, **({"gpus": [], "threads": 1} if tiny else {}))
        rows = []
        for p in sorted((folder / "points").iterdir()):
            rec = read_json(p / "point.json")
            if rec is None or not is_done(p, rec):
                continue
            proto = {"paper": e.protocol, "standard": STANDARD}
            rows.append({"point": p.name, "varied": rec["varied"],
                         **{k: _eval_file(p, proto[k], n, tiny, log) for k in protocols}})
        results[e.id] = rows
        failed[e.id] = [f"{p['name']}: {p['error']}" for p in summary["points"] if p["status"] == "failed"]
    return write_report(entries, results, out, tiny=tiny, eval_n=n, failed=failed)


__all__ = ["PROTOCOLS", "SMOKE_EVAL", "TINY", "entry_sweep", "reproduce", "tiny_config"]

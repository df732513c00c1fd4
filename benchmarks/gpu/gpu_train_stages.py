"""The GPU run's training stages: one real epoch, a short schedule with its evaluation, AutoAttack.

All three train with `robustfront.train.train` (the real loop: RunLog, checkpoints, the held-out
check) on the full training split held on the device (augmented there), and evaluate with
`robustfront.eval.evaluate` (exact fp32: TF32 off) on a seeded subset of the test split.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch


def _log(msg: str) -> None:
    print(f"[gpu-run] {msg}", file=sys.stderr, flush=True)


def _config(p: dict, method: str, epochs: int, out: Path):
    from robustfront.train import TrainConfig
    return TrainConfig(data=p["data"], model=p["model"], model_args=dict(p["model_args"]), method=method,
                       epochs=epochs, batch_size=p["batch_size"], lr=p["lr"], schedule="onecycle",
                       attack_steps=p["attack_steps"], bf16=p["bf16"], channels_last=p["channels_last"],
                       compile=p.get("compile", False), compile_mode=p.get("compile_mode"), device=p["device"],
                       eval_every=epochs, select_on="last", progress=False, seed=p.get("seed", 0), out=str(out))


def _train(p: dict, method: str, epochs: int, out: Path) -> dict:
    from robustfront.device import precision_flags
    from robustfront.train import train
    cfg = _config(p, method, epochs, out)
    _log(f"train {method}: {epochs} epoch(s), batch {cfg.batch_size}, lr {cfg.lr}, bf16={cfg.bf16}, "
         f"channels_last={cfg.channels_last} -> {out}")
    t0 = time.perf_counter()
    last = train(cfg, force=True)
    wall = time.perf_counter() - t0
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    times = [m["epoch_time_s"] for m in history]
    n = last.get("n_train", 0)
    return {"method": method, "config": cfg.to_dict(), "epochs": epochs, "n_train": n,
            "steps_per_epoch": -(-n // cfg.batch_size), "epoch_time_s": times,
            "images_per_s": [n / t for t in times], "train_wall_s": wall, "last_metrics": last,
            "precision_flags_after": precision_flags(), "checkpoint": str(out / "checkpoints" / "last.pt")}


def stage_epoch(p: dict) -> dict:
    """One epoch of PGD-AT over the whole training split; its time (the first epoch of a run: it
    includes the first steps' cuDNN and allocator warm-up)."""
    return _train(p, "pgd_at", 1, Path(p["runs"]) / "epoch_pgd_at")


def _evaluate(p: dict, checkpoint: str, attacks: list[str], n: int) -> dict:
    from robustfront.eval import auto_batch_size, evaluate, load_for_eval
    inp = load_for_eval(checkpoint, split="test", n=n, seed=0, device=p["device"])
    bs = auto_batch_size(inp.model, inp.x)
    res = evaluate(inp.model, inp.x, inp.y, attacks, eps=8 / 255, norm="Linf", seed=0, batch_size=bs,
                   data=inp.data, split="test", log=_log)
    return {k: res[k] for k in ("clean_acc", "robust_acc", "worst_case_acc", "time_s", "n", "eps", "batch_size",
                                "precision", "autoattack_log", "autoattack_warnings", "autoattack_skipped")}


def stage_schedule(p: dict) -> dict:
    """`epochs` epochs of one-cycle training of p["method"], then clean and PGD-20 accuracy on
    p["eval_n"] test images (exact fp32)."""
    out = Path(p["runs"]) / f"schedule_{p['method']}"
    res = _train(p, p["method"], p["epochs"], out)
    t0 = time.perf_counter()
    res["eval"] = _evaluate(p, res["checkpoint"], ["pgd20"], p["eval_n"])
    res["eval"]["wall_s"] = time.perf_counter() - t0
    return res


def stage_autoattack(p: dict) -> dict:
    """AutoAttack (standard, the official code) on p["n"] test images of each schedule's checkpoint."""
    import importlib.util
    if importlib.util.find_spec("pyautoattack") is None:
        raise ValueError("pyautoattack is not installed: carry it along (benchmarks/gpu/prepare.sh, docs/gpu.md)")
    out = {}
    for method, checkpoint in p["checkpoints"].items():
        if not Path(checkpoint).is_file():
            out[method] = {"error": f"no checkpoint {checkpoint} (its schedule stage did not finish)"}
            continue
        t0 = time.perf_counter()
        out[method] = _evaluate(p, checkpoint, ["autoattack"], p["n"])
        out[method]["wall_s"] = time.perf_counter() - t0
        if p["device"].startswith("cuda"):
            torch.cuda.empty_cache()
    if not any("clean_acc" in r for r in out.values()):
        raise ValueError("no checkpoint to evaluate: " + "; ".join(r["error"] for r in out.values()))
    return {"n": p["n"], "results": out}


__all__ = ["stage_autoattack", "stage_epoch", "stage_schedule"]

"""Evaluate one point's best checkpoint under the sweep's protocol (through `eval.load_for_eval`, the
one loader every evaluation uses)."""
from __future__ import annotations

import time
from pathlib import Path

from ..validation import parse_number


def evaluate_point(run_dir: str | Path, eval_spec: dict, *, device: str = "auto", log=None) -> dict:
    """Clean, PGD and AutoAttack accuracy of RUN_DIR/checkpoints/best.pt on a fixed seeded subset.

    eval_spec: the sweep's `eval` block (see `spec.parse_eval`): attacks, eps (None: the run's training
    ε, kept in its spelling), norm (None: the run's), n (None: the whole split), seed (subset and
    attacks), split ("test", or "val": the run's held-out part of the training set), batch_size.
    `load_for_eval` rebuilds the data with the run's own settings (data root, resize, val size and its
    TRAINING seed), so that "val" is the split training held out. Returns `robustfront.eval.evaluate`'s
    dict plus provenance (checkpoint, its epoch, eps_str, method, train_seed, eval).
    """
    from ..checkpoint import load
    from ..eval import auto_batch_size, evaluate, load_for_eval

    run_dir = Path(run_dir)
    ck = run_dir / "checkpoints" / "best.pt"
    inp = load_for_eval(ck, split=eval_spec["split"], n=eval_spec.get("n"), seed=eval_spec["seed"], device=device)
    cfg = inp.config
    if not cfg:
        raise ValueError(f"checkpoint {ck} holds no training config; allowed: a checkpoint written by "
                         f"robustfront train")
    eps_str = eval_spec.get("eps")
    eps_str = cfg.get("eps", "8/255") if eps_str is None else eps_str
    eps = ([parse_number(e, "eval.eps") for e in eps_str] if isinstance(eps_str, list)
           else parse_number(eps_str, "eval.eps"))
    norm = eval_spec.get("norm") or cfg.get("norm", "Linf")
    bs = eval_spec.get("batch_size") or auto_batch_size(inp.model, inp.x)
    t0 = time.perf_counter()
    res = evaluate(inp.model, inp.x, inp.y, list(eval_spec["attacks"]), eps=eps, norm=norm, seed=eval_spec["seed"],
                   batch_size=bs, bounds=inp.dataset.bounds, log=log, data=inp.data, split=eval_spec["split"])
    state = load(ck)   # the epoch and selection score beside the weights (small files; read once more)
    res.update({"checkpoint": str(ck.relative_to(run_dir)), "checkpoint_epoch": state.get("epoch"),
                "best_val_robust": state.get("best_val_robust"), "data": inp.data, "split": eval_spec["split"],
                "eps_str": eps_str, "model": cfg.get("model"), "method": cfg.get("method"),
                "train_seed": cfg.get("seed"), "batch_size": bs, "device": str(inp.x.device),
                "eval": {k: eval_spec.get(k) for k in ("attacks", "eps", "norm", "n", "seed", "split")},
                "eval_time_s": time.perf_counter() - t0})
    return res


__all__ = ["evaluate_point"]

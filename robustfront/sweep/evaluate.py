"""Evaluate one point's best checkpoint under the sweep's protocol (through `eval.run`, the one
evaluation driver)."""
from __future__ import annotations

import time
from pathlib import Path

from .spec import EVAL_KEYS


def evaluate_point(run_dir: str | Path, eval_spec: dict, *, device: str = "auto", log=None) -> dict:
    """Clean, PGD and AutoAttack accuracy of RUN_DIR/checkpoints/best.pt on a fixed seeded subset.

    eval_spec: the sweep's `eval` block (see `spec.parse_eval`): attacks, eps (None: the run's training
    ε, kept in its spelling), norm (None: the run's), n (None: the whole split), seed (subset and
    attacks), split ("test", or "val": the run's held-out part of the training set), batch_size.
    `eval.run` rebuilds the data with the run's own settings (data root, resize, val size and its
    TRAINING seed), so that "val" is the split training held out; the point folder is the sweep's, so
    no evaluation state is kept in it. Returns the evaluation's dict plus provenance (checkpoint, its
    epoch, eps_str, method, train_seed, eval).
    """
    from ..checkpoint import load
    from ..device import resolve_device
    from ..eval import EvalConfig, run

    run_dir = Path(run_dir)
    ck = run_dir / "checkpoints" / "best.pt"
    state = load(ck)   # the config, epoch and selection score beside the weights
    cfg = state.get("config")
    if not cfg:
        raise ValueError(f"checkpoint {ck} holds no training config; allowed: a checkpoint written by "
                         f"robustfront train")
    request = EvalConfig(**{k: eval_spec.get(k) for k in EVAL_KEYS if eval_spec.get(k) is not None},
                         device=device, no_state=True)
    eps_str = eval_spec.get("eps")
    t0 = time.perf_counter()
    res = run(request, [ck], log=log).raw
    res.update({"checkpoint": str(ck.relative_to(run_dir)), "checkpoint_epoch": state.get("epoch"),
                "best_val_robust": state.get("best_val_robust"),
                "eps_str": cfg.get("eps", "8/255") if eps_str is None else eps_str, "device": str(resolve_device(device)),
                "eval": {k: eval_spec.get(k) for k in ("attacks", "eps", "norm", "n", "seed", "split")},
                "eval_time_s": time.perf_counter() - t0})
    return res


__all__ = ["evaluate_point"]

"""Evaluate one point's best checkpoint under the sweep's protocol (the one place that loads a point
for evaluation; it will switch to `robustfront.eval.load_for_eval` once that exists)."""
from __future__ import annotations

import time
from pathlib import Path

import yaml

from ..validation import parse_number


def evaluate_point(run_dir: str | Path, eval_spec: dict, *, device: str = "auto", log=None) -> dict:
    """Clean, PGD and AutoAttack accuracy of RUN_DIR/checkpoints/best.pt on a fixed seeded subset.

    eval_spec: the sweep's `eval` block (see `spec.parse_eval`): attacks, eps (None: the run's training
    ε, kept in its spelling), norm (None: the run's), n (None: the whole split), seed (subset and
    attacks), split ("test", or "val": the run's held-out part of the training set), batch_size.
    The data are rebuilt with the run's own settings (data root, resize, val size and its TRAINING
    seed), so that "val" is the split training held out. Returns `robustfront.eval.evaluate`'s dict
    plus provenance (checkpoint, its epoch, data, split, eps_str, model, method, train_seed, eval).
    """
    from ..checkpoint import load
    from ..data import load_dataset
    from ..device import resolve_device
    from ..eval import auto_batch_size, evaluate
    from ..models import load_model

    run_dir = Path(run_dir)
    dev = resolve_device(device)
    ck = run_dir / "checkpoints" / "best.pt"
    state = load(ck, dev)
    model = load_model(state, device=dev)
    cfg = state.get("config") or {}
    if not cfg and (run_dir / "config.yaml").is_file():
        cfg = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    if "data" not in cfg:
        raise ValueError(f"checkpoint {ck} does not name its data set (no config in it or in config.yaml)")
    # the training run's data settings; another seed or val size would carve a "val" split holding
    # training images
    ds = load_dataset(cfg["data"], root=cfg.get("data_root"), seed=cfg.get("seed", 0), val_size=cfg.get("val_size"),
                      resize=cfg.get("resize"))
    x, y = ds.tensors(eval_spec["split"], dev, n=eval_spec.get("n"), seed=eval_spec["seed"])
    eps_str = eval_spec.get("eps")
    eps_str = cfg.get("eps", "8/255") if eps_str is None else eps_str
    eps = [parse_number(e, "eval.eps") for e in eps_str] if isinstance(eps_str, list) else parse_number(eps_str, "eval.eps")
    norm = eval_spec.get("norm") or cfg.get("norm", "Linf")
    bs = eval_spec.get("batch_size") or auto_batch_size(model, x)
    t0 = time.perf_counter()
    res = evaluate(model, x, y, list(eval_spec["attacks"]), eps=eps, norm=norm, seed=eval_spec["seed"], batch_size=bs,
                   bounds=ds.bounds, log=log)
    res.update({"checkpoint": str(ck.relative_to(run_dir)), "checkpoint_epoch": state.get("epoch"),
                "best_val_robust": state.get("best_val_robust"), "data": cfg["data"], "split": eval_spec["split"],
                "eps_str": eps_str, "model": cfg.get("model"), "method": cfg.get("method"),
                "train_seed": cfg.get("seed"), "batch_size": bs, "device": str(dev),
                "eval": {k: eval_spec.get(k) for k in ("attacks", "eps", "norm", "n", "seed", "split")},
                "eval_time_s": time.perf_counter() - t0})
    return res


__all__ = ["evaluate_point"]

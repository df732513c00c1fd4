"""`robustfront eval` and `robustfront analyze`: checkpoints judged on their data, one parent parser."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..validation import check_int, parse_number
from .eval_sources import source_parent, sources, state_beside_out
from .flags import add_fields, given


def _err(msg: str) -> None:  # progress and checks go to stderr, the JSON result to stdout
    print(msg, file=sys.stderr, flush=True)


SOURCE_FIELDS = ("data", "data_root", "resize", "split", "seed", "device")  # EvalConfig fields analyze shares


def checkpoint_parent() -> argparse.ArgumentParser:
    """Flags shared by eval and analyze: which models (robustfront checkpoints or foreign weights), on
    which images (EvalConfig's declarations)."""
    from ..eval.config import EvalConfig
    p = argparse.ArgumentParser(add_help=False)
    source_parent(p)
    add_fields(p, EvalConfig, only=SOURCE_FIELDS, defaults=True)
    return p


def _load(src: dict, args, n=None, device=None):
    """load_for_eval for one source, logging what foreign weights were loaded as (one line)."""
    from ..eval import load_for_eval
    from ..models.foreign import describe
    inp = load_for_eval(**src, data=args.data, data_root=args.data_root, resize=args.resize, split=args.split,
                        n=args.n if n is None else n, seed=args.seed, device=device or args.device)
    if inp.report is not None:
        _err(f"loaded {describe(inp.report)}")
    return inp


def writable_target(path: str | None) -> Path | None:
    """Fail before the work if --out cannot be written (a folder, a device, under a file, read-only)."""
    from ..checkpoint import check_out_file
    return None if path is None else check_out_file(path, "--out")


def save_result(obj, target: Path | None, fallback_dir: Path) -> None:
    """Write atomically; if the target fails after a long run, keep the result next to the run and say where."""
    from ..checkpoint import save_result as save
    if target is not None:
        save(obj, target, fallback_dir)


def _finish(out: dict, args, target, fallback: Path) -> int:
    save_result(out, target, fallback)
    if args.wandb:  # the run folder's W&B run where the checkpoint has one, else a new run
        from ..tracking import WandbRun
        in_run = (fallback / "config.yaml").is_file()
        run = WandbRun(args.wandb, fallback if in_run else (target.parent if target else Path(".")),
                       config={"eval": {k: v for k, v in vars(args).items() if k != "func"}}, job_type="eval",
                       keep_id=in_run)
        run.summary(out)
        run.finish()
    print(json.dumps(out, indent=2))
    return 0


def cmd_eval(args) -> int:
    from ..eval import EvalConfig, run
    from ..eval.shards import rank
    from ..eval.suite_state import merge_evaluations
    target = writable_target(args.out)
    if args.wandb:  # before the evaluation, not after it
        from ..tracking import import_wandb
        import_wandb(args.wandb)
    srcs = sources(args, merge=bool(args.merge))
    if args.merge:
        merged = merge_evaluations(*args.merge)
        _err(f"merged {len(args.merge)} state folder(s): {', '.join(args.merge)}")
        return _finish(merged, args, target, Path(args.merge[0]).resolve().parent)
    cfg = EvalConfig(**given(args, EvalConfig))
    if cfg.state is None and not cfg.no_state and args.out:
        cfg = cfg.replace(state=state_beside_out(args.out))
    result = run(cfg, srcs, log=_err).raw
    if rank() != 0:
        return 0  # rank 0 writes the gathered result
    if not result.get("complete", True):  # one shard's part: the last shard to finish, or --merge, writes it
        print(json.dumps(result, indent=2))
        return 0
    first = srcs[0].get("checkpoint") or srcs[0].get("weights") or "."
    return _finish(result, args, target, Path(first).resolve().parent.parent)


def cmd_analyze(args) -> int:
    import torch

    from ..analysis.figures import boundary_figure, landscape_figure
    from ..attacks import ThreatModel, create_attack
    check_int("n", args.n, 1)
    check_int("seed", args.seed, 0, 2**63 - 1)
    check_int("directions", args.directions, 1)
    check_int("max_steps", args.max_steps, 1)
    models, x, y, data, bounds = {}, None, None, set(), (0.0, 1.0)
    for src in sources(args):
        inp = _load(src, args)
        ck = inp.checkpoint
        if x is not None and (inp.x.shape != x.shape or not torch.equal(inp.x, x)):
            raise ValueError(f"{ck} was trained on other data ({inp.data}); allowed: checkpoints of one data set")
        x, y, bounds = inp.x, inp.y, inp.dataset.bounds
        data.add(inp.data)
        label = inp.config.get("method") or Path(ck).stem
        models[label if label not in models else f"{label} ({ck})"] = inp.model
    where = f"{data.pop()} {args.split}"
    if args.kind == "landscape":
        eps = parse_number(args.eps, "eps")
        attack = create_attack("pgd10", ThreatModel(eps=eps, bounds=bounds)) if eps > 0 else None
        label = where + (f", PGD-10 L-inf eps={args.eps}" if attack else ", clean")
        res = landscape_figure(models, x, y, args.out, seed=args.seed, attack=attack, label=label)
    else:
        res = boundary_figure(models, x, args.out, directions=args.directions, max_steps=args.max_steps,
                              seed=args.seed, clamp=bounds is not None, label=where)
    print(json.dumps({k: v for k, v in res.items() if k in ("kind", "n", "files")}))
    return 0


def add_commands(sub) -> None:
    from ..attacks import names_help
    from ..eval.config import EvalConfig
    parent = checkpoint_parent()
    p = sub.add_parser("eval", parents=[parent], help="clean and robust accuracy of checkpoints or foreign weights",
                       description="Clean and robust accuracy of robustfront checkpoints or weights trained "
                       "elsewhere; several give mean ± std. Resumable (--state), shardable (--shard, torchrun).")
    add_fields(p, EvalConfig, skip=SOURCE_FIELDS + ("exact",), defaults=True,   # the CLI always evaluates in exact fp32
               allowed={"attacks": names_help()})
    p.add_argument("--out", help="write the JSON result here (atomically; checked before the run)")
    p.add_argument("--merge", nargs="+", metavar="STATE_DIR", help="no attack: the result of the shards' state "
                   "folders, identical to the unsharded run")
    p.add_argument("--wandb", metavar="PROJECT", help="also log the result to Weights & Biases (the checkpoint's "
                   "run where it has one; pip install 'robustfront[wandb]')")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("analyze", parents=[parent], help="weight loss landscape or decision-boundary distance "
                       "(AGR Fig. 5 / Fig. 4): JSON and PNG")
    p.add_argument("kind", choices=("landscape", "boundary"), help="landscape or boundary")
    p.add_argument("--n", type=int, default=100, metavar="N", help="seeded random subset of this many images "
                   "(default: 100)")
    p.add_argument("--eps", default="8/255", help="landscape: loss on PGD-10 examples at this L-inf budget, 0 for the "
                   "clean loss (default: 8/255)")
    p.add_argument("--directions", type=int, default=1000, metavar="N", help="boundary: random directions per image "
                   "(default: 1000)")
    p.add_argument("--max-steps", type=int, default=64, metavar="N", help="boundary: steps of 1/255 before giving "
                   "up (default: 64)")
    p.add_argument("--out", required=True, help="folder for landscape|boundary .json and .png")
    p.set_defaults(func=cmd_analyze)


__all__ = ["add_commands", "checkpoint_parent"]

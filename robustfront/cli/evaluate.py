"""`robustfront eval` and `robustfront analyze`: checkpoints judged on their data, one parent parser."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..validation import check_int, invalid, parse_number
from .eval_sources import (parse_budgets, parse_chunk, rank, shard_of, source_parent, sources, state_folder,
                           world_size)


def _err(msg: str) -> None:  # progress and checks go to stderr, the JSON result to stdout
    print(msg, file=sys.stderr, flush=True)


def checkpoint_parent() -> argparse.ArgumentParser:
    """Flags shared by eval and analyze: which models (robustfront checkpoints or foreign weights), on
    which images."""
    p = argparse.ArgumentParser(add_help=False)
    source_parent(p)
    p.add_argument("--data", help="data set (default: the one the checkpoint was trained on; required with --weights)")
    p.add_argument("--data-root", help="folder of the named data sets (default: the training run's)")
    p.add_argument("--resize", type=int, metavar="N", help="image side (default: the training run's)")
    p.add_argument("--split", choices=("test", "val"), default="test",
                   help="test, or val: the training run's held-out split (same seed and size) (default: test)")
    p.add_argument("--seed", type=int, default=0, metavar="N", help="seed of the --n subset and the attacks "
                   "(default: 0)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (default: auto; under torchrun "
                   "cuda:LOCAL_RANK)")
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


def _threat_defaults(args, configs: list[dict]) -> tuple[list[str], str]:
    """--eps / --norm, defaulting to the checkpoints' training threat model."""
    def one(key, default):
        vals = {str(c.get(key, default)) for c in configs}
        if len(vals) > 1:
            raise ValueError(f"the checkpoints were trained with different {key} ({', '.join(sorted(vals))}); "
                             f"allowed: name it with --{key}")
        return vals.pop()
    eps = args.eps if args.eps is not None else one("eps", "8/255")
    norm = args.norm or one("norm", "Linf")
    parts = [e.strip() for e in str(eps).split(",") if e.strip()]
    if not parts:
        raise ValueError(f"--eps={eps!r} names no budget; allowed: a number, 8/255, or a list 2/255,4/255")
    return parts, norm


def _eps_values(strs: list[str]) -> list[float]:
    """--eps values as numbers, each >= 0 and none twice (8/255 and 0.0313725... are the same budget)."""
    from ..validation import check_number
    vals = []
    for text in strs:
        v = check_number("eps", parse_number(text, "eps"), 0.0)
        if any(abs(v - u) <= 1e-12 for u in vals):
            raise invalid("eps", ",".join(strs), "distinct budgets", f"a list with {text!r} twice")
        vals.append(v)
    return vals


def _provenance(args, src, inp, eps_strs) -> dict:
    out = {"checkpoint": inp.checkpoint, "eps_str": eps_strs if len(eps_strs) > 1 else eps_strs[0],
           "model": inp.config.get("model", getattr(inp.model, "rf_config", {}).get("name") or src.get("model_file")),
           "method": inp.config.get("method"), "train_seed": inp.config.get("seed")}
    if inp.report is not None:
        out["foreign"] = {k: inp.report.get(k) for k in ("model", "layout", "normalization", "renamed", "dropped",
                                                         "filled")}
    return out


def _finish(out: dict, args, target, fallback: Path) -> int:
    save_result(out, target, fallback)
    print(json.dumps(out, indent=2))
    return 0


def cmd_eval(args) -> int:
    from ..checkpoint import load
    from ..eval import aggregate, check_attacks, evaluate, format_sanity, sanity_check
    from ..eval.shards import device_for_rank
    from ..eval.suite_state import build_result, merge_evaluations, missing_chunks, read_folder, SuiteState
    target = writable_target(args.out)
    srcs = sources(args, merge=bool(args.merge))
    if args.merge:
        merged = merge_evaluations(*args.merge)
        _err(f"merged {len(args.merge)} state folder(s): {', '.join(args.merge)}")
        return _finish(merged, args, target, Path(args.merge[0]).resolve().parent)
    attacks = check_attacks([a.strip() for a in args.attacks.split(",") if a.strip()])
    if not attacks:
        raise ValueError(f"--attacks={args.attacks!r} names no attack; allowed: a comma-separated list such as "
                         f"pgd20,autoattack")
    check_int("seed", args.seed, 0, 2**63 - 1)
    for name in ("batch_size", "n"):
        if getattr(args, name) is not None:
            check_int(name, getattr(args, name), 1)
    chunk, budgets = parse_chunk(args.chunk_size), parse_budgets(args.aa_budget)
    if budgets and not any(a.startswith("autoattack") for a in attacks):
        raise invalid("aa_budget", args.aa_budget, "with an AutoAttack cascade in --attacks (autoattack, "
                      "autoattack_plus, autoattack_rand)", "given without one")
    shard = shard_of(args, len(srcs))
    device = device_for_rank() if shard == "env" and args.device == "auto" else args.device
    configs = [load(s["checkpoint"]).get("config") or {} if "checkpoint" in s else {} for s in srcs]
    eps_strs, norm = _threat_defaults(args, configs)
    eps_list = _eps_values(eps_strs)
    tag = f"[{rank()}/{world_size()}] " if shard == "env" else f"[shard {args.shard}] " if shard else ""
    log = (lambda m: _err(tag + m))  # noqa: E731
    _pm = lambda d: f"{100 * d['mean']:.2f} ± {100 * d['std']:.2f}%"  # noqa: E731
    results = []
    for i, src in enumerate(srcs):
        inp = _load(src, args, device=device)
        folder, how = state_folder(args, i, src, len(srcs))
        if shard is not None and folder is None and shard != "env":
            raise ValueError(f"--shard {args.shard} keeps its part in a state folder for --merge; allowed: --state DIR "
                             f"or --out FILE")
        log(f"evaluating {inp.checkpoint} on {inp.data} ({args.split}, n={len(inp.y)}, seed={args.seed}), {norm} "
            f"eps={','.join(eps_strs)}; attacks {', '.join(attacks)}; state: {folder or how}"
            + (f" ({how})" if folder else ""))
        res = evaluate(inp.model, inp.x, inp.y, attacks, eps=eps_list if len(eps_list) > 1 else eps_list[0],
                       norm=norm, seed=args.seed, batch_size=args.batch_size, bounds=inp.dataset.bounds, log=log,
                       data=inp.data, split=args.split, ids=inp.ids, chunk_size=chunk, state=folder, shard=shard,
                       budgets=budgets, provenance=_provenance(args, src, inp, eps_strs))
        if isinstance(shard, tuple):  # the last shard to finish on a shared folder writes the whole result
            meta = SuiteState(folder).existing_meta()
            per_eps = read_folder(folder, meta)
            left = missing_chunks(meta, per_eps)
            if left:
                _err(f"shard {args.shard} finished; {len(left)} chunk(s) of other shards are not in {folder} yet. "
                     f"When every shard has finished: robustfront eval --merge {folder} [OTHER_SHARD_FOLDERS] "
                     f"--out FILE")
                print(json.dumps(res, indent=2))
                return 0
            res = build_result(meta, per_eps)
        if shard is not None and rank() == 0:  # the per-shard lines above are partial: the whole result
            for r in res.get("sweep", [res]):
                accs = ", ".join(f"{k} {100 * v:.2f}%" for k, v in r["robust_acc"].items())
                _err(f"eps={r['eps']:.5g} all {r['n']} points: clean {100 * r['clean_acc']:.2f}%, {accs}, "
                     f"worst {100 * r['worst_case_acc']:.2f}%")
        if args.sanity:
            i = max(range(len(eps_list)), key=eps_list.__getitem__)  # the largest ε: masking shows most there
            res["sanity"] = sanity_check(inp.model, inp.x, inp.y, eps=eps_list[i], norm=norm, seed=args.seed,
                                         batch_size=res.get("batch_size") or 500, bounds=inp.dataset.bounds,
                                         log=log, state=folder)  # lines as it goes; resumable in the state folder
            res["sanity"]["eps_str"] = eps_strs[i]
            for line in format_sanity(res["sanity"]):
                _err(line)
        for w in (res.get("warnings") or []):
            if "randomised" in w:
                log(f"GUARD: {w}")
        results.append(res)
    if rank() != 0:
        return 0  # rank 0 writes the gathered result
    if len(results) == 1:
        out = results[0]
    else:
        out = {"checkpoints": results, "aggregate": aggregate(results), "n": results[0]["n"], "norm": norm,
               "seed": args.seed, "data": results[0]["data"], "eps_str": results[0]["eps_str"]}
        agg = out["aggregate"]
        for a in (agg["sweep"] if "sweep" in agg else [agg]):
            _err(f"eps={a['eps']:.5g} over {len(results)} checkpoints: clean {_pm(a['clean_acc'])}, " + ", ".join(
                f"{k} {_pm(v)}" for k, v in a["robust_acc"].items()) + f", worst {_pm(a['worst_case_acc'])}")
    first = srcs[0].get("checkpoint") or srcs[0].get("weights") or "."
    return _finish(out, args, target, Path(first).resolve().parent.parent)


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
    parent = checkpoint_parent()
    p = sub.add_parser("eval", parents=[parent], help="clean and robust accuracy of checkpoints or foreign weights",
                       description="Clean and robust accuracy of robustfront checkpoints or weights trained "
                       "elsewhere; several give mean ± std. Resumable (--state), shardable (--shard, torchrun).")
    p.add_argument("--attacks", default="pgd20,autoattack", help=f"comma-separated: {names_help()} "
                   f"(default: pgd20,autoattack)")
    p.add_argument("--eps", help="budget, or a comma-separated sweep 2/255,4/255 (default: the checkpoint's "
                   "training eps; 8/255 for --weights)")
    p.add_argument("--norm", choices=("Linf", "L2", "L1"), help="threat model (default: the checkpoint's; Linf for "
                   "--weights)")
    p.add_argument("--n", type=int, metavar="N", help="a seeded random subset of this many images (default: all)")
    p.add_argument("--batch-size", type=int, metavar="N", help="default: chosen for the device (CPU 500; CUDA: what "
                   "fits in half the free memory, up to 4096)")
    p.add_argument("--sanity", action="store_true", help="also run the six gradient-masking checks (PASS/WARN)")
    p.add_argument("--out", help="write the JSON result here (atomically; checked before the run)")
    p.add_argument("--state", metavar="DIR", help="resumable state: per-sample masks after every attack and chunk "
                   "(AutoAttack: every batch); re-run the same command to continue (default: FILE.state beside "
                   "--out, else RUN/eval-state/<request> for a checkpoint in a run folder)")
    p.add_argument("--no-state", action="store_true", help="keep nothing on disk (not resumable)")
    p.add_argument("--shard", metavar="i/N", help="evaluate shard i of N (0-based) of the points into the state "
                   "folder; the last shard to finish on a shared folder writes the result, else --merge")
    p.add_argument("--merge", nargs="+", metavar="STATE_DIR", help="no attack: the result of the shards' state "
                   "folders, identical to the unsharded run")
    p.add_argument("--chunk-size", metavar="N|all", help="points per independently attacked chunk (default: 1000, "
                   "or the batch size when larger); all = one chunk, the official runner's batching")
    p.add_argument("--aa-budget", metavar="n_iter=K,n_queries=Q", help="reduced AutoAttack budgets for quick "
                   "looks (APGD/FAB iterations, Square queries); the result says official_budgets: false")
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

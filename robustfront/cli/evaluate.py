"""`robustfront eval` and `robustfront analyze`: checkpoints judged on their data, one parent parser."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..validation import check_int, parse_number


def _err(msg: str) -> None:  # progress and checks go to stderr, the JSON result to stdout
    print(msg, file=sys.stderr, flush=True)


def checkpoint_parent() -> argparse.ArgumentParser:
    """Flags shared by eval and analyze: which checkpoints, on which images."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--checkpoint", required=True, nargs="+", help="one or more robustfront checkpoints (.pt)")
    p.add_argument("--data", help="data set (default: the one the checkpoint was trained on)")
    p.add_argument("--data-root", help="folder of the named data sets (default: the training run's)")
    p.add_argument("--resize", type=int, metavar="N", help="image side (default: the training run's)")
    p.add_argument("--split", choices=("test", "val"), default="test",
                   help="test, or val: the training run's held-out split (same seed and size) (default: test)")
    p.add_argument("--seed", type=int, default=0, metavar="N", help="seed of the --n subset and the attacks "
                   "(default: 0)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (default: auto)")
    return p


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


def cmd_eval(args) -> int:
    from ..checkpoint import load
    from ..eval import aggregate, auto_batch_size, check_attacks, evaluate, format_sanity, load_for_eval, sanity_check
    attacks = check_attacks([a.strip() for a in args.attacks.split(",") if a.strip()])
    if not attacks:
        raise ValueError(f"--attacks={args.attacks!r} names no attack; allowed: a comma-separated list such as "
                         f"pgd20,autoattack")
    check_int("seed", args.seed, 0, 2**63 - 1)
    if args.batch_size is not None:
        check_int("batch_size", args.batch_size, 1)
    target = writable_target(args.out)
    configs = [load(ck).get("config") or {} for ck in args.checkpoint]
    eps_strs, norm = _threat_defaults(args, configs)
    eps_list = [parse_number(e, "eps") for e in eps_strs]
    _pm = lambda d: f"{100 * d['mean']:.2f} ± {100 * d['std']:.2f}%"  # noqa: E731
    results = []
    for ck in args.checkpoint:
        inp = load_for_eval(ck, data=args.data, data_root=args.data_root, resize=args.resize, split=args.split,
                            n=args.n, seed=args.seed, device=args.device)
        bs = args.batch_size or auto_batch_size(inp.model, inp.x)
        _err(f"evaluating {ck} on {inp.data} ({args.split}, n={len(inp.y)}, seed={args.seed}), {norm} "
             f"eps={','.join(eps_strs)}; attacks {', '.join(attacks)}")
        res = evaluate(inp.model, inp.x, inp.y, attacks, eps=eps_list if len(eps_list) > 1 else eps_list[0],
                       norm=norm, seed=args.seed, batch_size=bs, bounds=inp.dataset.bounds, log=_err, data=inp.data,
                       split=args.split)
        res.update({"checkpoint": str(ck), "eps_str": eps_strs if len(eps_strs) > 1 else eps_strs[0],
                    "model": inp.config.get("model", res.get("model")), "method": inp.config.get("method"),
                    "train_seed": inp.config.get("seed")})
        if args.sanity:
            i = max(range(len(eps_list)), key=eps_list.__getitem__)  # the largest ε: masking shows most there
            res["sanity"] = sanity_check(inp.model, inp.x, inp.y, eps=eps_list[i], norm=norm, seed=args.seed,
                                         batch_size=bs, bounds=inp.dataset.bounds)
            res["sanity"]["eps_str"] = eps_strs[i]
            for line in format_sanity(res["sanity"]):
                _err(line)
        results.append(res)
    if len(results) == 1:
        out = results[0]
    else:
        out = {"checkpoints": results, "aggregate": aggregate(results), "n": results[0]["n"], "norm": norm,
               "seed": args.seed, "data": results[0]["data"], "eps_str": results[0]["eps_str"]}
        agg = out["aggregate"]
        for a in (agg["sweep"] if "sweep" in agg else [agg]):
            _err(f"eps={a['eps']:.5g} over {len(results)} checkpoints: clean {_pm(a['clean_acc'])}, " + ", ".join(
                f"{k} {_pm(v)}" for k, v in a["robust_acc"].items()) + f", worst {_pm(a['worst_case_acc'])}")
    save_result(out, target, Path(args.checkpoint[0]).resolve().parent.parent)
    print(json.dumps(out, indent=2))
    return 0


def cmd_analyze(args) -> int:
    import torch

    from ..analysis.figures import boundary_figure, landscape_figure
    from ..attacks import ThreatModel, create_attack
    from ..eval import load_for_eval
    check_int("n", args.n, 1)
    check_int("seed", args.seed, 0, 2**63 - 1)
    check_int("directions", args.directions, 1)
    check_int("max_steps", args.max_steps, 1)
    models, x, y, data, bounds = {}, None, None, set(), (0.0, 1.0)
    for ck in args.checkpoint:
        inp = load_for_eval(ck, data=args.data, data_root=args.data_root, resize=args.resize, split=args.split,
                            n=args.n, seed=args.seed, device=args.device)
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
    p = sub.add_parser("eval", parents=[parent], help="clean and robust accuracy of one or more checkpoints",
                       description="Clean and robust accuracy; several checkpoints give mean ± std.")
    p.add_argument("--attacks", default="pgd20,autoattack", help=f"comma-separated: {names_help()} "
                   f"(default: pgd20,autoattack)")
    p.add_argument("--eps", help="budget, or a comma-separated sweep 2/255,4/255 (default: the checkpoint's "
                   "training eps)")
    p.add_argument("--norm", choices=("Linf", "L2", "L1"), help="threat model (default: the checkpoint's)")
    p.add_argument("--n", type=int, metavar="N", help="a seeded random subset of this many images (default: all)")
    p.add_argument("--batch-size", type=int, metavar="N", help="default: chosen for the device (CPU 500; CUDA: what "
                   "fits in half the free memory, up to 4096)")
    p.add_argument("--sanity", action="store_true", help="also run the six gradient-masking checks (PASS/WARN)")
    p.add_argument("--out", help="write the JSON result here (atomically; checked before the run)")
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

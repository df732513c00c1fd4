"""`robustfront reproduce ID|TABLE|PAPER|all|SWEEP.yaml ... --out DIR [--plan] [--scale tiny]`.

Entries come from configs/reproduce/*.yaml (robustfront.reproduce); a sweep file (e.g. one of
configs/testbed/*.yaml, or the word `testbed` for all of them) runs as an ordinary sweep.
"""
from __future__ import annotations

import json
from pathlib import Path


def cmd_reproduce(args) -> int:
    from ..reproduce import covered, load_manifest, reproduce, select
    from ..reproduce.manifest import ROOT
    from ..reproduce.plan import THROUGHPUT, entry_cost, format_plan
    from ..reproduce.protocols import STANDARD
    root = Path(args.configs) if args.configs else ROOT
    sweeps, names = _sweep_files(args.selection, root)
    if args.throughput:
        for g in THROUGHPUT:
            THROUGHPUT[g] = {"train": args.throughput * 1e12, "eval": args.throughput * 1e12 / 2}
    entries = select(load_manifest(root), names) if names else []
    if args.plan:
        trained = [e for e in entries if e.status == "train"]
        print(format_plan([entry_cost(e, [e.protocol, STANDARD], args.seeds) for e in trained],
                          [e for e in entries if e.status != "train"]))
        print("covered rows per paper: " + json.dumps(covered(entries)))
        for s in sweeps:
            print(f"sweep file {s}: run with robustfront sweep (no cost model for plain sweeps)")
        return 0
    if not args.out:
        raise ValueError("--out is required to run; allowed: --out DIR, or --plan to print the cost only")
    if args.scale == "tiny" and args.executor == "slurm":
        raise ValueError("--scale tiny with --executor slurm; allowed: tiny runs on this CPU (local or inline)")
    slurm = dict(args.slurm or [])
    if entries:
        doc = reproduce(entries, args.out, seeds=args.seeds, tiny=args.scale == "tiny", eval_n=args.eval_n,
                        jobs=args.jobs, executor=args.executor, slurm=slurm,
                        protocols=tuple(x for x in args.protocols.split(",") if x.strip()))
        print(f"{Path(args.out) / 'reproduce.md'}: {sum(1 for r in doc['entries'] if r['groups'])} entries run, "
              f"{len(doc['not_trained'])} not trainable")
    for s in sweeps:
        from ..sweep import run_sweep
        summary = run_sweep(s, Path(args.out) / "testbed" / s.stem, jobs=args.jobs, executor=args.executor,
                            slurm=slurm)
        print(f"{s}: {json.dumps(summary['counts'])}")
    return 0


def _sweep_files(selection: list[str], root: Path) -> tuple[list[Path], list[str]]:
    """Split the selection into sweep files (a .yaml path, or `testbed` = configs/testbed/*.yaml) and
    manifest selectors."""
    sweeps, names = [], []
    for s in selection:
        if s == "testbed":
            found = sorted((root / "testbed").glob("*.yaml"))
            if not found:
                raise ValueError(f"testbed: no sweep file in {root / 'testbed'}; allowed: configs/testbed/*.yaml")
            sweeps += found
        elif s.endswith((".yaml", ".yml")):
            if not Path(s).is_file():
                raise FileNotFoundError(f"sweep file {s} does not exist")
            sweeps.append(Path(s))
        else:
            names.append(s)
    return sweeps, names


def add_commands(sub) -> None:
    from ..sweep.command import _kv
    p = sub.add_parser("reproduce", help="train and evaluate the papers' published rows (both protocols) and write "
                                         "the side-by-side report", description=__doc__.split("\n")[0])
    p.add_argument("selection", nargs="+", help="entry ids, tables (raat.t1), papers (ca_at, agr, raat), all, "
                                                "id patterns, sweep files, or testbed")
    p.add_argument("--out", help="folder: runs/ENTRY/ sweep folders, reproduce.md, reproduce.json")
    p.add_argument("--plan", action="store_true", help="print runs, epochs, images x attack steps and estimated "
                                                       "GPU-hours; run nothing")
    p.add_argument("--scale", default="full", choices=("full", "tiny"),
                   help="tiny: every entry on digits with a tiny model, 1 epoch, attacks capped (CPU, minutes)")
    p.add_argument("--seeds", type=int, help="seeds per row (default: the entry's, 3)")
    p.add_argument("--eval-n", type=int, help="evaluate on a seeded subset of the test set (default: all of it; "
                                              "the report says so)")
    p.add_argument("--protocols", default="paper,standard", help="which evaluations: paper (a), standard (b), "
                                                                 "both (default), or '' to train only")
    p.add_argument("--jobs", type=int, help="local pool: worker processes")
    p.add_argument("--executor", default="local", choices=("local", "inline", "slurm", "submitit-local"))
    p.add_argument("--slurm", action="append", type=_kv, metavar="KEY=VALUE", help="submitit parameter (repeatable)")
    p.add_argument("--throughput", type=float, help="--plan: assumed sustained training TFLOP/s (eval: half)")
    p.add_argument("--configs", help="configs folder holding reproduce/, paper/, testbed/ (default: the repository's)")
    p.set_defaults(func=cmd_reproduce)


__all__ = ["add_commands"]

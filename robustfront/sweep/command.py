"""The `sweep` command's arguments and body, for the CLI to mount (`robustfront sweep ...`) and for
`python -m robustfront.sweep ...` until then:

    python -m robustfront.sweep --config configs/sweeps/tiny_digits.yaml --out runs/tiny --jobs 2 --fronts
    python -m robustfront.sweep --out runs/tiny --fronts          # only draw the fronts of what is done
"""
from __future__ import annotations

import argparse
import json
import sys

import yaml


DESCRIPTION = ("Train and evaluate every point of a sweep file (one run folder each); re-running skips finished "
               "points, resumes interrupted ones and refuses folders made with another config (docs/sweep.md)")


def _kv(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    k, v = text.split("=", 1)
    return k.strip(), yaml.safe_load(v)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="sweep YAML (base, grid, zip, seeds, methods, eval; see docs/sweep.md); "
                                    "without it, --fronts draws the fronts of OUT")
    p.add_argument("--out", required=True, help="sweep folder: points/NAME run folders, sweep.json, fronts/")
    p.add_argument("--jobs", type=int, help="local pool: worker processes (default: one per visible GPU, else 1)")
    p.add_argument("--executor", default="local", choices=("local", "inline", "slurm", "submitit-local"),
                   help="local: a process pool; inline: this process; slurm: a submitit job array "
                        "(pip install 'robustfront[slurm]'); submitit-local: the same path on this machine")
    p.add_argument("--gpus", help="comma-separated GPU ids for the local pool (default: all visible; '' for CPU)")
    p.add_argument("--threads", type=int, help="torch threads per worker (default: cores // jobs)")
    p.add_argument("--only", action="append", metavar="PATTERN", help="run only points whose name matches "
                   "(fnmatch, repeatable), e.g. 'method=ca_at,*'")
    p.add_argument("--move-stale", action="store_true", help="move point folders made with another config (or "
                   "eval.json of another protocol) to OUT/_stale/ instead of refusing")
    p.add_argument("--no-retry-failed", action="store_true", help="leave failed points failed")
    p.add_argument("--slurm", action="append", type=_kv, metavar="KEY=VALUE", help="submitit parameter "
                   "(repeatable): timeout_min=240, slurm_partition=gpu, gpus_per_node=1, cpus_per_task=8, "
                   "slurm_array_parallelism=32, ...")
    p.add_argument("--no-wait", action="store_true", help="slurm: submit and return (re-run later to collect)")
    p.add_argument("--dry-run", action="store_true", help="check the config and the folders, print the summary")
    p.add_argument("--fronts", action="store_true", help="draw the fronts (PNG, JSON, CSV, table) into OUT/fronts")


def run_args(args) -> int:
    from .results import sweep_fronts
    from .runner import run_sweep
    failed = []
    if args.config:
        gpus = None if args.gpus is None else [g for g in args.gpus.split(",") if g.strip()]
        summary = run_sweep(args.config, args.out, jobs=args.jobs, executor=args.executor, gpus=gpus,
                            threads=args.threads, only=args.only, move_stale=args.move_stale,
                            retry_failed=not args.no_retry_failed, slurm=dict(args.slurm or []),
                            wait=not args.no_wait, dry_run=args.dry_run)
        print(json.dumps(summary["counts"]))
        failed = [r for r in summary["points"] if r["status"] == "failed"]
    elif not args.fronts:
        raise ValueError("--config is required to run a sweep; allowed: --config FILE, or --fronts alone to draw "
                         "the fronts of OUT")
    if args.fronts and args.config and args.dry_run:
        print("robustfront: --fronts: nothing drawn, --dry-run trains and evaluates nothing", file=sys.stderr)
    elif args.fronts:
        try:
            files = sweep_fronts(args.out)
        except ValueError as e:
            raise ValueError(f"--fronts: {e}") from None
        for f in files:
            print(f)
    if args.config and failed:  # a partial failure is a failure for a script or a CI job
        names = ", ".join(r["name"] for r in failed[:3]) + (f" and {len(failed) - 3} more" if len(failed) > 3 else "")
        print(f"robustfront: error: {len(failed)} of {summary['counts']['total']} sweep point(s) failed: {names} "
              f"(see {args.out}/points/NAME/error.txt); allowed: fix the cause and re-run the same command (failed "
              f"points are retried)", file=sys.stderr)
        return 1
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m robustfront.sweep", description=DESCRIPTION)
    add_arguments(p)
    args = p.parse_args(argv)
    try:
        return run_args(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"robustfront: error: {e}", file=sys.stderr)
        return 2


__all__ = ["add_arguments", "main", "run_args"]

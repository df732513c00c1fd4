"""`robustfront sweep --config sweep.yaml --out DIR [--jobs N] [--executor local|inline|slurm|submitit-local]`.

The flags and the body are the sweep package's own (`robustfront.sweep.command`), so that
`python -m robustfront.sweep` and this command cannot drift apart; errors go through the CLI's one
error boundary.
"""
from __future__ import annotations


def cmd_sweep(args) -> int:
    from ..sweep.command import run_args
    return run_args(args)


def add_commands(sub) -> None:
    from ..sweep.command import DESCRIPTION, add_arguments
    p = sub.add_parser("sweep", help="train and evaluate a grid of runs (λ, γ, seeds, methods) and draw the fronts",
                       description=DESCRIPTION)
    add_arguments(p)
    p.set_defaults(func=cmd_sweep)


__all__ = ["add_commands"]

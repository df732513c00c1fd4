"""Sweeps: many ordinary run folders from one base config, run by an executor, evaluated under one protocol.

    from robustfront.sweep import run_sweep
    summary = run_sweep("configs/sweeps/tiny_digits.yaml", "runs/tiny", jobs=2)

See docs/sweep.md for the YAML schema, the executors and the resume rules.
"""
from .evaluate import evaluate_point
from .point import config_hash, eval_hash, run_point
from .results import point_results, sweep_fronts
from .runner import run_sweep
from .spec import Point, SweepSpec, expand, load_spec, parse_spec

__all__ = ["Point", "SweepSpec", "config_hash", "eval_hash", "evaluate_point", "expand", "load_spec", "parse_spec",
           "point_results", "run_point", "run_sweep", "sweep_fronts"]

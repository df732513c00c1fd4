"""Reproduce the three papers' tables: a manifest of every published row (configs/reproduce/*.yaml),
each trained through the sweep and evaluated under the paper's protocol and robustfront's standard.

    robustfront reproduce --plan all
    robustfront reproduce raat.t1 --scale tiny --out runs/repro_tiny

See docs/evidence.md and docs/reproduce.md."""
from .manifest import Entry, covered, load_manifest, select
from .protocols import STANDARD, evaluate_protocol
from .runner import reproduce

__all__ = ["Entry", "STANDARD", "covered", "evaluate_protocol", "load_manifest", "reproduce", "select"]

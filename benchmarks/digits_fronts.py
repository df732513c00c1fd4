"""Fronts of the issue-10 demonstration sweep (configs/sweeps/digits_ca_at_vs_weighted.yaml) for the docs.

    python benchmarks/digits_fronts.py SWEEP_DIR docs/figures/digits_fronts [--lam-was-clean-weight]

`robustfront report SWEEP_DIR` draws the same fronts; this script only adds the relabelling the recorded
run needs: it was made at commit 507bf1d, where `--opt lam` weighted the CLEAN loss, so its vanilla point
lam=v is the weighted average with λ = 1 - v in today's (the CA-AT paper's) meaning. With
--lam-was-clean-weight the labels are rewritten to λ; the accuracies are the points' eval.json, untouched.
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from robustfront.fronts import write_fronts
from robustfront.sweep.names import format_value
from robustfront.sweep.results import point_results


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("sweep_dir")
    ap.add_argument("out")
    ap.add_argument("--lam-was-clean-weight", action="store_true")
    args = ap.parse_args()
    results = point_results(args.sweep_dir)
    if args.lam_was_clean_weight:
        for r in results:
            if r["knob"].startswith("lam="):
                lam = round(1.0 - r["knob_value"], 6)
                r["knob"], r["knob_value"] = f"lam={format_value(lam)}", lam
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    for f in write_fronts(results, out):
        print(f)


if __name__ == "__main__":
    main()

"""Fronts of the issue-10 demonstration sweep (configs/sweeps/digits_ca_at_vs_weighted.yaml) for the docs.

    python benchmarks/digits_fronts.py SWEEP_DIR docs/figures/digits_fronts [--lam-was-clean-weight]
    python benchmarks/digits_fronts.py --redraw docs/figures/digits_fronts

`--redraw` draws the committed fronts again from their front_*.json (the averaged points, the Pareto flags,
hypervolumes and dominance; the sweep's point folders are not in the repository) with today's plotting.

`robustfront report SWEEP_DIR` draws the same fronts; this script only adds the relabelling the recorded
run needs: it was made at commit 507bf1d, where `--opt lam` weighted the CLEAN loss, so its vanilla point
lam=v is the weighted average with λ = 1 - v in today's (the CA-AT paper's) meaning. With
--lam-was-clean-weight the labels are rewritten to λ; the accuracies are the points' eval.json, untouched.
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import json

from robustfront.checkpoint import write_json_atomic
from robustfront.fronts import write_fronts
from robustfront.fronts.plots import dominance_line, front_note, fronts_figure
from robustfront.fronts.report import save_figure
from robustfront.sweep.names import format_value
from robustfront.sweep.results import point_results


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("sweep_dir", nargs="?")
    ap.add_argument("out", nargs="?")
    ap.add_argument("--lam-was-clean-weight", action="store_true")
    ap.add_argument("--redraw", metavar="FOLDER", help="redraw FOLDER/front_*.png from FOLDER/front_*.json")
    args = ap.parse_args()
    if args.redraw:
        for f in sorted(Path(args.redraw).glob("front_*.json")):
            g = json.loads(f.read_text())
            for fam in g["families"].values():  # run folders as the sweep names them, not one machine's paths
                for p in fam["points"]:
                    p["runs"] = [f"points/{Path(r).name}" for r in p.get("runs") or []]
            write_json_atomic(f, {**g, "note": front_note(g), "verdict": dominance_line(g)})
            print(save_figure(fronts_figure([g]), f.with_suffix(".png")))
        return
    if not (args.sweep_dir and args.out):
        ap.error("SWEEP_DIR and OUT are needed unless --redraw")
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

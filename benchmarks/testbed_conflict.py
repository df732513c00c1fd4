"""Gradient conflict of every trained testbed point at the end of training (issue 18).

Only the gradient-surgery combiners (CA-AT, AGR) log their conflict during training; the other methods
compute one gradient of their whole loss and so have no g_c and g_a to compare. To set every method side
by side, this measures on each point's last checkpoint, on the same 500 held-out training images (the
runs' val split), the conflict between the clean gradient g_c = ∇CE(f(x), y) and the adversarial one
g_a = ∇CE(f(x'), y), x' from the training attack (PGD-5, step 2/255, ε 8/255, random start):
cos(g_c, g_a) and μ = |g_c|·|g_a|·(1 - cos) (robustfront.analysis.conflict), in eval mode (BatchNorm's
running statistics; nothing is updated). Run from the repository root on the study folder, which holds
the checkpoints (the committed results do not):

    python benchmarks/testbed_conflict.py runs/testbed --out benchmarks/results/testbed \
        --figures docs/figures/testbed
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from fractions import Fraction
from pathlib import Path

import torch
import torch.nn.functional as F

from robustfront.analysis.conflict import gradient_conflict
from robustfront.attacks import create_attack
from robustfront.attacks.threat import ThreatModel
from robustfront.eval.load import load_for_eval

sys.path.insert(0, str(Path(__file__).parent))
from testbed_claims import label  # noqa: E402  (one label per configuration, as in the claims)


def measure(point: Path, n: int, seed: int) -> dict | None:
    ck = point / "checkpoints" / "last.pt"
    if not ck.is_file():
        return None
    inp = load_for_eval(str(ck), split="val", n=n, seed=seed)
    cfg = inp.config
    num = lambda v: float(Fraction(v)) if isinstance(v, str) else float(v)  # noqa: E731 ("8/255" as typed)
    threat = ThreatModel(eps=num(cfg["eps"]), norm=cfg.get("norm", "Linf"), alpha=num(cfg["alpha"]),
                         steps=cfg["attack_steps"])
    attack = create_attack("pgd", threat)
    model = inp.model.eval()
    torch.manual_seed(seed)  # the attack's random start
    x_adv = attack(model, inp.x, inp.y)
    return gradient_conflict(model, F.cross_entropy, inp.x, inp.y, x_adv)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("root", help="the study folder (runs/testbed), with each point's checkpoints")
    p.add_argument("--out", default="benchmarks/results/testbed")
    p.add_argument("--figures", default="docs/figures/testbed")
    p.add_argument("--n", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    root = Path(a.root)
    if not root.is_dir():
        print(f"testbed_conflict: root={a.root!r} is not a folder; allowed: the study's output folder",
              file=sys.stderr)
        return 2
    torch.set_num_threads(max(1, torch.get_num_threads()))
    rows = []
    for point in sorted(root.glob("*/points/*")):
        if "calibration" in point.parts:
            continue
        meta = json.loads((point / "point.json").read_text()) if (point / "point.json").is_file() else None
        if meta is None:
            continue
        varied = dict(meta["varied"])
        seed = varied.pop("seed", 0)
        method = varied.pop("method")
        r = measure(point, a.n, a.seed)
        if r is None:
            continue
        rows.append({"config": label(method, varied), "method": method, "seed": seed, "cos": r["cos"], "mu": r["mu"],
                     "norm_clean": r["norm_clean"], "norm_adv": r["norm_adv"]})
        print(f"{point.name}: cos {r['cos']:.3f}  mu {r['mu']:.4g}", flush=True)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "conflict_final.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["config"])
        w.writeheader()
        w.writerows(rows)
    figure(rows, Path(a.figures) / "conflict_final.png")
    return 0


def figure(rows: list[dict], path: Path) -> None:
    """cos(g_c, g_a) and μ per configuration at the end of training, mean ± std over seeds."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    by: dict[str, list[dict]] = {}
    for r in rows:
        by.setdefault(r["config"], []).append(r)
    names = sorted(by, key=lambda c: sum(r["cos"] for r in by[c]) / len(by[c]))
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.28 * len(names) + 1.2))
    for ax, key, title in zip(axes, ("cos", "mu"), ("cos(g_c, g_a)", "conflict μ = |g_c||g_a|(1 - cos)")):
        means = [sum(r[key] for r in by[c]) / len(by[c]) for c in names]
        stds = [(sum((r[key] - m) ** 2 for r in by[c]) / max(1, len(by[c]) - 1)) ** .5 for c, m in zip(names, means)]
        ax.barh(range(len(names)), means, xerr=stds, color="tab:blue", alpha=.7)
        ax.set_yticks(range(len(names)), [f"{c} ({len(by[c])})" for c in names], fontsize=7)
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=.3, axis="x")
    fig.suptitle("Gradient conflict at the end of training (last checkpoint, 500 held-out images, PGD-5; "
                 "mean ± std over seeds)", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())

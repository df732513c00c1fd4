"""The report's plots: training curves, robust accuracy vs ε, gradient conflict, and the clean-vs-robust
Pareto fronts. Axes are in percent; one colour per run (or front), one line style per metric."""
from __future__ import annotations

from pathlib import Path

from . import report as rep
from .plotting import figure

STYLES = {"train_clean_acc": ":", "train_adv_acc": "-.", "val_clean_acc": "-", "val_pgd_acc": "--"}


def _desc(r: dict) -> str:
    c = r["config"]
    return (f"{r['name']} ({c.get('method', '?')}, {c.get('data', '?')}, {c.get('model', '?')}, "
            f"{c.get('norm', 'Linf')} eps {rep.fmt_eps(c.get('eps'))}, seed {c.get('seed', 0)})")


def training_curves(runs: list[dict], out: Path) -> Path:
    fig, (acc_ax, loss_ax) = figure(1, 2, figsize=(11, 4.5))
    for i, r in enumerate(runs):
        color = f"C{i % 10}"
        for key, ls in STYLES.items():
            pts = [(m["epoch"], 100 * m[key]) for m in r["metrics"] if key in m]
            if pts:
                acc_ax.plot(*zip(*pts), ls, color=color, marker=".", label=f"{r['name']}: {key}")
        pts = [(m["epoch"], m["train_loss"]) for m in r["metrics"] if "train_loss" in m]
        if pts:
            loss_ax.plot(*zip(*pts), "-", color=color, marker=".", label=r["name"])
    acc_ax.set_xlabel("epoch"), acc_ax.set_ylabel("accuracy (%)"), acc_ax.set_ylim(0, 100)
    acc_ax.set_title("Accuracies (colour = run; line style = metric; val = held-out split of the training set, "
                     "val_pgd = PGD-k at the training eps)", fontsize=7)
    loss_ax.set_xlabel("epoch"), loss_ax.set_ylabel("training loss"), loss_ax.set_title("Training loss", fontsize=8)
    for ax in (acc_ax, loss_ax):
        ax.legend(fontsize=6)
    return rep._save_with_note(fig, out / "training_curves.png", "; ".join(_desc(r) for r in runs))


def robust_vs_eps(runs: list[dict], out: Path) -> Path | None:
    sweeps = [(r, f, e) for r in runs for f, e in r["evals"] if len(e.points) > 1]
    if not sweeps:
        return None
    fig, ax = figure(figsize=(7, 4.5))
    notes = []
    for i, (r, f, e) in enumerate(sweeps):
        x = [255 * p.eps for p in e.points]
        tag = f"{r['name']}/{f}"
        err = (lambda vs: [v.std for v in vs]) if e.n_checkpoints > 1 else (lambda vs: None)
        clean = [p.clean for p in e.points]
        ax.errorbar(x, [100 * v.mean for v in clean], yerr=_pct(err(clean)), fmt=":", color="k", capsize=2,
                    label=f"{tag} clean")
        for a in e.points[0].robust:
            vals = [p.robust[a] for p in e.points]
            ax.errorbar(x, [100 * v.mean for v in vals], yerr=_pct(err(vals)), marker="o", capsize=2,
                        label=f"{tag} {a}")
        notes.append(f"{tag}: {e.data or '?'} ({e.split or 'test'}), {e.norm}, n={e.n}, seed={e.seed}"
                     + (f", mean ± std over {e.n_checkpoints} checkpoints" if e.n_checkpoints > 1 else ""))
    ax.set_xlabel("eps × 255"), ax.set_ylabel("accuracy (%)"), ax.set_ylim(0, 100)
    ax.set_title("Robust accuracy vs eps", fontsize=9)
    ax.legend(fontsize=6)
    return rep._save_with_note(fig, out / "robust_vs_eps.png", "; ".join(notes))


def _pct(stds):
    return None if stds is None else [100 * s for s in stds]


def conflict(runs: list[dict], out: Path) -> Path | None:
    keys = sorted({k for r in runs for m in r["metrics"] for k, v in m.items()
                   if k.startswith(("cos", "mu", "train_cos", "train_mu")) and isinstance(v, (int, float))})
    if not keys:
        return None
    fig, ax = figure(figsize=(7, 4.5))
    for i, r in enumerate(runs):
        for j, k in enumerate(keys):
            pts = [(m["epoch"], m[k]) for m in r["metrics"] if isinstance(m.get(k), (int, float))]
            if pts:
                ax.plot(*zip(*pts), ("-", "--", ":", "-.")[j % 4], color=f"C{i % 10}", marker=".",
                        label=f"{r['name']} {k}")
    ax.set_xlabel("epoch"), ax.set_ylabel("value (epoch mean)")
    ax.set_title("Gradient conflict over training: cos(g_clean, g_adv) and mu", fontsize=9)
    ax.legend(fontsize=6)
    return rep._save_with_note(fig, out / "conflict.png", "; ".join(_desc(r) for r in runs))


def pareto(rows: list[dict], out: Path) -> Path | None:
    fronts = rep.pareto_fronts(rows)
    if not fronts:
        return None
    fig, ax = figure(figsize=(6.5, 5.5))
    sa_all, ra_all = [], []
    for i, ((data, split, norm, eps, source), (pts, front)) in enumerate(fronts.items()):
        color = f"C{i % 10}"
        ax.scatter([100 * p[0] for p in pts], [100 * p[1] for p in pts], color=color)
        for sa, ra, row in pts:
            ax.annotate(f"{row['run']} ({row['method']})", (100 * sa, 100 * ra), fontsize=6)
        ax.plot([100 * f[0] for f in front], [100 * f[1] for f in front], "--", color=color,
                marker="." if len(front) == 1 else None,
                label=f"Pareto front: {data} ({split}), {norm} eps={eps}, RA = {source}")
        sa_all += [p[0] for p in pts]
        ra_all += [p[1] for p in pts]
    ax.set_xlim(*rep.percent_range(sa_all)), ax.set_ylim(*rep.percent_range(ra_all))
    ax.set_xlabel("clean accuracy (%)"), ax.set_ylabel("robust accuracy (%)")
    ax.set_title("Clean vs robust: one empirical Pareto front per (data, split, norm, eps, robustness source)",
                 fontsize=7)
    ax.legend(fontsize=6)
    note = "; ".join(f"{r['run']}: {r['model']}, {r['attack_setting']}, n={r['n']}, seed={r['seed']}, "
                     f"RA={r['ra_source']}" for _, (pts, _) in fronts.items() for _, _, r in pts)
    return rep._save_with_note(fig, out / "pareto.png", note)


def plots(runs: list[dict], rows: list[dict], out: Path) -> list[Path]:
    made = [training_curves(runs, out), robust_vs_eps(runs, out), conflict(runs, out), pareto(rows, out)]
    return [p for p in made if p is not None]


__all__ = ["plots"]

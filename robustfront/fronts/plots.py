"""Every figure of the report in one style: the fronts, the training curves, the gradient-conflict
curves and robust accuracy vs ε. Axes in percent, one colour per run or family (baselines grey), the
legend outside the axes, a short footer in its own strip, labels placed where they overprint nothing.

A figure is laid out first (constrained layout around the legend and the footer), then frozen, and
only then are point labels placed (fronts/layout.py), so that what the placement checked is what is
saved."""
from __future__ import annotations

import math
import re

from ..plotting import figure, footer
from . import layout
from .table import eps_with_decimal

BASELINES = ("vanilla", "weighted average", "pgd_at", "standard", "trades", "mart")  # drawn grey, dashed
GREEK = {"gamma": "γ", "lam": "λ", "lambda": "λ", "beta": "β", "alpha": "α", "eps": "ε", "tau": "τ", "mu": "μ"}
SPLIT_STYLE = {"train": ":", "val": "-", "epoch": "-"}
SPLIT_LABEL = {"train": "train (this epoch's batches)", "val": "val (held-out split)", "epoch": ""}


def colours(n: int) -> list:
    """Distinct colours for n runs: tab10, then tab20, then evenly spaced hues."""
    from matplotlib import colormaps
    if n <= 10:
        return [f"C{i}" for i in range(n)]
    cmap = colormaps["tab20" if n <= 20 else "turbo"]
    return [cmap(i / max(1, n - 1) if n > 20 else i) for i in range(n)]


def pretty_knob(knob: str) -> str:
    return re.sub(r"\b([A-Za-z_]+)=", lambda m: GREEK.get(m.group(1), m.group(1)) + "=", knob or "")


def _freeze(fig, note: str | None):
    """Reserve the footer's strip, run the layout once, and keep it."""
    bottom = footer(fig, note)
    fig.get_layout_engine().set(rect=(0, bottom, 1, 1 - bottom))  # (left, bottom, width, height)
    fig.canvas.draw()
    fig.set_layout_engine("none")


def _key_legend(fig, handles, labels, title=None):
    cols = 1 if len(labels) <= 18 else 2
    return fig.legend(handles, labels, loc="outside right upper", fontsize=6.5, title=title, title_fontsize=7,
                      ncols=cols, frameon=False)


# -- fronts ---------------------------------------------------------------------------------------------------

def _points(g: dict) -> list[dict]:
    """The group's averaged points, each drawn once: identical points of several families (λ=0 and γ=1 are
    both standard training) become one point with both labels."""
    out = []
    for fam, f in g["families"].items():
        for p in f["points"]:
            q = {"fams": [fam], "knobs": [pretty_knob(p["knob"]) or fam], "pareto": p["pareto"],
                 "x": 100 * p["clean"]["mean"], "y": 100 * p["robust"]["mean"],
                 "dx": 100 * p["clean"]["std"], "dy": 100 * p["robust"]["std"]}
            twin = next((o for o in out if all(math.isclose(o[k], q[k], abs_tol=1e-7) for k in ("x", "y", "dx", "dy"))), None)
            if twin is None:
                out.append(q)
            else:
                twin["fams"] += q["fams"]
                twin["knobs"] += [k for k in q["knobs"] if k not in twin["knobs"]]
                twin["pareto"] = twin["pareto"] or q["pareto"]
    return out


def _main_cluster(vals: list[float]) -> set[int]:
    """Indices of the values that matter: a minority beyond a gap three times the rest's spread is cut off."""
    idx = set(range(len(vals)))
    if len(vals) < 4:
        return idx
    order = sorted(idx, key=vals.__getitem__)
    gap, i = max((vals[order[j + 1]] - vals[order[j]], j) for j in range(len(order) - 1))
    lo, hi = order[:i + 1], order[i + 1:]
    main, other = (lo, hi) if len(lo) >= len(hi) else (hi, lo)
    spread = vals[main[-1]] - vals[main[0]]  # `order` is sorted, so main's ends are its extremes
    if len(other) <= max(1, len(vals) // 4) and gap > max(3 * abs(spread), 2.0):
        return set(main)
    return idx


def split_outliers(pts: list[dict]) -> tuple[list[dict], list[dict]]:
    keep = set(range(len(pts)))
    for axis in ("y", "x", "y"):
        ids = sorted(keep)
        inner = _main_cluster([pts[i][axis] for i in ids])
        keep = {ids[j] for j in inner}
    return [p for i, p in enumerate(pts) if i in keep], [p for i, p in enumerate(pts) if i not in keep]


def _limits(vals_lo, vals_hi, min_span: float = 2.0) -> tuple[float, float]:
    lo, hi = min(vals_lo), max(vals_hi)
    pad = max(0.4, 0.08 * (hi - lo))
    lo, hi = lo - pad, hi + pad
    if hi - lo < min_span:
        mid = (lo + hi) / 2
        lo, hi = mid - min_span / 2, mid + min_span / 2
    return max(-0.5, lo), min(100.5, hi)


def dominance_line(g: dict) -> str:
    """The answer to "does one front beat the other?" in a few words. A point both families share (the
    same run, such as standard training at λ = 0 and γ = 1) is left out: it cannot separate them."""
    if len(g["families"]) < 2:
        return ""
    coords = {f: {p["knob"]: (round(p["clean"]["mean"], 9), round(p["robust"]["mean"], 9)) for p in fam["points"]}
              for f, fam in g["families"].items()}
    beats, shared = [], set()
    for d in g["dominance"]:
        common = set(coords[d["a"]].values()) & set(coords[d["b"]].values())
        own = [p for p in d["points"] if coords[d["a"]][p["knob"]] not in common]
        shared |= {p["knob"] for p in d["points"] if coords[d["a"]][p["knob"]] in common}
        hit = sum(bool(p["dominated_beyond_noise_by"]) for p in own)
        if hit:
            beats.append(f"{d['b']} dominates {hit}/{len(own)} of {d['a']}'s points")
    aside = f" ({' = '.join(sorted(pretty_knob(k) for k in shared))}, shared, left aside)" if shared else ""
    one_seed = all(p["n_seeds"] == 1 for f in g["families"].values() for p in f["points"])
    noise = " (one seed: strictly better in both, no noise estimate)" if one_seed else " beyond the seed noise"
    return ("; ".join(beats) + noise if beats else "no front dominates the other" + noise) + aside


def front_note(g: dict) -> str:
    k = g["group"]
    seeds = sorted({p["n_seeds"] for f in g["families"].values() for p in f["points"]})
    return (f"{k['data']} ({k['split']}) · {k['model'] or '?'}, {k['schedule'] or '?'} · {k['norm']} "
            f"ε={eps_with_decimal(k['eps'])} · y: {g['robust_name']}, n={g['n']} · "
            + ("1 seed" if seeds == [1] else f"mean ± sample std over {'/'.join(map(str, seeds))} seeds"))


def draw_front(ax, g: dict) -> tuple[list, list, list]:
    """Draw one group's fronts on `ax`; returns (label items, marker data points, legend handles+labels)."""
    fams = list(g["families"])
    others = colours(sum(f not in BASELINES for f in fams))
    col = {}
    for f in fams:
        col[f] = "0.45" if f in BASELINES else others[len([c for c in col if c not in BASELINES])]
    pts = _points(g)
    inl, out = split_outliers(pts)
    ax.set_xlim(*_limits([p["x"] - p["dx"] for p in inl], [p["x"] + p["dx"] for p in inl]))
    ax.set_ylim(*_limits([p["y"] - p["dy"] for p in inl], [p["y"] + p["dy"] for p in inl]))
    handles = []
    for fam in fams:
        f = g["families"][fam]
        par = sorted((p for p in f["points"] if p["pareto"]), key=lambda p: p["clean"]["mean"])
        base = fam in BASELINES
        h, = ax.plot([100 * p["clean"]["mean"] for p in par], [100 * p["robust"]["mean"] for p in par],
                     "--" if base else "-", color=col[fam], lw=1.3, marker="o", ms=5, zorder=2)
        best = max(f["points"], key=lambda p: p["nrr"]["mean"])
        label = f"{fam}: HV {f['hypervolume']:.4f}" + (f", best NRR {pretty_knob(best['knob'])}" if best["knob"] else "")
        handles.append((h, label))
    for p in inl:
        c = col[p["fams"][0]] if len(p["fams"]) == 1 else "k"
        ax.errorbar([p["x"]], [p["y"]], xerr=[p["dx"]], yerr=[p["dy"]], fmt="o", color=c, ms=5, lw=0.7, capsize=2,
                    mfc=c if p["pareto"] else "white", zorder=3)
    x0, x1 = ax.get_xlim()
    y0, y1 = ax.get_ylim()
    edge = []
    for p in out:  # drawn at the edge, pointing where it lies, its numbers in the label
        mx, my = (x1 - x0) * 0.02, (y1 - y0) * 0.03
        ex, ey = min(max(p["x"], x0 + mx), x1 - mx), min(max(p["y"], y0 + my), y1 - my)
        over_y = (p["y"] - ey) / (y1 - y0)
        over_x = (p["x"] - ex) / (x1 - x0)
        marker = ("v" if over_y < 0 else "^") if abs(over_y) >= abs(over_x) else ("<" if over_x < 0 else ">")
        ax.plot([ex], [ey], marker=marker, ms=8, color=col[p["fams"][0]] if len(p["fams"]) == 1 else "k",
                mfc="white", ls="none", zorder=3)
        p["label"] = f"{' = '.join(p['knobs'])}: {p['x']:.1f} / {p['y']:.1f} (off axes)"
        edge.append({**p, "x": ex, "y": ey})
    for p in inl:
        p["label"] = " = ".join(p["knobs"])
    ordered = sorted(inl, key=lambda p: not p["pareto"]) + edge
    items = [(p["x"], p["y"], p["label"]) for p in ordered]
    ax.set_xlabel("clean accuracy (%)")
    ax.set_ylabel(f"{g['robust_name']} accuracy (%)")
    ax.grid(alpha=0.3)
    return items, [(p["x"], p["y"]) for p in inl + edge], handles


def fronts_figure(groups: list[dict], titles: list[str] | None = None):
    """One panel per group (fronts never share an axis); returns the figure, saved by the caller. A label
    that finds no free place becomes a number on the plot and an entry of the key beside it."""
    keyed: dict[tuple[int, str], int] = {}
    for attempt in range(2):
        fig, left = _fronts_once(groups, titles, keyed)
        if not left or attempt:
            return fig
        keyed = {k: j + 1 for j, k in enumerate(left)}
    return fig


def _fronts_once(groups, titles, keyed):
    from matplotlib.lines import Line2D
    n = len(groups)
    cols = min(n, 2)
    rows = math.ceil(n / cols)
    fig, axes = figure(rows, cols, figsize=(5.2 * cols + 2.6, 4.4 * rows + 0.6), layout="constrained", squeeze=False)
    drawn, legend = [], {}
    for i, (ax, g) in enumerate(zip(axes.flat, groups)):
        items, marks, handles = draw_front(ax, g)
        items = [(x, y, str(keyed[(i, t)]) if (i, t) in keyed else t) for x, y, t in items]
        drawn.append((i, ax, items, marks))
        for h, lab in handles:
            legend.setdefault(lab if n == 1 else f"{lab} ({i + 1})", h)
        head = (titles[i] + "\n") if titles else ""
        ax.set_title(head + "\n".join(_wrap(dominance_line(g), 62)), fontsize=8)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    blank = Line2D([], [], ls="none")
    extra = [Line2D([], [], ls="none", marker="o", mfc="white", color="0.3"), Line2D([], [], color="0.3", marker="|")]
    labels = [*legend, "hollow: dominated in its family", "bars: ±1 std over seeds"]
    if any(f in BASELINES for g in groups for f in g["families"]):
        extra.append(Line2D([], [], color="0.45", ls="--"))
        labels.append("grey, dashed: baseline")
    labels += [f"{j}: {t}" + (f" ({i + 1})" if n > 1 else "") for (i, t), j in keyed.items()]
    _key_legend(fig, [*legend.values(), *extra, *[blank] * len(keyed)], labels)
    _freeze(fig, front_note(groups[0]) if n == 1 else "; ".join(f"({i + 1}) {front_note(g)}" for i, g in enumerate(groups)))
    left = []
    for i, ax, items, marks in drawn:
        taken = layout.marker_boxes(ax, marks)
        left += [(i, t) for _, _, t in layout.place_labels(ax, items, taken)]
    return fig, left


def _wrap(text: str, width: int) -> list[str]:
    import textwrap
    return textwrap.wrap(text, width) if text else []


# -- curves over training -------------------------------------------------------------------------------------

CURVE_PANELS = (("clean accuracy (%)", {"train": "train_clean_acc", "val": "val_clean_acc"}, 100),
                ("robust accuracy (%)", {"train": "train_adv_acc", "val": "val_pgd_acc"}, 100),
                ("training loss", {"train": "train_loss"}, 1))
CONFLICT_PANELS = (("cos(g_clean, g_adv) (epoch mean)", {"epoch": "cos"}, 1),
                   ("μ = |g_c|·|g_a|·(1 − cos), the conflict", {"epoch": "mu"}, 1))


def _series(run: dict, key: str, scale: float):
    pts = [(m["epoch"], scale * m[key]) for m in run["metrics"] if isinstance(m.get(key), (int, float))]
    return list(zip(*pts)) if pts else None


def curves_figure(runs: list[dict], panels=CURVE_PANELS, title: str = ""):
    """One panel per metric, one colour per run, one line style per split; None when nothing to draw."""
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator
    panels = [p for p in panels if any(_series(r, k, 1) for r in runs for k in p[1].values())]
    runs = [r for r in runs if any(_series(r, k, 1) for p in panels for k in p[1].values())]
    if not panels:
        return None
    fig, axes = figure(1, len(panels), figsize=(3.6 * len(panels) + 2.4, 3.4 + 0.09 * max(0, len(runs) - 18)),
                       layout="constrained", squeeze=False)
    col = colours(len(runs))
    splits = set()
    for ax, (name, keys, scale) in zip(axes.flat, panels):
        for i, r in enumerate(runs):
            for split, key in keys.items():
                s = _series(r, key, scale)
                if s:
                    ax.plot(*s, SPLIT_STYLE[split], color=col[i], lw=1.1, marker="." if len(s[0]) < 12 else None, ms=3)
                    splits.add(split)
        ax.set_title(name, fontsize=8)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    handles = [Line2D([], [], color=col[i], lw=2) for i in range(len(runs))]
    labels = [r["name"] for r in runs]
    keyed = [s for s in sorted(splits, reverse=True) if SPLIT_LABEL[s]]
    handles += [Line2D([], [], color="0.2", ls=SPLIT_STYLE[s]) for s in keyed]
    labels += [SPLIT_LABEL[s] for s in keyed]
    _key_legend(fig, handles, labels, title)
    _freeze(fig, runs_note(runs))
    return fig


def runs_note(runs: list[dict]) -> str:
    """What the runs share, in a few words (the legend names the runs)."""
    def shared(key, fmt=str):
        vals = sorted({fmt(r["config"].get(key)) for r in runs if r["config"].get(key) is not None})
        return vals[0] if len(vals) == 1 else f"{len(vals)} {key}s" if vals else None
    parts = [shared("data"), shared("model"), (f"{shared('norm') or 'Linf'} ε={eps_with_decimal(r0)}"
             if (r0 := shared("eps")) and "s" not in r0.split()[-1] else None)]
    seeds = sorted({r["config"].get("seed", 0) for r in runs})
    parts.append(f"seed{'s' if len(seeds) > 1 else ''} {','.join(map(str, seeds))}")
    return " · ".join(p for p in parts if p)


def robust_vs_eps_figure(runs: list[dict]):
    """Accuracy vs ε·255 for every evaluation of several ε: one panel per attack, colour per evaluation."""
    from matplotlib.lines import Line2D
    evals = [(f"{r['name']}/{f}" if len(r["evals"]) > 1 else r["name"], e) for r in runs for f, e in r["evals"]
             if len(e.points) > 1]
    if not evals:
        return None
    attacks = ["clean"] + list(dict.fromkeys(a for _, e in evals for a in e.points[0].robust))
    fig, axes = figure(1, len(attacks), figsize=(3.2 * len(attacks) + 2.4, 3.4), layout="constrained", squeeze=False)
    col = colours(len(evals))
    for ax, a in zip(axes.flat, attacks):
        for i, (_, e) in enumerate(evals):
            vals = [(255 * p.eps, p.clean if a == "clean" else p.robust.get(a)) for p in e.points]
            vals = [(x, v) for x, v in vals if v is not None]
            if vals:
                ax.errorbar([x for x, _ in vals], [100 * v.mean for _, v in vals], capsize=2, marker="o", ms=3,
                            yerr=[100 * (v.std or 0) for _, v in vals], color=col[i], lw=1.1)
        ax.set_title(a, fontsize=8)
        ax.set_xlabel("ε × 255")
        ax.set_ylim(-2, 102)
        ax.grid(alpha=0.3)
    axes.flat[0].set_ylabel("accuracy (%)")
    _key_legend(fig, [Line2D([], [], color=c, lw=2) for c in col], [t for t, _ in evals],
                "bars: ±1 std over checkpoints")
    _freeze(fig, runs_note(runs))
    return fig


__all__ = ["curves_figure", "dominance_line", "draw_front", "front_note", "fronts_figure", "robust_vs_eps_figure",
           "split_outliers"]

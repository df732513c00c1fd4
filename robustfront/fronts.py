"""Accuracy–robustness fronts: per method family, the (clean, robust) points its trade-off knob reaches,
as mean ± std over seeds, the Pareto-optimal ones joined, the area they dominate, and which points of
one front another dominates beyond the seed noise.

A *result* (one evaluated run) is a dict:

    family     method family ("ca_at")              knob        the knob setting's label ("gamma=0.8"; "" for none)
    seed       training seed                        clean, robust   accuracies in [0, 1]; robust is the front's
    data, split, norm, eps, protocol                             y axis (AutoAttack when evaluated)
    model, schedule                                 what was trained and for how long
    optional:  pgd, aa (accuracies), n (images), robust_name ("AutoAttack"), knob_value (orders the table), run

Results are grouped by (data, split, norm, ε, protocol, model, schedule): a front never mixes data
sets, budgets, norms, evaluation protocols, models or schedules. Within a group, the results of one
(family, knob) are averaged over seeds: mean and sample std (ddof = 1; 0 for one seed) in each axis.

Definitions (means m, stds s; both axes higher is better):
- Pareto-optimal: no other point of the same family is >= in both coordinates and > in one.
- hypervolume: the area of the union of the boxes [ref_c, c] x [ref_r, r] over the family's means
  (exact in 2-D; default ref (0, 0), so it is the area the front dominates in accuracy space).
- dominance of point a (front A) by point b (front B): plain when b >= a in both means and > in one;
  *beyond the seed noise* when b - a > k * sqrt(s_a^2 + s_b^2) in BOTH coordinates (k = 1 by default:
  the combined seed-to-seed spread, a margin rather than a significance test).
"""
from __future__ import annotations

import csv
import math
import re
from pathlib import Path

REQUIRED = ("family", "knob", "seed", "clean", "robust", "data", "norm", "eps", "protocol")
DEFAULTS = {"split": "test", "model": "", "schedule": "", "pgd": None, "aa": None, "n": None, "robust_name": "robust",
            "knob_value": None, "run": None}
GROUP_KEYS = ("data", "split", "norm", "eps", "protocol", "model", "schedule")
AXES = ("clean", "robust", "pgd", "aa", "mean", "nrr")


def check_results(results) -> list[dict]:
    """Results with defaults filled in; a missing key or an accuracy outside [0, 1] is one ValueError line."""
    out = []
    for i, r in enumerate(results):
        missing = [k for k in REQUIRED if k not in r]
        if missing:
            raise ValueError(f"result {i} lacks {missing}; allowed: dicts with {', '.join(REQUIRED)}")
        for k in ("clean", "robust", "pgd", "aa"):
            v = r.get(k)
            if v is not None and not (isinstance(v, (int, float)) and 0.0 <= v <= 1.0):
                raise ValueError(f"result {i}: {k}={v!r} is not an accuracy; allowed: a number in [0, 1]")
        out.append({**DEFAULTS, **r, "eps": float(r["eps"])})
    return out


_PGD = re.compile(r"pgd([1-9][0-9]*)(?:x([1-9][0-9]*))?")
AA_NAMES = {"autoattack": "AutoAttack", "autoattack_plus": "AutoAttack+"}


def results_from_eval(ev: dict, cfg: dict, *, knob: str = "", knob_value=None, family: str | None = None,
                      run: str | None = None) -> list[dict]:
    """Results from one `robustfront eval` / sweep eval.json and the run's config (one per evaluated ε).

    robust = AutoAttack (plus, else standard) when evaluated, else the worst case over the attacks;
    pgd = the strongest pgdK attack; protocol = attacks, n and seed; model = name (model_args);
    schedule = "E epochs SCHEDULE"."""
    args = cfg.get("model_args") or {}
    model = cfg.get("model", "?") + (" (" + ", ".join(f"{k}={v}" for k, v in sorted(args.items())) + ")" if args else "")
    out = []
    for e in ev.get("sweep", [ev]):
        ra = {a.replace("-", "_"): v for a, v in e["robust_acc"].items()}  # older files: "autoattack-plus"
        aa = next((a for a in ("autoattack_plus", "autoattack") if a in ra), None)
        pgd = max(((int(m.group(1)), int(m.group(2) or 1), a) for a in ra if (m := _PGD.fullmatch(a))), default=None)
        name = AA_NAMES[aa] if aa else next(iter(ra)) if len(ra) == 1 else "worst case of " + "+".join(ra)
        out.append({"family": family or cfg.get("method"), "knob": knob, "knob_value": knob_value,
                    "seed": cfg.get("seed", 0), "clean": e["clean_acc"], "robust": ra[aa] if aa else e["worst_case_acc"],
                    "robust_name": name, "pgd": ra[pgd[2]] if pgd else None, "aa": ra[aa] if aa else None,
                    "data": ev.get("data", cfg.get("data")), "split": ev.get("split", "test"), "norm": e["norm"],
                    "eps": float(e["eps"]), "n": e["n"], "protocol": f"attacks={'+'.join(ra)};n={e['n']};seed={e['seed']}",
                    "model": model, "schedule": f"{cfg.get('epochs')} epochs {cfg.get('schedule')}", "run": run})
    return out


def group_key(r: dict) -> tuple:
    return tuple(round(r[k], 9) if k == "eps" else r[k] for k in GROUP_KEYS)


def group_results(results) -> dict[tuple, list[dict]]:
    """Results by (data, split, norm, ε, protocol, model, schedule), groups in sorted order."""
    groups: dict[tuple, list[dict]] = {}
    for r in check_results(results):
        groups.setdefault(group_key(r), []).append(r)
    return {k: groups[k] for k in sorted(groups, key=lambda t: tuple(map(str, t)))}


def mean_std(values: list[float]) -> dict:
    m = sum(values) / len(values)
    s = math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return {"mean": m, "std": s}


def _mean_nrr(sa: float, ra: float) -> tuple[float, float]:
    # docs/EVALUATION.md: Mean = (SA + RA)/2, NRR = 2·SA·RA/(SA + RA), per seed, then averaged
    return (sa + ra) / 2, (2 * sa * ra / (sa + ra) if sa + ra > 0 else 0.0)


def summarize(results) -> list[dict]:
    """Mean ± std over seeds per (family, knob) of ONE group; results spanning groups are refused."""
    results = check_results(results)
    keys = {group_key(r) for r in results}
    if len(keys) > 1:
        raise ValueError(f"results span {len(keys)} groups (data, split, norm, eps, protocol, model, schedule); "
                         f"allowed: one group (use group_results first)")
    cells: dict[tuple, list[dict]] = {}
    for r in results:
        cells.setdefault((r["family"], r["knob"]), []).append(r)
    out = []
    for (family, knob), rs in cells.items():
        seeds = [r["seed"] for r in rs]
        if len(set(seeds)) < len(seeds):
            raise ValueError(f"family {family!r} knob {knob!r} has seed(s) {sorted({s for s in seeds if seeds.count(s) > 1})} "
                             f"twice; allowed: one result per seed")
        p = {"family": family, "knob": knob, "knob_value": rs[0]["knob_value"], "seeds": sorted(seeds),
             "n_seeds": len(rs), "n": rs[0]["n"], "runs": [r["run"] for r in rs]}
        for ax in ("clean", "robust", "pgd", "aa"):
            vals = [r[ax] for r in rs if r[ax] is not None]
            p[ax] = mean_std(vals) if len(vals) == len(rs) else None
        mn = [_mean_nrr(r["clean"], r["aa"] if r["aa"] is not None else r["robust"]) for r in rs]
        p["mean"], p["nrr"] = mean_std([m for m, _ in mn]), mean_std([n for _, n in mn])
        out.append(p)
    return sorted(out, key=lambda p: (p["family"], p["knob_value"] is None, p["knob_value"] or 0, p["knob"]))


def pareto_mask(points: list[tuple[float, float]]) -> list[bool]:
    """True for the points no other point weakly dominates (>= in both, > in one); higher is better."""
    return [not any(q[0] >= p[0] and q[1] >= p[1] and (q[0] > p[0] or q[1] > p[1]) for q in points) for p in points]


def hypervolume(points: list[tuple[float, float]], ref: tuple[float, float] = (0.0, 0.0)) -> float:
    """Exact 2-D dominated area: the union of boxes [ref, p] (points not beyond ref in both add nothing)."""
    area, top = 0.0, ref[1]
    for c, r in sorted((p for p in points if p[0] > ref[0] and p[1] > ref[1]), key=lambda p: (-p[0], -p[1])):
        if r > top:  # widest boxes first: each adds the strip above the highest one so far
            area += (c - ref[0]) * (r - top)
            top = r
    return area


def _beats(b: dict, a: dict, k: float) -> tuple[bool, bool]:
    bc, br, ac, ar = b["clean"]["mean"], b["robust"]["mean"], a["clean"]["mean"], a["robust"]["mean"]
    plain = bc >= ac and br >= ar and (bc > ac or br > ar)
    noise_c = k * math.hypot(a["clean"]["std"], b["clean"]["std"])
    noise_r = k * math.hypot(a["robust"]["std"], b["robust"]["std"])
    return plain, (bc - ac > noise_c and br - ar > noise_r)


def dominance(front_a: list[dict], front_b: list[dict], *, k: float = 1.0) -> dict:
    """Which points of A (summaries of one family) are dominated by B's, plainly and beyond the seed noise."""
    rows = []
    for a in front_a:
        plain = [b["knob"] for b in front_b if _beats(b, a, k)[0]]
        noisy = [b["knob"] for b in front_b if _beats(b, a, k)[1]]
        rows.append({"knob": a["knob"], "dominated_by": plain, "dominated_beyond_noise_by": noisy})
    return {"a": front_a[0]["family"] if front_a else None, "b": front_b[0]["family"] if front_b else None, "k": k,
            "n": len(front_a), "n_dominated": sum(bool(r["dominated_by"]) for r in rows),
            "n_dominated_beyond_noise": sum(bool(r["dominated_beyond_noise_by"]) for r in rows), "points": rows}


def analyze(results, *, ref: tuple[float, float] = (0.0, 0.0), k: float = 1.0) -> list[dict]:
    """One entry per group: its key, each family's averaged points with Pareto flags and hypervolume,
    and the dominance summary of every ordered pair of families."""
    out = []
    for rs in group_results(results).values():
        fams: dict[str, dict] = {}
        for p in summarize(rs):
            fams.setdefault(p["family"], {"points": []})["points"].append(p)
        for f in fams.values():
            means = [(p["clean"]["mean"], p["robust"]["mean"]) for p in f["points"]]
            for p, on in zip(f["points"], pareto_mask(means)):
                p["pareto"] = on
            f["pareto"] = [p["knob"] for p in sorted(f["points"], key=lambda p: p["clean"]["mean"]) if p["pareto"]]
            f["hypervolume"] = hypervolume(means, ref)
        pairs = [dominance(fams[a]["points"], fams[b]["points"], k=k) for a in fams for b in fams if a != b]
        out.append({"group": {k: rs[0][k] for k in GROUP_KEYS}, "robust_name": rs[0]["robust_name"], "reference": list(ref),
                    "n": rs[0]["n"], "seeds": sorted({r["seed"] for r in rs}), "families": fams, "dominance": pairs})
    return out


def fmt_eps(v: float) -> str:
    k = round(v * 255)
    return (str(k // 255) if k % 255 == 0 else f"{k}/255") if abs(v - k / 255) <= 1e-6 else f"{v:.4g}"


def _pm(ms: dict | None, pct: bool = True) -> str:
    if ms is None:
        return "–"
    f = 100 if pct else 1
    return f"{f * ms['mean']:.1f} ± {f * ms['std']:.1f}"


def note(g: dict) -> str:
    k = g["group"]
    seeds = sorted({p["n_seeds"] for f in g["families"].values() for p in f["points"]})
    return (f"{k['data']} ({k['split']}), model {k['model'] or '?'}, {k['schedule'] or '?'}; {k['norm']} ε={fmt_eps(k['eps'])}, "
            f"y: {g['robust_name']} ({k['protocol']}), n={g['n']}; mean ± sample std over "
            f"{'/'.join(map(str, seeds))} seed(s); hypervolume ref {tuple(g['reference'])}")


def plot_front(g: dict, path: str | Path) -> Path:
    """PNG of one group: each family its colour, error bars in both axes, the Pareto points joined."""
    from .plotting import figure, save
    fig, ax = figure(figsize=(7, 5))
    colours = [f"C{i}" for i in range(10)]
    xs, ys = [], []
    for i, (fam, f) in enumerate(g["families"].items()):
        col, pts = colours[i % 10], sorted(f["points"], key=lambda p: p["clean"]["mean"])
        for p in pts:
            x, y = 100 * p["clean"]["mean"], 100 * p["robust"]["mean"]
            dx, dy = 100 * p["clean"]["std"], 100 * p["robust"]["std"]
            ax.errorbar([x], [y], xerr=[dx], yerr=[dy], fmt="o", color=col, capsize=2, ms=5, lw=0.8,
                        mfc=col if p["pareto"] else "white")
            if p["knob"]:
                ax.annotate(p["knob"], (x, y), textcoords="offset points", xytext=(4, 3), fontsize=6, color=col)
            xs += [x - dx, x + dx]
            ys += [y - dy, y + dy]
        par = [p for p in pts if p["pareto"]]
        ax.plot([100 * p["clean"]["mean"] for p in par], [100 * p["robust"]["mean"] for p in par], "-", color=col,
                lw=1.2, label=f"{fam} (HV {f['hypervolume']:.4f})")
    for lim, vals in ((ax.set_xlim, xs), (ax.set_ylim, ys)):
        lo, hi = min(vals), max(vals)
        pad = max(1.0, 0.08 * (hi - lo))
        lim(max(0.0, lo - pad), min(100.0, hi + pad))
    ax.set_xlabel("clean accuracy (%)")
    ax.set_ylabel(f"{g['robust_name']} accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, title="family (hollow: not Pareto-optimal)", title_fontsize=7)
    return save(fig, path, note(g))


TABLE = ("family", "knob", "clean", "PGD", "AA", "Mean", "NRR", "seeds", "n", "ε", "data", "model", "schedule")


def table_rows(analyses: list[dict]) -> list[dict]:
    rows = []
    for g in analyses:
        k = g["group"]
        for fam, f in g["families"].items():
            for p in f["points"]:
                rows.append({"family": fam, "knob": p["knob"], "clean": p["clean"], "robust": p["robust"],
                             "PGD": p["pgd"], "AA": p["aa"],
                             "Mean": p["mean"], "NRR": p["nrr"], "seeds": p["n_seeds"], "n": p["n"],
                             "ε": fmt_eps(k["eps"]), "data": f"{k['data']} ({k['split']})", "model": k["model"],
                             "schedule": k["schedule"], "pareto": p["pareto"], "norm": k["norm"], "protocol": k["protocol"]})
    return rows


def format_table(analyses: list[dict]) -> str:
    """Markdown: accuracies in % as mean ± std over seeds; Mean and NRR use AA (else the front's robust axis)."""
    rows = table_rows(analyses)
    cell = lambda r, c: _pm(r[c]) if c in ("clean", "PGD", "AA", "Mean", "NRR") else str(r[c] if r[c] is not None else "–")
    lines = ["| " + " | ".join(TABLE) + " |", "|" + "---|" * len(TABLE)]
    return "\n".join(lines + ["| " + " | ".join(cell(r, c) for c in TABLE) + " |" for r in rows]) + "\n"


def write_table(analyses: list[dict], md_path: str | Path | None, csv_path: str | Path | None) -> list[Path]:
    """The Markdown table and/or the CSV (fractions, a *_std column beside each; `robust` is the y axis)."""
    from .checkpoint import write_text_atomic
    files = []
    if md_path is not None:
        files.append(write_text_atomic(md_path, format_table(analyses)))
    if csv_path is not None:
        cols = ["family", "knob", "seeds", "n", "ε", "norm", "data", "model", "schedule", "protocol", "pareto"]
        acc = ("clean", "robust", "PGD", "AA", "Mean", "NRR")
        lines = [cols + [f"{a}{s}" for a in acc for s in ("", "_std")]]
        for r in table_rows(analyses):
            lines.append([r[c] for c in cols] + [v for a in acc for v in ((r[a]["mean"], r[a]["std"]) if r[a] else ("", ""))])
        import io
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows(lines)
        files.append(write_text_atomic(csv_path, buf.getvalue()))
    return files


def _slug(g: dict, i: int) -> str:
    import re
    k = g["group"]
    text = f"{i:02d}_{k['data']}_{k['split']}_{k['model']}_{k['norm']}_eps{fmt_eps(k['eps'])}"
    return re.sub(r"[^A-Za-z0-9._+-]", "_", text)


def write_fronts(results, out_dir: str | Path, *, ref: tuple[float, float] = (0.0, 0.0), k: float = 1.0) -> list[Path]:
    """Per group front_NN_*.png with its data (.json, .csv), and fronts.md / fronts.csv tables; returns the paths."""
    from .checkpoint import write_json_atomic
    out = Path(out_dir)
    analyses, files = analyze(results, ref=ref, k=k), []
    for i, g in enumerate(analyses):
        stem = out / f"front_{_slug(g, i)}"
        files.append(plot_front(g, stem.with_suffix(".png")))
        files.append(write_json_atomic(stem.with_suffix(".json"), {**g, "note": note(g)}))
        files += write_table([g], None, stem.with_suffix(".csv"))
    files += write_table(analyses, out / "fronts.md", out / "fronts.csv")
    return files


__all__ = [
    "analyze",
    "check_results",
    "dominance",
    "format_table",
    "group_results",
    "hypervolume",
    "mean_std",
    "pareto_mask",
    "plot_front",
    "results_from_eval",
    "summarize",
    "table_rows",
    "write_fronts",
    "write_table",
]

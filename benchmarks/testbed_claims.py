"""The CPU testbed study's evidence (issue 18, docs/evidence.md): collect every evaluated point of the four
testbed sweeps, average over seeds, judge each paper's claim against the seed noise, draw the main figure.

    python benchmarks/testbed_claims.py runs/testbed --out benchmarks/results/testbed --figures docs/figures/testbed

Reads OUT/<sweep>/points/<point>/{eval.json,status.json,metrics.jsonl} (points without eval.json are
listed as missing, never guessed) and writes points.csv (one row per trained run and seed), summary.json
(per configuration: mean ± sample std over seeds of clean, PGD-20 and AutoAttack accuracy), claims.json/.md
(the verdicts with their numbers), calibration.md (OUT/calibration: one knob larger at a time, beside the
chosen setting's standard and PGD-AT rows) and the figures.

Verdict rule, the same for every claim: a difference d between two configurations is taken per seed (the
same seed trains both from the same initialisation and batches) and averaged; its noise is the standard
error over seeds, se = std(d)/sqrt(#seeds). "beyond the seed noise" means a two-sided paired t-test at 5 %:
|mean d| > t(0.975, #seeds - 1)·se (4.30·se with 3 seeds, 12.7·se with 2). A claim *holds*
when each difference it names is beyond the noise in the claimed direction; *does not hold* when one is
beyond the noise in the opposite direction; otherwise it is *inconclusive at this scale*.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
from pathlib import Path

SWEEPS = ("ca_at_front", "trades_front", "agr", "raat")
KNOBS = ("lam", "gamma", "beta")


def _load(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def label(method: str, varied: dict) -> str:
    knob = [f"{k.split('.')[-1]}={v}" for k, v in varied.items() if k.split(".")[-1] in KNOBS]
    return method + (f" ({', '.join(knob)})" if knob else "")


def collect(root: Path) -> tuple[list[dict], list[str]]:
    rows, missing = [], []
    for sweep in SWEEPS:
        for point in sorted((root / sweep / "points").glob("*")) if (root / sweep / "points").is_dir() else []:
            meta, ev, st = _load(point / "point.json"), _load(point / "eval.json"), _load(point / "status.json")
            if not meta or not ev or not ev.get("complete", True):
                missing.append(f"{sweep}/{point.name}")
                continue
            cfg = meta["config"]
            varied = {k: v for k, v in meta["varied"].items() if k != "seed"}
            ra = ev["robust_acc"]
            rows.append({"sweep": sweep, "point": point.name, "method": cfg["method"],
                         "config": label(cfg["method"], varied), "seed": cfg["seed"],
                         "clean": ev["clean_acc"], "pgd20": ra.get("pgd20"), "aa": ra.get("autoattack"),
                         "n": ev["n"], "eps": ev.get("eps_str", ev["eps"]),
                         "train_wall_s": (st or {}).get("train_wall_s"), "eval_wall_s": (st or {}).get("eval_wall_s"),
                         "aa_s": ev.get("time_s", {}).get("autoattack"), "threads": (st or {}).get("threads"),
                         "diag": diagnostics(point / "metrics.jsonl")})
    return rows, missing


def diagnostics(path: Path) -> dict:
    """Per-epoch gradient-conflict diagnostics the run logged (CA-AT: cos, mu, projected_frac; AGR: GOP rate)."""
    out: dict = {}
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        try:
            r = json.loads(line)
        except ValueError:
            continue
        if "epoch" not in r:
            continue
        for k in ("cos", "mu", "projected_frac", "gop_freq", "neg_frac", "cos_mean"):
            if isinstance(r.get(k), (int, float)):
                out.setdefault(k, []).append(r[k])
    return out


def mean_std(v: list[float]) -> tuple[float, float]:
    m = sum(v) / len(v)
    s = math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else 0.0
    return m, s


def summarize(rows: list[dict]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for r in rows:
        out.setdefault(r["config"], {"method": r["method"], "seeds": {}})["seeds"][r["seed"]] = r
    for c, s in out.items():
        for k in ("clean", "pgd20", "aa"):
            vals = [r[k] for r in s["seeds"].values() if r[k] is not None]
            s[k] = mean_std(vals) if vals else None
        s["n_seeds"] = len(s["seeds"])
    return out


def paired(summary: dict, a: str, b: str, key: str, fn=None) -> dict | None:
    """Mean ± standard error over seeds of fn(b, seed) - fn(a, seed) (default: the accuracy `key`)."""
    if a not in summary or b not in summary:
        return None
    seeds = sorted(set(summary[a]["seeds"]) & set(summary[b]["seeds"]))
    if not seeds:
        return None
    d = [summary[b]["seeds"][s][key] - summary[a]["seeds"][s][key] for s in seeds]
    m, sd = mean_std(d)
    return {"mean": m, "se": sd / math.sqrt(len(d)), "n_seeds": len(d), "per_seed": d}


T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


def beyond(d: dict | None) -> int:
    """+1 / -1 when the paired difference passes a two-sided 5 % t-test, 0 otherwise (or unknown)."""
    if d is None or d["n_seeds"] < 2:
        return 0
    t = T975.get(d["n_seeds"] - 1, 1.96) * d["se"]
    if d["mean"] > t:
        return 1
    return -1 if d["mean"] < -t else 0


def front_gap(summary: dict, configs: list[str], baseline: list[str]) -> dict | None:
    """Per seed: mean over `configs` of AA minus the baseline front's AA at the same clean accuracy (linear
    interpolation between the baseline's points of that seed; outside their clean range the nearest end,
    which favours no one). Averaged over seeds with its standard error."""
    seeds = set.intersection(*(set(summary[c]["seeds"]) for c in configs + baseline if c in summary)) \
        if all(c in summary for c in configs + baseline) else set()
    if not seeds:
        return None
    per_seed = []
    for s in sorted(seeds):
        base = sorted((summary[c]["seeds"][s]["clean"], summary[c]["seeds"][s]["aa"]) for c in baseline)
        gaps = [summary[c]["seeds"][s]["aa"] - interp(base, summary[c]["seeds"][s]["clean"]) for c in configs]
        per_seed.append(sum(gaps) / len(gaps))
    m, sd = mean_std(per_seed)
    return {"mean": m, "se": sd / math.sqrt(len(per_seed)), "n_seeds": len(per_seed), "per_seed": per_seed}


def hypervolume(pts: list[tuple[float, float]]) -> float:
    """Area dominated by the points (clean, AA) above the reference (0, 0): the union of their boxes."""
    area, best = 0.0, 0.0
    for c, r in sorted(pts, reverse=True):  # sweep from the largest clean accuracy leftwards
        if r > best:
            area += c * (r - best)
            best = r
    return area


def paired_hv(summary: dict, a: list[str], b: list[str]) -> dict | None:
    """Mean ± standard error over seeds of hypervolume(b's points) - hypervolume(a's points)."""
    if not all(c in summary for c in a + b):
        return None
    seeds = sorted(set.intersection(*(set(summary[c]["seeds"]) for c in a + b)))
    if not seeds:
        return None
    pts = lambda fam, s: [(summary[c]["seeds"][s]["clean"], summary[c]["seeds"][s]["aa"]) for c in fam]  # noqa: E731
    d = [hypervolume(pts(b, s)) - hypervolume(pts(a, s)) for s in seeds]
    m, sd = mean_std(d)
    return {"mean": m, "se": sd / math.sqrt(len(d)), "n_seeds": len(d), "per_seed": d}


def interp(pts: list[tuple[float, float]], x: float) -> float:
    """The upper envelope's AA at clean accuracy x: the best AA among baseline points with clean >= x,
    so a baseline point to the right and above counts (Pareto dominance), else linear between neighbours."""
    right = [y for c, y in pts if c >= x]
    if not right:
        return max(pts)[1]
    best_right = max(right)
    lo = [p for p in pts if p[0] <= x]
    hi = [p for p in pts if p[0] >= x]
    if lo and hi:
        (x0, y0), (x1, y1) = max(lo), min(hi)
        lin = y0 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0)
        return max(lin, best_right)
    return best_right


def verdict(parts: list[tuple[dict | None, int]]) -> str:
    """parts: (paired difference, claimed sign); see the module docstring."""
    if any(d is None for d, _ in parts):
        return "not run"
    if any(d["n_seeds"] < 2 for d, _ in parts):
        return "one seed so far: no noise estimate"
    signs = [beyond(d) * want for d, want in parts]
    if any(s < 0 for s in signs):
        return "does not hold"
    return "holds" if all(s > 0 for s in signs) else "inconclusive at this scale"


def pp(d: dict | None) -> str:
    return "n/a" if d is None else f"{100 * d['mean']:+.1f} ± {100 * d['se']:.1f}"


def claims(summary: dict) -> list[dict]:
    weighted = [c for c in ("standard", "vanilla (lam=0.25)", "vanilla (lam=0.5)", "vanilla (lam=0.75)", "pgd_at")]
    gammas = [c for c in summary if c.startswith("ca_at (gamma=")]
    trades = [c for c in summary if c.startswith("trades (beta=")]
    out = []
    gap = front_gap(summary, gammas, weighted) if gammas else None
    out.append({"claim": "CA-AT (Fig. 4a): the gamma front lies above the weighted average's lambda front",
                "test": "AA of CA-AT's gamma points minus the weighted front's AA at the same clean accuracy, "
                        "mean over gamma", "differences": {"AA gap": pp(gap)}, "verdict": verdict([(gap, +1)])})
    for g in sorted(gammas):
        d = front_gap(summary, [g], weighted)
        out.append({"claim": f"  {g} vs the weighted front", "test": "AA gap at equal clean accuracy",
                    "differences": {"AA gap": pp(d)}, "verdict": verdict([(d, +1)])})
    for base, agr in (("pgd_at", "agr"), ("trades (beta=6)", "agr_trades")):
        dc, da = paired(summary, base, agr, "clean"), paired(summary, base, agr, "aa")
        out.append({"claim": f"AGR (Table 1): {agr} has more clean accuracy than {base} at equal or better AA",
                    "test": "paired by seed", "differences": {"clean": pp(dc), "AA": pp(da)},
                    "verdict": verdict([(dc, +1)]) if beyond(da) >= 0 else "does not hold"})
    for new in ("raat", "raat_pp"):
        for base in ("pgd_at", "trades (beta=6)", "mart", "cons_at"):
            dc, da = paired(summary, base, new, "clean"), paired(summary, base, new, "aa")
            out.append({"claim": f"RAAT (Table 1): {new} above {base} on both axes", "test": "paired by seed",
                        "differences": {"clean": pp(dc), "AA": pp(da)}, "verdict": verdict([(dc, +1), (da, +1)])})
    hv = paired_hv(summary, weighted, gammas) if gammas else None
    out.append({"claim": "CA-AT (Fig. 4a), by area: the gamma front's hypervolume exceeds the weighted front's",
                "test": "per seed: hypervolume (reference (0, 0), clean x AA) of the 5 gamma points minus that of "
                        "the 5 lambda points (standard and PGD-AT its ends)",
                "differences": {"hypervolume (x100)": pp(hv)}, "verdict": verdict([(hv, +1)])})
    if trades:
        fams = (("CA-AT", gammas), ("AT + AGR", ["agr"]), ("TRADES + AGR", ["agr_trades"]), ("RAAT", ["raat"]),
                ("RAAT++", ["raat_pp"]), ("MART", ["mart"]), ("Cons-AT", ["cons_at"]))
        for name, fam in fams:
            fam = [c for c in fam if c in summary]
            d = front_gap(summary, fam, weighted + trades) if fam else None
            out.append({"claim": f"{name} against the baseline front (weighted average and TRADES beta)",
                        "test": "AA gap at equal clean accuracy to the union front, mean over the family",
                        "differences": {"AA gap": pp(d)}, "verdict": verdict([(d, +1)])})
    return out


def write(rows, missing, summary, cl, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    cols = ["sweep", "point", "method", "config", "seed", "clean", "pgd20", "aa", "n", "eps", "train_wall_s",
            "eval_wall_s", "aa_s", "threads"]
    with open(out / "points.csv", "w", newline="") as f:
        w = csv.DictWriter(f, cols, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    json.dump({"machine": machine(), "missing": missing,
               "configs": {c: {k: v for k, v in s.items() if k != "seeds"} | {"seeds": sorted(s["seeds"])}
                           for c, s in summary.items()},
               "diagnostics": {r["point"]: r["diag"] for r in rows if r["diag"]}},
              open(out / "summary.json", "w"), indent=1)
    json.dump(cl, open(out / "claims.json", "w"), indent=1)
    lines = ["| configuration | seeds | clean | PGD-20 | AutoAttack |", "|---|---:|---:|---:|---:|"]
    for c, s in sorted(summary.items(), key=lambda kv: -kv[1]["clean"][0]):
        f = lambda v: "n/a" if v is None else f"{100 * v[0]:.1f} ± {100 * v[1]:.1f}"
        lines.append(f"| {c} | {s['n_seeds']} | {f(s['clean'])} | {f(s['pgd20'])} | {f(s['aa'])} |")
    lines += ["", "| claim | differences (points, mean ± s.e. over seeds) | verdict |", "|---|---|---|"]
    for c in cl:
        lines.append(f"| {c['claim']} | {'; '.join(f'{k} {v}' for k, v in c['differences'].items())} | "
                     f"{c['verdict']} |")
    if missing:
        lines += ["", "Not evaluated yet: " + ", ".join(missing)]
    (out / "claims.md").write_text("\n".join(lines) + "\n")


CAL_KNOBS = ("resize", "width", "epochs", "train_n", "attack_steps")
CHOSEN = {"resize": 16, "width": 16, "epochs": 10, "train_n": 10000, "attack_steps": 5}


def calibration(root: Path, summary: dict, out: Path) -> None:
    """calibration.md: per setting (the chosen one, then each knob made larger) standard training and PGD-AT:
    clean, PGD-20, AutoAttack, the clean gap, AA gain, and the wall time of PGD-AT's training and AA."""
    runs: dict[tuple, dict] = {}
    folder = root / "calibration" / "points"
    for point in sorted(folder.glob("*")) if folder.is_dir() else []:
        meta, ev, st = _load(point / "point.json"), _load(point / "eval.json"), _load(point / "status.json")
        if not meta or not ev or not ev.get("complete", True):
            continue
        v = {k.split(".")[-1]: x for k, x in meta["varied"].items()}  # model_args.width -> width
        knob = tuple((k, v[k]) for k in CAL_KNOBS if k in v and v[k] != CHOSEN[k])
        runs.setdefault(knob, {})[v["method"]] = {
            "clean": (ev["clean_acc"], None), "pgd20": (ev["robust_acc"].get("pgd20"), None),
            "aa": (ev["robust_acc"].get("autoattack"), None), "n_seeds": 1,
            "train_s": (st or {}).get("train_wall_s"), "aa_s": ev.get("time_s", {}).get("autoattack")}
    if not runs:
        return
    chosen = {m: summary[m] for m in ("standard", "pgd_at") if m in summary}  # times: see the note below
    lines = ["| setting | seeds | standard clean | PGD-AT clean | clean gap | standard AA | PGD-AT AA | AA gain | "
             "PGD-AT PGD-20 | PGD-AT train s | PGD-AT AA s |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    pct = lambda v: "n/a" if v is None or v[0] is None else (f"{100 * v[0]:.1f}" + (
        f" ± {100 * v[1]:.1f}" if v[1] is not None else ""))  # noqa: E731
    sec = lambda v: "n/a" if v is None else f"{v:.0f}"  # noqa: E731
    rows = [("chosen: 16 px, width 16, 10 epochs, 10 000 images, PGD-5", chosen, None)]
    rows += [(", ".join(f"{k} {v}" for k, v in knob), runs[knob], runs[knob]) for knob in sorted(runs) if knob]
    for name, r, raw in rows:
        s, a = r.get("standard"), r.get("pgd_at")
        gap = lambda k: "n/a" if not (s and a) or s[k][0] is None or a[k][0] is None else \
            f"{100 * (a[k][0] - s[k][0]):+.1f}"  # noqa: E731
        seeds = min((x["n_seeds"] for x in (s, a) if x), default=0)
        lines.append(f"| {name} | {seeds} | {pct(s and s['clean'])} | {pct(a and a['clean'])} | {gap('clean')} | "
                     f"{pct(s and s['aa'])} | {pct(a and a['aa'])} | {gap('aa')} | {pct(a and a['pgd20'])} | "
                     f"{sec(a and a.get('train_s'))} | {sec(a and a.get('aa_s'))} |")
    lines.append("")
    lines.append("Times: wall seconds of PGD-AT's training and AutoAttack in the calibration sweep (one thread per point, "
                 "two points at a time, all rows in one sweep at one load, so they compare with each other); the chosen "
                 "setting's own times are in idle_timing.json (the idle machine) and points.csv (the study, at other "
                 "loads).")
    (out / "calibration.md").write_text("\n".join(lines) + "\n")


def machine() -> dict:
    flags = set()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("flags"):
                flags = set(line.split(":")[1].split())
                break
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "load": os.getloadavg(),
            "simd": sorted(f for f in flags if f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"))}


def figure(summary: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fam = {"weighted average (λ)": ["standard", "vanilla (lam=0.25)", "vanilla (lam=0.5)", "vanilla (lam=0.75)",
                                    "pgd_at"],
           "CA-AT (γ)": sorted(c for c in summary if c.startswith("ca_at")),
           "TRADES (β)": sorted(c for c in summary if c.startswith("trades"))}
    singles = [c for c in summary if summary[c]["method"] in ("agr", "agr_trades", "mart", "cons_at", "raat",
                                                                "raat_pp")]
    fig, ax = plt.subplots(figsize=(8, 5.5))
    colors = iter(["tab:blue", "tab:red", "tab:green"])
    offsets = iter([(5, -11), (5, 5), (-14, 6)])  # one side per family, so that labels of near points do not meet
    for name, cs in fam.items():
        cs = [c for c in cs if c in summary and summary[c]["aa"]]
        if not cs:
            continue
        col, off = next(colors), next(offsets)
        pts = sorted((summary[c]["clean"], summary[c]["aa"], c) for c in cs)
        ax.plot([100 * p[0][0] for p in pts], [100 * p[1][0] for p in pts], "-", color=col, alpha=.5)
        ax.errorbar([100 * p[0][0] for p in pts], [100 * p[1][0] for p in pts],
                    xerr=[100 * p[0][1] for p in pts], yerr=[100 * p[1][1] for p in pts], fmt="o", color=col,
                    capsize=2, label=name)
        for (cm, am, c) in pts:
            knob = c.split("=")[-1].rstrip(")") if "=" in c else c.replace("standard", "λ=0").replace("pgd_at", "λ=1")
            ax.annotate(knob, (100 * cm[0], 100 * am[0]), textcoords="offset points", xytext=off, fontsize=7,
                        color=col)
    style = {"agr": ("s", "tab:purple"), "agr_trades": ("^", "tab:purple"), "mart": ("v", "tab:brown"),
             "cons_at": ("D", "tab:olive"), "raat": ("P", "tab:orange"), "raat_pp": ("X", "tab:orange")}
    for c in singles:
        s = summary[c]
        if s["aa"]:
            marker, col = style.get(s["method"], ("o", "0.3"))
            ax.errorbar(100 * s["clean"][0], 100 * s["aa"][0], xerr=100 * s["clean"][1], yerr=100 * s["aa"][1],
                        fmt=marker, color=col, ms=7, capsize=2, label=c)
    ax.set_xlabel("clean accuracy (%)")
    ax.set_ylabel("AutoAttack accuracy (%), L∞ ε = 8/255")
    ax.set_title("CPU testbed: CIFAR-10 (JPEG copy) 16×16, small_cnn w16, 10 epochs; mean ± std over seeds",
                 fontsize=9)
    ax.grid(alpha=.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    plt.close(fig)


FAMILIES = (("CA-AT", (("cos", "cos(g_c, g_a)"), ("mu", "conflict μ"), ("projected_frac", "steps projected"))),
            ("AGR", (("cos_mean", "mean per-tensor cos(g_c, g_a)"), ("gop_freq", "tensors projected (GOP)"),
                     ("neg_frac", "tensors with cos < 0"))))


def conflict_figure(rows: list[dict], path: Path) -> bool:
    """The surgery combiners' diagnostics over training, as their papers plot them: CA-AT (Fig. 2) per epoch
    the mean cos(g_c, g_a), the conflict μ and the fraction of steps that projected; AGR per epoch the mean
    per-tensor cosine, the fraction of tensors projected (GOP) and of tensors in conflict; one line per
    configuration (mean over seeds), one row of panels per method that logged them."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    found = []
    for fam, keys in FAMILIES:
        by: dict[str, list[dict]] = {}
        for r in rows:
            if all(k in r["diag"] for k, _ in keys):
                by.setdefault(r["config"], []).append(r["diag"])
        if by:
            found.append((fam, keys, by))
    if not found:
        return False
    fig, axes = plt.subplots(len(found), 3, figsize=(11, 3.4 * len(found)), squeeze=False)
    for row, (fam, keys, by) in zip(axes, found):
        for c, diags in sorted(by.items()):
            for ax, (k, title) in zip(row, keys):
                n = min(len(d[k]) for d in diags)
                ys = [sum(d[k][i] for d in diags) / len(diags) for i in range(n)]
                ax.plot(range(1, n + 1), ys, marker="o", ms=3, label=f"{c} ({len(diags)} seeds)")
                ax.set_title(f"{fam}: {title}", fontsize=9)
                ax.set_xlabel("epoch")
                ax.xaxis.get_major_locator().set_params(integer=True)
                ax.grid(alpha=.3)
        row[-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.suptitle("Gradient conflict during training on the CPU testbed (per-epoch means)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("root", help="the study folder (runs/testbed)")
    p.add_argument("--out", default="benchmarks/results/testbed")
    p.add_argument("--figures", default="docs/figures/testbed")
    a = p.parse_args(argv)
    root = Path(a.root)
    if not root.is_dir():
        print(f"testbed_claims: root={a.root!r} is not a folder; allowed: the study's output folder", file=sys.stderr)
        return 2
    rows, missing = collect(root)
    summary = summarize(rows)
    cl = claims(summary)
    write(rows, missing, summary, cl, Path(a.out))
    calibration(root, summary, Path(a.out))
    figure(summary, Path(a.figures) / "front.png")
    conflict_figure(rows, Path(a.figures) / "conflict.png")
    print((Path(a.out) / "claims.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`robustfront report RUN_DIR... --out DIR`: Markdown and CSV tables and PNG plots from run folders.

A run folder holds config.yaml and metrics.jsonl (from `robustfront train`) and any number of
eval*.json files (from `robustfront eval --out RUN_DIR/eval.json`). Each eval JSON gives one table row:

- of an ε sweep, the entry with the largest ε (the whole sweep is drawn in robust_vs_eps.png);
- of several checkpoints, the mean ± std (sample std) over them from the file's "aggregate", with
  their count in the `checkpoints` column (CSV: a `*_std` column next to each accuracy);
- the AA column is the AutoAttack cascade named by the result's `ra_source`, the attack that Mean
  and NRR use, so AA, Mean and NRR always describe the same attack.

Data set, split, model, method and norm come from the eval JSON (the run's config.yaml where it is
silent). A run without an eval JSON falls back to the last validation numbers of metrics.jsonl,
labelled "held-out PGD-k (val)" since those are a training-time estimate on a split of the training
set, not a test-set evaluation. Accuracies are fractions in results.csv and percentages in report.md;
ε is written as k/255 where it is one.
"""
from __future__ import annotations

import csv
import json
from fractions import Fraction
from pathlib import Path

import yaml

ACC = ("clean", "pgd", "cw", "aa", "worst_case", "mean", "nrr")
COLUMNS = ("run", "method", "data", "split", "model", "source", "attack_setting", "norm", "eps", "n", "seed",
           "checkpoints", *[c for a in ACC for c in (a, a + "_std")], "ra_source")
HEADERS = {"run": "run", "method": "method", "data": "data", "split": "split", "model": "model", "source": "source",
           "attack_setting": "attacks", "norm": "norm", "eps": "ε", "n": "n", "seed": "seed", "checkpoints": "ckpts",
           "clean": "clean", "pgd": "PGD", "cw": "CW", "aa": "AA", "worst_case": "worst", "mean": "Mean",
           "nrr": "NRR", "ra_source": "RA from"}


def _read_run(run: Path) -> dict:
    if not run.is_dir():
        raise FileNotFoundError(f"run folder {run} does not exist")
    cfg = yaml.safe_load((run / "config.yaml").read_text()) if (run / "config.yaml").is_file() else {}
    metrics = []
    if (run / "metrics.jsonl").is_file():
        metrics = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines() if l.strip()]
    evals = []
    for f in sorted(run.glob("eval*.json")):
        res = json.loads(f.read_text())
        res["_file"] = f.name
        evals.append(res)
    return {"name": run.name, "path": run, "config": cfg or {}, "metrics": metrics, "evals": evals}


def fmt_eps(v) -> str:
    """ε as "k/255" when within 1e-6 of k/255 (an integer as itself, 0 as "0"), else 4 significant digits."""
    if v is None:
        return "–"
    if isinstance(v, str):
        try:
            v = float(Fraction(v.strip()))
        except (ValueError, ZeroDivisionError):
            return v
    k = round(v * 255)
    if abs(v - k / 255) <= 1e-6:
        return str(k // 255) if k % 255 == 0 else f"{k}/255"
    return f"{v:.4g}"


def _largest_eps(res: dict) -> dict | None:
    """The single-ε entry of a result (or of an aggregate): itself, or the sweep entry with the largest ε."""
    if "sweep" in res:
        return max(res["sweep"], key=lambda s: s["eps"]) if res["sweep"] else None
    return res if "clean_acc" in res else None


def _strongest_pgd(names) -> str | None:
    """The pgdK / pgdKxR attack with the most steps (then restarts)."""
    from .eval.suite import _PGD  # the suite's own pgdK / pgdKxR name pattern
    pgd = [(int(m.group(1)), int(m.group(2) or 1), a) for a in names if (m := _PGD.fullmatch(a))]
    return max(pgd)[2] if pgd else None


def _aa_name(s: dict) -> str | None:
    """The AutoAttack cascade that Mean/NRR use: `ra_source` (older files without it: the last of AA_NAMES)."""
    from .eval.suite import AA_NAMES
    if "ra_source" in s:
        return s["ra_source"] if s["ra_source"] in AA_NAMES else None
    aa = [a for a in AA_NAMES if a in s["robust_acc"]]
    return aa[-1] if aa else None


def _join(values, default) -> str:
    vals = list(dict.fromkeys(str(v) for v in values if v is not None))
    return ", ".join(vals) if vals else default


def _eval_row(base: dict, e: dict) -> dict | None:
    ckpts = e.get("checkpoints") or [e]
    multi = "checkpoints" in e
    s = _largest_eps(e["aggregate"] if multi else e)
    if s is None:
        return None
    ra = s["robust_acc"]
    picked = {"clean": s["clean_acc"], "pgd": ra.get(_strongest_pgd(ra)), "cw": ra.get("cw", ra.get("cw0")),
              "aa": ra.get(_aa_name(s)), "worst_case": s.get("worst_case_acc"), "mean": s.get("mean"),
              "nrr": s.get("nrr")}
    row = {**base, "method": _join((c.get("method") for c in ckpts), base["method"]),
           "data": e.get("data") or ckpts[0].get("data") or base["data"], "split": ckpts[0].get("split", "test"),
           "model": _join((c.get("model") for c in ckpts), base["model"]), "source": e["_file"],
           "attack_setting": ",".join(ra), "norm": e.get("norm", s.get("norm")), "eps": fmt_eps(s["eps"]),
           "n": e["n"], "seed": e["seed"], "checkpoints": len(ckpts), "ra_source": s.get("ra_source")}
    for k, v in picked.items():
        row[k], row[k + "_std"] = (v["mean"], v["std"]) if multi and v is not None else (v, None)
    return row


def table_rows(runs: list[dict]) -> list[dict]:
    from .eval.metrics import mean_nrr
    rows = []
    for r in runs:
        cfg = r["config"]
        base = {"run": r["name"], "method": cfg.get("method", "?"), "data": cfg.get("data", "?"),
                "model": cfg.get("model", "?")}
        evals = [row for e in r["evals"] if (row := _eval_row(base, e)) is not None]
        rows += evals
        val = [m for m in r["metrics"] if "val_clean_acc" in m]
        if evals or not val:
            continue
        m = val[-1]
        sa, ra = m["val_clean_acc"], m.get("val_pgd_acc")
        mean, nrr = mean_nrr(sa, ra) if ra is not None else (None, None)
        split = m.get("val_split", "val")  # "test" for runs with select_on=test
        row = {**base, "split": split, "source": f"metrics.jsonl epoch {m['epoch']}",
               "attack_setting": f"held-out PGD-{cfg.get('eval_steps', 10)} ({split})", "norm": cfg.get("norm", "Linf"),
               "eps": fmt_eps(cfg.get("eps")), "n": cfg.get("eval_n") or "val split", "seed": cfg.get("seed", 0),
               "checkpoints": 1, "clean": sa, "pgd": ra, "cw": None, "aa": None, "worst_case": ra, "mean": mean,
               "nrr": nrr, "ra_source": "val PGD"}
        rows.append({**row, **{a + "_std": None for a in ACC}})
    return rows


def _cell(row: dict, col: str) -> str:
    v = row[col]
    if v is None:
        return "–"
    if col in ACC:  # accuracies (fractions) as percentages; mean ± std over checkpoints
        sd = row.get(col + "_std")
        return f"{100 * v:.2f}" + ("" if sd is None else f" ± {100 * sd:.2f}")
    return str(v)


def pareto_fronts(rows: list[dict]) -> dict:
    """{(data, split, norm, ε): (points, front)}: runs are only compared at the same data, norm and budget.

    points = [(SA, RA, row)] with RA = AA if evaluated, else the worst case (val PGD for metrics.jsonl rows);
    front = the non-dominated (SA, RA) pairs sorted by SA.
    """
    groups: dict = {}
    for r in rows:
        ra = r["aa"] if r["aa"] is not None else r["worst_case"]
        if r["clean"] is not None and ra is not None:
            groups.setdefault((r["data"], r["split"], r["norm"], r["eps"]), []).append((r["clean"], ra, r))
    out = {}
    for g, pts in groups.items():
        front = sorted({(sa, ra) for sa, ra, _ in pts
                        if not any(s2 >= sa and r2 >= ra and (s2, r2) != (sa, ra) for s2, r2, _ in pts)})
        out[g] = (pts, front)
    return out


def _plots(runs: list[dict], rows: list[dict], out: Path) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    desc = lambda r: (f"{r['name']} ({r['config'].get('method', '?')}, {r['config'].get('data', '?')}, "
                      f"{r['config'].get('model', '?')}, {r['config'].get('norm', 'Linf')} "
                      f"eps {fmt_eps(r['config'].get('eps'))}, seed {r['config'].get('seed', 0)})")

    # training curves
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in runs:
        for key, ls in (("train_clean_acc", ":"), ("train_adv_acc", "-."), ("val_clean_acc", "-"), ("val_pgd_acc", "--")):
            pts = [(m["epoch"], m[key]) for m in r["metrics"] if key in m]
            if pts:
                ax.plot(*zip(*pts), ls, marker=".", label=f"{r['name']} {key}")
    ax.set_xlabel("epoch"), ax.set_ylabel("accuracy")
    ax.set_title("Training curves (val = held-out split of the training set; val_pgd = PGD-k at the training eps)",
                 fontsize=8)
    ax.legend(fontsize=6)
    fig.text(0.01, 0.01, "; ".join(desc(r) for r in runs), fontsize=6, wrap=True)
    files.append(_save(fig, out / "training_curves.png"))

    # robust accuracy vs eps (mean ± std over checkpoints where there are several)
    sweeps = [(r, e, e.get("aggregate", e)) for r in runs for e in r["evals"] if "sweep" in e.get("aggregate", e)]
    if sweeps:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        notes = []
        for r, e, src in sweeps:
            multi = "checkpoints" in e
            first = e["checkpoints"][0] if multi else e
            entries = sorted(src["sweep"], key=lambda s: s["eps"])
            x = [255 * s["eps"] for s in entries]
            tag = f"{r['name']}/{e['_file']}"
            curve = lambda get: ([get(s)["mean"] if multi else get(s) for s in entries],
                                 [get(s)["std"] for s in entries] if multi else None)
            ax.errorbar(x, *curve(lambda s: s["clean_acc"]), fmt="k:", capsize=2, label=f"{tag} clean")
            for a in entries[0]["robust_acc"]:
                ax.errorbar(x, *curve(lambda s: s["robust_acc"][a]), marker="o", capsize=2, label=f"{tag} {a}")
            notes.append(f"{tag}: {e.get('data', first.get('data', '?'))} ({first.get('split', 'test')}), "
                         f"{e.get('norm', '?')}, n={e['n']}, seed={e['seed']}"
                         + (f", mean ± std over {len(e['checkpoints'])} checkpoints" if multi else ""))
        ax.set_xlabel("eps × 255"), ax.set_ylabel("accuracy")
        ax.set_title("Robust accuracy vs eps", fontsize=9)
        ax.legend(fontsize=6)
        fig.text(0.01, 0.01, "; ".join(notes), fontsize=6, wrap=True)
        files.append(_save(fig, out / "robust_vs_eps.png"))

    # cos / mu over training
    keys = sorted({k for r in runs for m in r["metrics"] for k, v in m.items()
                   if k.startswith(("cos", "mu", "train_cos", "train_mu")) and isinstance(v, (int, float))})
    if keys:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for r in runs:
            for k in keys:
                pts = [(m["epoch"], m[k]) for m in r["metrics"] if isinstance(m.get(k), (int, float))]
                if pts:
                    ax.plot(*zip(*pts), marker=".", label=f"{r['name']} {k}")
        ax.set_xlabel("epoch"), ax.set_ylabel("value (epoch mean)")
        ax.set_title("Gradient conflict over training: cos(g_clean, g_adv) and mu", fontsize=9)
        ax.legend(fontsize=6)
        fig.text(0.01, 0.01, "; ".join(desc(r) for r in runs), fontsize=6, wrap=True)
        files.append(_save(fig, out / "conflict.png"))

    # clean vs robust with one empirical Pareto front per (data, split, norm, eps)
    fronts = pareto_fronts(rows)
    if fronts:
        fig, ax = plt.subplots(figsize=(6, 5))
        for i, ((data, split, norm, eps), (pts, front)) in enumerate(fronts.items()):
            color = f"C{i % 10}"
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], color=color)
            for sa, ra, row in pts:
                ax.annotate(f"{row['run']} ({row['method']})", (sa, ra), fontsize=6)
            ax.plot(*zip(*front), "--", color=color, marker="." if len(front) == 1 else None,
                    label=f"Pareto front: {data} ({split}), {norm} eps={eps}")
        ax.set_xlabel("clean accuracy"), ax.set_ylabel("robust accuracy (AA if evaluated, else worst case / val PGD)")
        ax.set_title("Clean vs robust: empirical Pareto front per (data, split, norm, eps)", fontsize=8)
        ax.legend(fontsize=6)
        fig.text(0.01, 0.01, "; ".join(f"{r['run']}: {r['model']}, {r['attack_setting']}, n={r['n']}, "
                                       f"seed={r['seed']}, RA={r['ra_source']}"
                                       for _, (pts, _) in fronts.items() for _, _, r in pts), fontsize=6, wrap=True)
        files.append(_save(fig, out / "pareto.png"))
    return files


def _save(fig, path: Path) -> Path:
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    fig.savefig(path, dpi=120)
    import matplotlib.pyplot as plt
    plt.close(fig)
    return path


def report(run_dirs: list[str], out: str) -> list[Path]:
    """Write report.md, results.csv and PNG plots for the runs into `out`; returns the files written."""
    runs = [_read_run(Path(d)) for d in run_dirs]
    out_p = Path(out)
    out_p.mkdir(parents=True, exist_ok=True)
    rows = table_rows(runs)
    with open(out_p / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(rows)
    plots = _plots(runs, rows, out_p)
    lines = ["# robustfront report", "",
             "Accuracies in %. Clean = SA; PGD, CW, AA = robust accuracy under that attack (PGD = the pgdK with the",
             "most steps; CW = cw (κ = 50), else cw0; AA = the official AutoAttack cascade named in `RA from`); Mean = (SA + RA)/2,",
             "NRR = 2·SA·RA/(SA + RA) with RA from `RA from` (AutoAttack when evaluated, else the per-sample worst",
             "case over the listed attacks; for `metrics.jsonl` rows the held-out PGD validation accuracy on a split",
             "of the *training* set, not a test-set number). Of an ε sweep the row shows the largest ε. Rows with",
             "ckpts > 1 show mean ± std (sample std) over that many checkpoints.", "",
             "| " + " | ".join(HEADERS.values()) + " |", "|" + "---|" * len(HEADERS)]
    for r in rows:
        lines.append("| " + " | ".join(_cell(r, c) for c in HEADERS) + " |")
    for r in runs:
        for e in r["evals"]:
            for res in e.get("checkpoints", [e]):
                if "sanity" in res:
                    s = res["sanity"]
                    lines += ["", f"## Sanity checks: {r['name']} / {e['_file']} ({res.get('data', '?')}, "
                                  f"{res.get('model', '?')}, {s['norm']} eps={fmt_eps(s['eps'])}, n={s['n']}, "
                                  f"seed={s['seed']})", ""]
                    lines += [f"- {'PASS' if c['passed'] else 'WARN'} {c['name']}: {c['detail']}" for c in s["checks"]]
    lines += ["", "## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots]
    (out_p / "report.md").write_text("\n".join(lines) + "\n")
    return [out_p / "report.md", out_p / "results.csv", *plots]

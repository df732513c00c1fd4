"""`robustfront report RUN_DIR... --out DIR`: Markdown and CSV tables and PNG plots from run folders.

A run folder holds config.yaml and metrics.jsonl (from `robustfront train`) and any number of
eval*.json files (from `robustfront eval --out RUN_DIR/eval.json`). Table numbers come from the
eval JSON files; a run without one falls back to the last validation numbers of metrics.jsonl,
labelled "held-out PGD-10 (val)" since those are a training-time estimate, not a test-set evaluation.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import yaml

COLUMNS = ("run", "method", "data", "model", "source", "attack_setting", "eps", "n", "seed", "clean", "pgd", "cw",
           "aa", "worst_case", "mean", "nrr", "ra_source")


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


def _single(res: dict) -> dict | None:
    """The single-ε result of an eval JSON (the largest ε of a sweep; the first checkpoint of several)."""
    if "checkpoints" in res:
        res = res["checkpoints"][0]
    if "sweep" in res:
        return res["sweep"][-1] if res["sweep"] else None
    return res if "clean_acc" in res else None


def _pick(ra: dict, prefix: tuple[str, ...]) -> float | None:
    for k in ra:
        if k.startswith(prefix):
            return ra[k]
    return None


def table_rows(runs: list[dict]) -> list[dict]:
    rows = []
    for r in runs:
        cfg = r["config"]
        base = {"run": r["name"], "method": cfg.get("method", "?"), "data": cfg.get("data", "?"),
                "model": cfg.get("model", "?")}
        singles = [(e["_file"], e, _single(e)) for e in r["evals"]]
        singles = [s for s in singles if s[2] is not None]
        for fname, top, s in singles:
            ra = s["robust_acc"]
            aa = ra.get("autoattack", ra.get("autoattack-plus"))
            rows.append({**base, "source": fname, "attack_setting": ",".join(ra), "eps": top.get("eps_str", s["eps"])
                         if not isinstance(top.get("eps_str"), list) else top["eps_str"][-1],
                         "n": s["n"], "seed": s["seed"], "clean": s["clean_acc"], "pgd": _pick(ra, ("pgd",)),
                         "cw": ra.get("cw"), "aa": aa, "worst_case": s.get("worst_case_acc"), "mean": s.get("mean"),
                         "nrr": s.get("nrr"), "ra_source": s.get("ra_source")})
        if not singles:
            val = [m for m in r["metrics"] if "val_clean_acc" in m]
            if not val:
                continue
            m = val[-1]
            sa, ra = m["val_clean_acc"], m.get("val_pgd_acc")
            from .eval.metrics import mean_nrr
            mean, nrr = mean_nrr(sa, ra) if ra is not None else (None, None)
            rows.append({**base, "source": f"metrics.jsonl epoch {m['epoch']}",
                         "attack_setting": f"held-out PGD-{cfg.get('eval_steps', 10)} (val)",
                         "eps": cfg.get("eps"), "n": cfg.get("eval_n") or "val split", "seed": cfg.get("seed", 0),
                         "clean": sa, "pgd": ra, "cw": None, "aa": None, "worst_case": ra, "mean": mean, "nrr": nrr,
                         "ra_source": "val PGD"})
    return rows


def _fmt(v) -> str:
    return f"{100 * v:.2f}" if isinstance(v, float) else ("–" if v is None else str(v))


def _plots(runs: list[dict], rows: list[dict], out: Path) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    desc = lambda r: f"{r['name']} ({r['config'].get('method', '?')}, {r['config'].get('data', '?')}, " \
                     f"{r['config'].get('model', '?')}, eps {r['config'].get('eps', '?')}, seed {r['config'].get('seed', 0)})"

    # training curves
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in runs:
        ep = [m["epoch"] for m in r["metrics"]]
        for key, ls in (("train_clean_acc", ":"), ("train_adv_acc", "-."), ("val_clean_acc", "-"), ("val_pgd_acc", "--")):
            pts = [(m["epoch"], m[key]) for m in r["metrics"] if key in m]
            if pts:
                ax.plot(*zip(*pts), ls, marker=".", label=f"{r['name']} {key}")
        if not ep:
            continue
    ax.set_xlabel("epoch"), ax.set_ylabel("accuracy")
    ax.set_title("Training curves (val = held-out split of the training set; val_pgd = PGD-10 at the training eps)",
                 fontsize=8)
    ax.legend(fontsize=6)
    fig.text(0.01, 0.01, "; ".join(desc(r) for r in runs), fontsize=6, wrap=True)
    files.append(_save(fig, out / "training_curves.png"))

    # robust accuracy vs eps
    sweeps = [(r, e) for r in runs for e in r["evals"] if "sweep" in (e["checkpoints"][0] if "checkpoints" in e else e)]
    if sweeps:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for r, e in sweeps:
            e1 = e["checkpoints"][0] if "checkpoints" in e else e
            eps = e1["eps"]
            ax.plot(eps, [s["clean_acc"] for s in e1["sweep"]], "k:", label=f"{r['name']} clean")
            for a in e1["sweep"][0]["robust_acc"]:
                ax.plot(eps, [s["robust_acc"][a] for s in e1["sweep"]], marker="o", label=f"{r['name']} {a}")
        ax.set_xlabel(f"eps ({e1['norm']})"), ax.set_ylabel("accuracy")
        ax.set_title(f"Robust accuracy vs eps ({e1.get('data', '?')}, {e1.get('split', 'test')}, n={e1['n']}, "
                     f"seed={e1['seed']})", fontsize=9)
        ax.legend(fontsize=6)
        fig.text(0.01, 0.01, "; ".join(desc(r) for r, _ in sweeps), fontsize=6, wrap=True)
        files.append(_save(fig, out / "robust_vs_eps.png"))

    # cos / mu over training
    keys = sorted({k for r in runs for m in r["metrics"] for k, v in m.items()
                   if (k.startswith("cos") or k.startswith("mu") or k.startswith("train_cos") or k.startswith("train_mu"))
                   and isinstance(v, (int, float))})
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

    # clean vs robust with the empirical Pareto front
    pts = [(r["clean"], r["aa"] if r["aa"] is not None else r["worst_case"], r) for r in rows
           if r["clean"] is not None and (r["aa"] if r["aa"] is not None else r["worst_case"]) is not None]
    if pts:
        fig, ax = plt.subplots(figsize=(6, 5))
        for sa, ra, row in pts:
            ax.scatter(sa, ra)
            ax.annotate(f"{row['run']} ({row['method']})", (sa, ra), fontsize=6)
        front = [(sa, ra) for sa, ra, _ in pts if not any(s2 >= sa and r2 >= ra and (s2, r2) != (sa, ra)
                                                         for s2, r2, _ in pts)]
        front.sort()
        ax.plot(*zip(*front), "r--", label="empirical Pareto front")
        ax.set_xlabel("clean accuracy"), ax.set_ylabel("robust accuracy (AA if evaluated, else worst case / val PGD)")
        r0 = pts[0][2]
        ax.set_title(f"Clean vs robust ({r0['data']}, {r0['model']}, eps {r0['eps']}, n={r0['n']}, seed={r0['seed']})",
                     fontsize=8)
        ax.legend(fontsize=7)
        fig.text(0.01, 0.01, "attacks: " + "; ".join(sorted({str(r['attack_setting']) for _, _, r in pts})), fontsize=6,
                 wrap=True)
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
             "Accuracies in %. Clean = SA; PGD, CW, AA = robust accuracy under that attack (AA = official AutoAttack);",
             "Mean = (SA + RA)/2, NRR = 2·SA·RA/(SA + RA) with RA from `ra_source` (AutoAttack when evaluated, else the",
             "per-sample worst case over the listed attacks; for `metrics.jsonl` rows the held-out PGD-10 validation",
             "accuracy on a split of the *training* set, not a test-set number).", "",
             "| run | method | data | model | source | attacks | eps | n | seed | clean | PGD | CW | AA | worst | Mean | NRR "
             "| RA from |", "|" + "---|" * 17]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(r[c]) for c in COLUMNS) + " |")
    for r in runs:
        for e in r["evals"]:
            for res in (e["checkpoints"] if "checkpoints" in e else [e]):
                if "sanity" in res:
                    s = res["sanity"]
                    lines += ["", f"## Sanity checks: {r['name']} / {e['_file']} ({s['norm']} eps={s.get('eps_str', s['eps'])}, "
                                  f"n={s['n']}, seed={s['seed']})", ""]
                    lines += [f"- {'PASS' if c['passed'] else 'WARN'} {c['name']}: {c['detail']}" for c in s["checks"]]
            if "aggregate" in e:
                a = e["aggregate"]
                a = a["sweep"][-1] if "sweep" in a else a
                lines += ["", f"## {r['name']} / {e['_file']}: mean ± std over {a['n_checkpoints']} checkpoints "
                              f"(eps={a['eps']:.4g}, n={e['n']}, seed={e['seed']})", ""]
                lines += [f"- clean {100 * a['clean_acc']['mean']:.2f} ± {100 * a['clean_acc']['std']:.2f}"]
                lines += [f"- {k} {100 * v['mean']:.2f} ± {100 * v['std']:.2f}" for k, v in a["robust_acc"].items()]
    lines += ["", "## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots]
    (out_p / "report.md").write_text("\n".join(lines) + "\n")
    return [out_p / "report.md", out_p / "results.csv", *plots]

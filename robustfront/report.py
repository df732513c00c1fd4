"""`robustfront report RUN_DIR... --out DIR`: Markdown and CSV tables and PNG plots from run folders.

A sweep folder (it holds sweep.json) stands for its points' run folders, and adds its fronts
(`robustfront.fronts`: per method family, mean ± std over seeds, Pareto points, hypervolume,
dominance) under OUT/fronts.

A run folder holds config.yaml and metrics.jsonl (from `robustfront train`) and any number of
eval*.json files (from `robustfront eval --out RUN_DIR/eval.json`), read as `EvalResult`s. Each eval
file gives one table row: the largest ε of a sweep (the whole sweep is drawn in robust_vs_eps.png),
the mean ± std (sample std) over checkpoints where it holds several, and an AA column that is the
AutoAttack cascade named by `ra_source`, the attack Mean and NRR use.

A run without an eval file falls back to the last validation numbers of metrics.jsonl, labelled
"held-out PGD-k (val)": a training-time estimate on a split of the training set, not a test-set
evaluation. Accuracies are fractions in results.csv and percentages in report.md; ε is k/255 where
it is one. Fronts are drawn per data set, split, norm, ε *and* robustness source (AutoAttack, the
worst case over other attacks, or the held-out PGD), so that sources are never mixed on one axis.
"""
from __future__ import annotations

import csv
import io
import json
from fractions import Fraction
from pathlib import Path

from .checkpoint import read_yaml, write_text_atomic
from .eval.result import EvalResult

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
    cfg = read_yaml(run / "config.yaml") if (run / "config.yaml").is_file() else {}
    metrics = []
    if (run / "metrics.jsonl").is_file():
        for i, line in enumerate((run / "metrics.jsonl").read_text().splitlines(), 1):
            try:
                metrics += [json.loads(line)] if line.strip() else []
            except json.JSONDecodeError as e:
                raise ValueError(f"{run / 'metrics.jsonl'} line {i} is not JSON ({e.msg}); allowed: the lines "
                                 f"robustfront train writes") from None
    evals = []
    for f in sorted(run.glob("eval*.json")):
        try:
            evals.append((f.name, EvalResult.from_json(json.loads(f.read_text()))))
        except json.JSONDecodeError as e:
            raise ValueError(f"{f} is not JSON ({e.msg} at line {e.lineno}); allowed: a file robustfront eval "
                             f"writes") from None
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{f} is not an evaluation result written by robustfront eval ({e})") from None
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


def _strongest_pgd(names) -> str | None:
    """The pgdK / pgdKxR attack with the most steps (then restarts)."""
    from .attacks import parse_spec
    pgd = []
    for a in names:
        try:
            name, kw = parse_spec(a)
        except ValueError:
            continue
        if name == "pgd" and kw:
            pgd.append((kw["steps"], kw["restarts"], a))
    return max(pgd)[2] if pgd else None


def _join(values, default) -> str:
    vals = list(dict.fromkeys(str(v) for v in values if v is not None))
    return ", ".join(vals) if vals else default


def _eval_row(base: dict, file: str, r: EvalResult) -> dict | None:
    p = r.largest
    if p is None:
        return None
    picked = {"clean": p.clean, "pgd": p.robust.get(_strongest_pgd(p.robust)),
              "cw": p.robust.get("cw", p.robust.get("cw0")), "aa": p.aa, "worst_case": p.worst_case,
              "mean": p.mean, "nrr": p.nrr}
    row = {**base, "method": _join(r.methods, base["method"]), "data": r.data or base["data"],
           "split": r.split or "test", "model": _join(r.models, base["model"]), "source": file,
           "attack_setting": ",".join(p.robust), "norm": r.norm, "eps": fmt_eps(p.eps), "n": r.n, "seed": r.seed,
           "checkpoints": r.n_checkpoints, "ra_source": p.ra_source}
    for k, v in picked.items():
        row[k], row[k + "_std"] = (None, None) if v is None else (v.mean, v.std)
    return row


def table_rows(runs: list[dict]) -> list[dict]:
    from .eval.metrics import mean_nrr
    rows = []
    for r in runs:
        cfg = r["config"]
        base = {"run": r["name"], "method": cfg.get("method", "?"), "data": cfg.get("data", "?"),
                "model": cfg.get("model", "?")}
        evals = [row for f, e in r["evals"] if (row := _eval_row(base, f, e)) is not None]
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
               "nrr": nrr, "ra_source": "val_pgd"}
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


def robustness_source(row: dict) -> str:
    """What the RA of a front point is: AutoAttack, the worst case of the listed attacks, or val PGD."""
    if row["aa"] is not None:
        return "AutoAttack"
    if row["ra_source"] == "val_pgd":
        return "held-out PGD (val)"
    return f"worst case of {row['attack_setting']}"


def pareto_fronts(rows: list[dict]) -> dict:
    """{(data, split, norm, ε, robustness source): (points, front)}: runs are compared only at the same
    data, norm and budget, and under the same kind of robust accuracy.

    points = [(SA, RA, row)]; front = the non-dominated (SA, RA) pairs sorted by SA.
    """
    groups: dict = {}
    for r in rows:
        ra = r["aa"] if r["aa"] is not None else r["worst_case"]
        if r["clean"] is not None and ra is not None:
            key = (r["data"], r["split"], r["norm"], r["eps"], robustness_source(r))
            groups.setdefault(key, []).append((r["clean"], ra, r))
    out = {}
    for g, pts in groups.items():
        front = sorted({(sa, ra) for sa, ra, _ in pts
                        if not any(s2 >= sa and r2 >= ra and (s2, r2) != (sa, ra) for s2, r2, _ in pts)})
        out[g] = (pts, front)
    return out


def percent_range(values, min_span: float = 10.0) -> tuple[float, float]:
    """Axis limits in percent around `values` (fractions), at least `min_span` points wide, inside [0, 100]."""
    lo, hi = 100 * min(values), 100 * max(values)
    pad = max(min_span - (hi - lo), 0) / 2 + 2
    lo, hi = max(0.0, lo - pad), min(100.0, hi + pad)
    return (lo, hi) if hi - lo >= min_span else ((0.0, min_span) if lo == 0 else (100 - min_span, 100.0))


def _save(fig, path: Path) -> Path:
    from .plotting import save
    return save(fig, path, getattr(fig, "rf_note", None))


def _save_with_note(fig, path: Path, note: str) -> Path:
    fig.rf_note = note  # the provenance line under the plot (data, model, attack, n, seed)
    return _save(fig, path)


def expand_sweeps(run_dirs: list[str]) -> tuple[list[Path], list[Path]]:
    """(run folders, sweep folders): a folder holding sweep.json (`robustfront sweep --out`) stands for
    the run folders of its points."""
    from .sweep.results import point_dirs
    runs, sweeps = [], []
    for d in map(Path, run_dirs):
        if (d / "sweep.json").is_file():
            sweeps.append(d)
            runs += point_dirs(d)
        else:
            runs.append(d)
    return runs, sweeps


def report(run_dirs: list[str], out: str) -> list[Path]:
    """Write report.md, results.csv and PNG plots for the runs into `out`; returns the files written.
    A sweep folder adds its points' rows and its fronts (OUT/fronts, or OUT/fronts_NAME for several)."""
    from .report_plots import plots
    from .sweep.results import sweep_fronts
    dirs, sweeps = expand_sweeps(run_dirs)
    runs = [_read_run(d) for d in dirs]
    out_p = Path(out)
    out_p.mkdir(parents=True, exist_ok=True)
    fronts = [f for sd in sweeps
              for f in sweep_fronts(sd, out_p / ("fronts" if len(sweeps) == 1 else f"fronts_{sd.name}"))]
    rows = table_rows(runs)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS)
    w.writeheader()
    w.writerows(rows)
    write_text_atomic(out_p / "results.csv", buf.getvalue())
    files = plots(runs, rows, out_p)
    lines = ["# robustfront report", "",
             "Accuracies in %. Clean = SA; PGD, CW, AA = robust accuracy under that attack (PGD = the pgdK with the",
             "most steps; CW = cw (κ = 50), else cw0; AA = the official AutoAttack cascade named in `RA from`); Mean = (SA + RA)/2,",
             "NRR = 2·SA·RA/(SA + RA) with RA from `RA from` (AutoAttack when evaluated, else the per-sample worst",
             "case over the listed attacks; for `metrics.jsonl` rows the held-out PGD validation accuracy on a split",
             "of the *training* set, not a test-set number). Of an ε sweep the row shows the largest ε. Rows with",
             "ckpts > 1 show mean ± std (sample std) over that many checkpoints.", "",
             "| " + " | ".join(HEADERS.values()) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(_cell(r, c) for c in HEADERS) + " |" for r in rows]
    for r in runs:
        for f, e in r["evals"]:
            for s in e.sanity:
                lines += ["", f"## Sanity checks: {r['name']} / {f} ({e.data or '?'}, {_join(e.models, '?')}, "
                              f"{s['norm']} eps={fmt_eps(s['eps'])}, n={s['n']}, seed={s['seed']})", ""]
                lines += [f"- {'PASS' if c['passed'] else 'WARN'} {c['name']}: {c['detail']}" for c in s["checks"]]
    lines += ["", "## Plots", ""] + [f"![{p.stem}]({p.name})" for p in files]
    pngs = [f for f in fronts if f.suffix == ".png"]
    if pngs:  # fronts over seeds (mean ± std), tables in fronts*/fronts.md
        lines += ["", "## Sweep fronts (mean ± std over seeds; details in fronts.md)", ""]
        lines += [f"![{p.stem}]({p.relative_to(out_p)})" for p in pngs]
    write_text_atomic(out_p / "report.md", "\n".join(lines) + "\n")
    return [out_p / "report.md", out_p / "results.csv", *files, *fronts]


__all__ = ["fmt_eps", "pareto_fronts", "percent_range", "report", "robustness_source", "table_rows"]

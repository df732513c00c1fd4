"""`robustfront report RUN_DIR... --out DIR [--html]`: tables, fronts and figures from run folders and
sweep folders.

A run folder holds config.yaml and metrics.jsonl (`robustfront train`) and any number of eval*.json
files (`robustfront eval --out RUN_DIR/eval.json`). Each eval file gives one table row at its largest
ε (the whole ε sweep is drawn in robust_vs_eps.png); rows of several checkpoints show mean ± sample
std over them. A run without an eval file falls back to the last validation numbers of metrics.jsonl,
labelled "held-out PGD-k (val)": a training-time estimate on a split of the training set.

A sweep folder (it holds sweep.json) stands for its points: their rows, their curves, and the sweep's
fronts (per method family, mean ± std over seeds) under OUT/fronts (OUT/fronts_NAME for several).
The fronts of plain run folders are drawn in pareto.png, one panel per comparable group.
"""
from __future__ import annotations

from pathlib import Path

from ..checkpoint import write_text_atomic
from .maths import analyze
from .rows import read_run, run_rows
from .table import fmt_eps, markdown, run_cells, run_table
from .write import save_figure, write_fronts  # noqa: F401  (write_fronts: the report's public name too)

EXPLAIN = ("Accuracies in %. clean = SA; PGD = the pgdK attack with the most steps; AA = the official AutoAttack "
           "cascade (else –); Mean = (SA + RA)/2 and NRR = 2·SA·RA/(SA + RA), with RA = AA when evaluated, else "
           "the per-sample worst case over the listed attacks (for `metrics.jsonl` rows the held-out PGD accuracy "
           "on a split of the *training* set). ε as written at evaluation; an ε sweep shows its largest ε. "
           "ckpts > 1: mean ± sample std over that many checkpoints. seed = the training seed.")


def expand_sweeps(run_dirs: list[str]) -> tuple[list[Path], list[Path]]:
    """(run folders, sweep folders): a folder holding sweep.json stands for the run folders of its points."""
    from ..sweep.results import point_dirs
    runs, sweeps = [], []
    for d in map(Path, run_dirs):
        if (d / "sweep.json").is_file():
            sweeps.append(d)
            runs += point_dirs(d)
        else:
            runs.append(d)
    seen: set = set()   # a folder named twice (or inside a sweep also named) is one run, not two seeds
    runs = [r for r in runs if not (r.resolve() in seen or seen.add(r.resolve()))]
    return runs, list(dict.fromkeys(sweeps))


def collect(run_dirs: list[str]) -> dict:
    """Everything a report shows: runs, table rows, the fronts of plain run folders, the sweeps' results."""
    from ..sweep.results import point_dirs, point_results
    dirs, sweeps = expand_sweeps(run_dirs)
    runs = [read_run(d) for d in dirs]
    in_sweep = {d.resolve() for s in sweeps for d in point_dirs(s)}
    plain = [r for r in runs if r["path"].resolve() not in in_sweep]
    rows = run_rows(plain)
    sweep_results = {s: point_results(s) for s in sweeps}
    for s, res in sweep_results.items():
        rows += [{**r, "run": Path(r["run"]).name} for r in res]
    return {"dirs": list(run_dirs), "runs": runs, "rows": rows, "groups": analyze(run_rows(plain)) if plain else [],
            "sweeps": sweep_results}


def figures(data: dict, out: Path) -> list[Path]:
    """pareto.png (fronts of plain run folders), training_curves.png, conflict.png, robust_vs_eps.png."""
    from .plots import CONFLICT_PANELS, curves_figure, fronts_figure, robust_vs_eps_figure
    made = []
    if data["groups"]:
        made.append(save_figure(fronts_figure(data["groups"]), out / "pareto.png"))
    conflict_runs = [r for r in data["runs"] if any(k in m for m in r["metrics"] for k in ("cos", "mu"))]
    for name, fig in (("training_curves", curves_figure(data["runs"])),
                      ("conflict", curves_figure(conflict_runs, CONFLICT_PANELS) if conflict_runs else None),
                      ("robust_vs_eps", robust_vs_eps_figure(data["runs"]))):
        if fig is not None:
            made.append(save_figure(fig, out / f"{name}.png"))
    return made


def report(run_dirs: list[str], out: str, *, html: bool = False, reproduce: str | None = None) -> list[Path]:
    """Write report.md, results.csv and the figures (and index.html with `html`); returns the files written."""
    if reproduce is not None:
        from .html import read_reproduce
        if not html:
            raise ValueError(f"--reproduce {reproduce} is shown only in the HTML report; allowed: with --html")
        read_reproduce(Path(reproduce))  # a bad file fails before minutes of drawing
    data = collect(run_dirs)
    out_p = Path(out)
    out_p.mkdir(parents=True, exist_ok=True)
    sweeps = list(data["sweeps"])
    fronts = []
    for s, res in data["sweeps"].items():
        if not res:
            raise ValueError(f"sweep folder {s} has no finished point (no points/*/eval.json matching its "
                             f"point.json); allowed: a folder written by robustfront sweep with at least one point done")
        fronts += write_fronts(res, out_p / ("fronts" if len(sweeps) == 1 else f"fronts_{s.name}"))
    headers, shared, csv_text = run_table(data["rows"])
    write_text_atomic(out_p / "results.csv", csv_text)
    files = figures(data, out_p)
    lines = ["# robustfront report", "", EXPLAIN, ""] + [f"- {s}" for s in shared] + [""]
    lines += markdown(headers, [[run_cells(r)[h] for h in headers] for r in data["rows"]])
    for r in data["runs"]:
        for f, e in r["evals"]:
            for s in e.sanity:
                lines += ["", f"## Sanity checks (gradient masking): {r['name']} / {f} ({s['norm']} ε={fmt_eps(s['eps'])}, "
                              f"n={s['n']}, seed={s['seed']})", ""]
                lines += [f"- {'PASS' if c['passed'] else 'WARN'} {c['name']}: {c['detail']}" for c in s["checks"]]
    lines += ["", "## Figures", ""] + [f"![{p.stem}]({p.name})" for p in files]
    pngs = [f for f in fronts if f.suffix == ".png"]
    if pngs:
        lines += ["", "## Sweep fronts (mean ± std over seeds; tables in fronts.md)", ""]
        lines += [f"![{p.stem}]({p.relative_to(out_p).as_posix()})" for p in pngs]
    write_text_atomic(out_p / "report.md", "\n".join(lines) + "\n")
    written = [out_p / "report.md", out_p / "results.csv", *files, *fronts]
    if html:
        from .html import write_html
        written.append(write_html(data, out_p, files, fronts, reproduce))
    return written


__all__ = ["collect", "expand_sweeps", "report", "save_figure", "write_fronts"]

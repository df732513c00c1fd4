"""The one table writer of the front wing: ε as the user wrote it, accuracies in % as mean ± std, and
Markdown / CSV / HTML-ready cells for the run table (report.md, results.csv) and the front table
(fronts.md, fronts.csv). Fractions in the CSVs, percentages in the Markdown."""
from __future__ import annotations

import csv
import io
from fractions import Fraction
from pathlib import Path

from .rows import AXES
from ..validation import fmt_eps  # noqa: F401  (the tables' name for it)


def eps_with_decimal(v) -> str:
    """"8/255 (0.03137)": the fraction as written, the decimal in parentheses; a plain decimal alone."""
    short = fmt_eps(v)
    if "/" not in short:
        return short
    return f"{short} ({float(Fraction(short)):.4g})"


def pm(mean, std=None, digits: int = 2) -> str:
    """A fraction as a percentage, with "± std" when a std is known."""
    if mean is None:
        return "–"
    return f"{100 * mean:.{digits}f}" + ("" if std is None else f" ± {100 * std:.{digits}f}")


def markdown(headers: list[str], cells: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)] + \
        ["| " + " | ".join(c) + " |" for c in cells]


def csv_text(header: list[str], values: list[list]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows([header, *values])
    return buf.getvalue()


# -- the run table: one row per evaluation file (report.md, results.csv, the HTML table) -------------------

ACC_HEADERS = {"clean": "clean", "pgd": "PGD", "aa": "AA", "mean": "Mean", "nrr": "NRR"}
# shown in every report; the rest only when they differ between rows (else once, above the table)
CORE = ("run", "method", *ACC_HEADERS.values(), "ε", "n", "ckpts", "source")
OPTIONAL = ("data", "model", "norm", "attacks", "seed", "WA", "selection")
CSV_COLUMNS = ("run", "method", "knob", "data", "split", "model", "source", "attack_setting", "norm", "eps", "n",
               "seed", "eval_seed", "checkpoints", *[c for a in AXES for c in (a, a + "_std")], "robust_name",
               "ra_source", "wa", "select")


def run_cells(row: dict) -> dict[str, str]:
    """The run table's cells of one row, by header."""
    c = {"run": row["run"], "method": row["family"], "ε": fmt_eps(row["eps_str"] or row["eps"]), "n": str(row["n"]),
         "ckpts": str(row["n_checkpoints"]), "source": row["source"], "data": f"{row['data']} ({row['split']})",
         "model": row["model"], "norm": row["norm"], "attacks": row["attacks"], "seed": str(row["seed"]),
         "WA": row["wa"], "selection": row["select"]}
    for k, h in ACC_HEADERS.items():
        c[h] = pm(row[k], row["std"].get(k))
    return c


def run_table(rows: list[dict]) -> tuple[list[str], list[str], str]:
    """(headers, caption: the optional columns every row shares, as "name: value" lines, csv text)."""
    cells = [run_cells(r) for r in rows]
    varying = [h for h in OPTIONAL if len({c[h] for c in cells}) > 1]
    shared = [f"{h}: {cells[0][h]}" for h in OPTIONAL if h not in varying] if cells else []
    headers = list(CORE[:2]) + varying + list(CORE[2:])
    csv_rows = [[_csv_value(r, c) for c in CSV_COLUMNS] for r in rows]
    return headers, shared, csv_text(list(CSV_COLUMNS), csv_rows)


def _csv_value(row: dict, col: str):
    if col.endswith("_std") and col[:-4] in AXES:
        return row["std"].get(col[:-4])
    alias = {"method": "family", "attack_setting": "attacks", "checkpoints": "n_checkpoints",
             "eps": "eps_str"}.get(col, col)
    v = row.get(alias)
    return fmt_eps(row["eps"]) if col == "eps" else v


# -- the front table: one row per (family, knob) of a group, mean ± std over seeds (fronts.md, fronts.csv) ---

FRONT_TABLE = ("family", "knob", "clean", "PGD", "AA", "Mean", "NRR", "seeds", "n", "ε", "data", "model", "schedule")
_FRONT_AXES = {"clean": "clean", "robust": "robust", "PGD": "pgd", "AA": "aa", "Mean": "mean", "NRR": "nrr"}


def front_rows(analyses: list[dict]) -> list[dict]:
    rows = []
    for g in analyses:
        k = g["group"]
        for fam, f in g["families"].items():
            for p in f["points"]:
                rows.append({"family": fam, "knob": p["knob"], **{h: p[a] for h, a in _FRONT_AXES.items()},
                             "seeds": p["n_seeds"], "n": p["n"], "ε": fmt_eps(k["eps"]),
                             "data": f"{k['data']} ({k['split']})", "model": k["model"], "schedule": k["schedule"],
                             "pareto": p["pareto"], "norm": k["norm"], "protocol": k["protocol"]})
    return rows


def front_markdown(analyses: list[dict]) -> str:
    """Accuracies in % as mean ± sample std over seeds; Mean and NRR use AA (else the front's robust axis)."""
    def cell(r, c):
        if c in _FRONT_AXES:
            return "–" if r[c] is None else pm(r[c]["mean"], r[c]["std"], 1)
        return str(r[c] if r[c] is not None else "–")
    return "\n".join(markdown(list(FRONT_TABLE), [[cell(r, c) for c in FRONT_TABLE] for r in front_rows(analyses)])) + "\n"


def write_front_table(analyses: list[dict], md_path: str | Path | None, csv_path: str | Path | None) -> list[Path]:
    """The Markdown table and/or the CSV (fractions, a *_std column beside each; `robust` is the y axis)."""
    from ..checkpoint import write_text_atomic
    files = []
    if md_path is not None:
        files.append(write_text_atomic(md_path, front_markdown(analyses)))
    if csv_path is not None:
        cols = ["family", "knob", "seeds", "n", "ε", "norm", "data", "model", "schedule", "protocol", "pareto"]
        acc = ("clean", "robust", "PGD", "AA", "Mean", "NRR")
        values = [[r[c] for c in cols] + [v for a in acc for v in ((r[a]["mean"], r[a]["std"]) if r[a] else ("", ""))]
                  for r in front_rows(analyses)]
        files.append(write_text_atomic(csv_path, csv_text(cols + [f"{a}{s}" for a in acc for s in ("", "_std")], values)))
    return files


__all__ = ["CSV_COLUMNS", "eps_with_decimal", "fmt_eps", "front_markdown", "front_rows", "markdown", "pm", "run_cells",
           "run_table", "write_front_table"]

"""Fronts written to a folder: per group a figure with its data, and the fronts' tables (what a sweep and the
quickstart write; `report` over folders builds on it)."""
from __future__ import annotations

import re
from pathlib import Path

from ..checkpoint import write_json_atomic
from .maths import analyze
from .table import fmt_eps, write_front_table


def _slug(g: dict, i: int) -> str:
    k = g["group"]
    return re.sub(r"[^A-Za-z0-9._+-]", "_", f"{i:02d}_{k['data']}_{k['split']}_{k['model']}_{k['norm']}_eps{fmt_eps(k['eps'])}")


def save_figure(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path


def write_fronts(results, out_dir: str | Path, *, ref: tuple[float, float] = (0.0, 0.0), k: float = 1.0) -> list[Path]:
    """Per group front_NN_*.png with its data (.json, .csv), and fronts.md / fronts.csv; returns the paths."""
    from .plots import dominance_line, front_note, fronts_figure
    out = Path(out_dir)
    analyses, files = analyze(results, ref=ref, k=k), []
    for i, g in enumerate(analyses):
        stem = out / f"front_{_slug(g, i)}"
        files.append(save_figure(fronts_figure([g]), stem.with_suffix(".png")))
        files.append(write_json_atomic(stem.with_suffix(".json"), {**g, "note": front_note(g),
                                                                    "verdict": dominance_line(g)}))
        files += write_front_table([g], None, stem.with_suffix(".csv"))
    files += write_front_table(analyses, out / "fronts.md", out / "fronts.csv")
    return files

"""A finished sweep's points as `robustfront.fronts` results (one per point and evaluated ε)."""
from __future__ import annotations

import re
from pathlib import Path

from ..validation import parse_number
from .names import format_value
from .point import is_done, read_json

# varied keys that define the comparison (a separate front), not a point on one
GROUP_DEFINING = ("seed", "method", "data", "data_root", "resize", "model", "epochs", "schedule")
_PGD = re.compile(r"pgd([1-9][0-9]*)(?:x([1-9][0-9]*))?")
AA = {"autoattack": "AutoAttack", "autoattack-plus": "AutoAttack+"}


def _strongest_pgd(names) -> str | None:
    pgd = [(int(m.group(1)), int(m.group(2) or 1), a) for a in names if (m := _PGD.fullmatch(a))]
    return max(pgd)[2] if pgd else None


def _knob(varied: dict) -> tuple[str, float | None]:
    """'gamma=0.8' from the point's varied values that are not seeds, methods or group-defining keys."""
    keys = [k for k in varied if k not in GROUP_DEFINING and not k.startswith("model_args.")]
    label = ",".join(f"{k.rpartition('.')[2]}={format_value(varied[k])}" for k in keys)
    value = varied[keys[0]] if len(keys) == 1 else None
    return label, value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _model(cfg: dict) -> str:
    args = cfg.get("model_args") or {}
    return cfg.get("model", "?") + (" (" + ", ".join(f"{k}={v}" for k, v in sorted(args.items())) + ")" if args else "")


def point_results(sweep_dir: str | Path) -> list[dict]:
    """Results of every finished point under SWEEP_DIR/points (those listed in sweep.json when it exists)."""
    root = Path(sweep_dir)
    summary = read_json(root / "sweep.json")
    names = [p["name"] for p in summary["points"]] if summary else sorted(
        d.name for d in (root / "points").iterdir() if d.is_dir()) if (root / "points").is_dir() else []
    out = []
    for name in names:
        folder = root / "points" / name
        rec = read_json(folder / "point.json")
        if rec is None or not is_done(folder, rec):
            continue
        ev, cfg = read_json(folder / "eval.json"), rec["config"]
        knob, value = _knob(rec["varied"])
        entries = ev.get("sweep", [ev])
        for e in entries:
            ra = e["robust_acc"]
            aa_name = next((a for a in ("autoattack-plus", "autoattack") if a in ra), None)
            pgd = _strongest_pgd(ra)
            robust_name = AA[aa_name] if aa_name else next(iter(ra)) if len(ra) == 1 else "worst case of " + "+".join(ra)
            out.append({"family": cfg.get("method"), "knob": knob, "knob_value": value, "seed": cfg.get("seed", 0),
                        "clean": e["clean_acc"], "robust": ra[aa_name] if aa_name else e["worst_case_acc"],
                        "robust_name": robust_name, "pgd": ra[pgd] if pgd else None, "aa": ra[aa_name] if aa_name else None,
                        "data": ev.get("data", cfg.get("data")), "split": ev.get("split", "test"), "norm": e["norm"],
                        "eps": parse_number(e["eps"], "eps"), "n": e["n"],
                        "protocol": f"attacks={'+'.join(ra)};n={e['n']};seed={e['seed']}",
                        "model": _model(cfg), "schedule": f"{cfg.get('epochs')} epochs {cfg.get('schedule')}",
                        "run": str(folder)})
    return out


def sweep_fronts(sweep_dir: str | Path, out_dir: str | Path | None = None, *, ref=(0.0, 0.0), k: float = 1.0) -> list[Path]:
    """Fronts of a sweep (PNG, JSON, CSV per group; fronts.md/.csv) under OUT_DIR (default SWEEP_DIR/fronts)."""
    from ..fronts import write_fronts
    results = point_results(sweep_dir)
    if not results:
        raise ValueError(f"sweep folder {sweep_dir} has no finished point (no points/*/eval.json matching its "
                         f"point.json); allowed: a folder written by run_sweep with at least one point done")
    return write_fronts(results, Path(out_dir) if out_dir else Path(sweep_dir) / "fronts", ref=ref, k=k)


__all__ = ["point_results", "sweep_fronts"]

"""A finished sweep's points as rows of the front wing (`robustfront.fronts.rows`: one per point and ε)."""
from __future__ import annotations

from pathlib import Path

from ..fronts.rows import rows_from_eval
from .names import format_value
from .point import is_done, read_json

# varied keys that define the comparison (a separate front), not a point on one
GROUP_DEFINING = ("seed", "method", "data", "data_root", "resize", "model", "epochs", "schedule")


def _knob(varied: dict) -> tuple[str, float | None]:
    """'gamma=0.8' from the point's varied values that are not seeds, methods or group-defining keys."""
    keys = [k for k in varied if k not in GROUP_DEFINING and not k.startswith("model_args.")]
    label = ",".join(f"{k.rpartition('.')[2]}={format_value(varied[k])}" for k in keys)
    value = varied[keys[0]] if len(keys) == 1 else None
    return label, value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def point_names(sweep_dir: str | Path) -> list[str]:
    """The sweep's point names: those listed in sweep.json when it exists, else the folders under points/."""
    root = Path(sweep_dir)
    summary = read_json(root / "sweep.json")
    if summary:
        return [p["name"] for p in summary["points"]]
    return sorted(d.name for d in (root / "points").iterdir() if d.is_dir()) if (root / "points").is_dir() else []


def point_dirs(sweep_dir: str | Path) -> list[Path]:
    """The run folders of the sweep's points that training has started (they hold config.yaml)."""
    root = Path(sweep_dir)
    return [root / "points" / n for n in point_names(root) if (root / "points" / n / "config.yaml").is_file()]


def _check_readable(path: Path) -> None:
    """An eval.json that exists but does not parse is refused, as `report` does, not left out unsaid."""
    if path.is_file() and read_json(path) is None:
        raise ValueError(f"{path} is not a readable JSON evaluation result; allowed: a file robustfront wrote "
                         f"(delete it and re-run the sweep to evaluate that point again)")


def point_results(sweep_dir: str | Path) -> list[dict]:
    """Results of every finished point under SWEEP_DIR/points (those listed in sweep.json when it exists)."""
    root = Path(sweep_dir)
    out = []
    for name in point_names(root):
        folder = root / "points" / name
        rec = read_json(folder / "point.json")
        _check_readable(folder / "eval.json")
        if rec is None or not is_done(folder, rec):
            continue
        knob, value = _knob(rec["varied"])
        out += rows_from_eval(read_json(folder / "eval.json"), rec["config"], knob=knob, knob_value=value,
                              run=f"points/{name}", family=rec["config"].get("method"))
    return out


def sweep_fronts(sweep_dir: str | Path, out_dir: str | Path | None = None, *, ref=(0.0, 0.0), k: float = 1.0) -> list[Path]:
    """Fronts of a sweep (PNG, JSON, CSV per group; fronts.md/.csv) under OUT_DIR (default SWEEP_DIR/fronts)."""
    from ..fronts.write import write_fronts
    results = point_results(sweep_dir)
    if not results:
        raise ValueError(f"sweep folder {sweep_dir} has no finished point (no points/*/eval.json matching its "
                         f"point.json); allowed: a folder written by run_sweep with at least one point done")
    return write_fronts(results, Path(out_dir) if out_dir else Path(sweep_dir) / "fronts", ref=ref, k=k)


__all__ = ["point_dirs", "point_names", "point_results", "sweep_fronts"]

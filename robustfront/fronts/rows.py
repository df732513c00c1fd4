"""The one row type of the front wing: an evaluated run at one ε, built from an `EvalResult` and the
run's config, and the reader of run folders that yields them.

A row is a dict with the keys the front maths needs (`maths.REQUIRED`) and the table's:

    family, knob, knob_value   method family, the knob's label ("gamma=0.8"; "" for none), its value
    seed                       the *training* seed (config); eval_seed is the evaluation's subset seed
    clean, robust, pgd, cw, aa, worst_case, mean, nrr
                               accuracies in [0, 1] (means over checkpoints); robust is the front's y
                               axis: AutoAttack (plus, else standard) when evaluated, else the worst
                               case over the attacks; std: {axis: sample std over checkpoints or None}
    robust_name                "AutoAttack", "AutoAttack+", "worst case of pgd20+cw", "held-out PGD-10 (val)"
    data, split, norm, eps, eps_str, n, protocol, model, schedule   what the front is grouped by
    run, source, attacks, n_checkpoints, wa, select   where the row comes from and how it was chosen
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from ..checkpoint import read_yaml
from ..eval.metrics import mean_nrr
from ..eval.result import EvalResult

AXES = ("clean", "pgd", "cw", "aa", "worst_case", "mean", "nrr")
AA_NAMES = {"autoattack": "AutoAttack", "autoattack_plus": "AutoAttack+"}
_PGD = re.compile(r"pgd([1-9][0-9]*)(?:x([1-9][0-9]*))?")


def strongest_pgd(names) -> str | None:
    """The pgdK / pgdKxR attack with the most steps (then restarts)."""
    pgd = [(int(m.group(1)), int(m.group(2) or 1), a) for a in names if (m := _PGD.fullmatch(a))]
    return max(pgd)[2] if pgd else None


def model_label(cfg: dict) -> str:
    args = cfg.get("model_args") or {}
    return cfg.get("model", "?") + (" (" + ", ".join(f"{k}={v}" for k, v in sorted(args.items())) + ")" if args else "")


def schedule(cfg: dict) -> str:
    """"15 epochs cosine" ("1 epoch ..." for one; "" without a config)."""
    if not cfg:
        return ""
    n = cfg.get("epochs")
    return f"{n} epoch{'' if n == 1 else 's'} {cfg.get('schedule')}"


def _wa(cfg: dict) -> str:
    return f"EMA {cfg['ema']}" if cfg.get("ema") is not None else "off"


def _select(cfg: dict, checkpoints: list[str]) -> str:
    """How the evaluated checkpoint was chosen: best.pt by PGD on the config's split, last.pt, or a file."""
    names = {Path(c).name for c in checkpoints}
    if names == {"best.pt"}:
        return f"best PGD ({cfg.get('select_on', 'val')})" if cfg else "best.pt"
    if names == {"last.pt"}:
        return "last epoch"
    return ", ".join(sorted(names)) or "–"


def rows_from_eval(ev, cfg: dict, *, knob: str = "", knob_value=None, family: str | None = None,
                   run: str | None = None, source: str = "eval.json", largest_only: bool = False) -> list[dict]:
    """One row per evaluated ε of `ev` (an `EvalResult`, or the JSON `robustfront eval` writes)."""
    r = ev if isinstance(ev, EvalResult) else EvalResult.from_json(ev)
    points = r.points[-1:] if largest_only else r.points
    out = []
    for p in points:
        aa_name = p.ra_source if p.ra_source and p.ra_source.startswith("autoattack") else \
            next((a for a in ("autoattack_plus", "autoattack") if a in p.robust), None) if p.ra_source is None else None
        pgd = strongest_pgd(p.robust)
        picked = {"clean": p.clean, "pgd": p.robust.get(pgd) if pgd else None,
                  "cw": p.robust.get("cw", p.robust.get("cw0")), "aa": p.aa, "worst_case": p.worst_case,
                  "mean": p.mean, "nrr": p.nrr}
        row = {k: None if v is None else v.mean for k, v in picked.items()}
        if row["mean"] is None:  # files older than Mean/NRR in the JSON
            ra = row["aa"] if row["aa"] is not None else row["worst_case"]
            row["mean"], row["nrr"] = mean_nrr(row["clean"], ra) if ra is not None else (None, None)
        attacks = "+".join(p.robust)
        name = AA_NAMES.get(aa_name) if p.aa is not None else None
        name = name or (next(iter(p.robust)) if len(p.robust) == 1 else f"worst case of {attacks}")
        out.append({**row, "std": {k: None if v is None else v.std for k, v in picked.items()},
                    "robust": row["aa"] if row["aa"] is not None else row["worst_case"], "robust_name": name,
                    "family": family or _first(r.methods) or cfg.get("method", "?"), "knob": knob,
                    "knob_value": knob_value, "seed": cfg.get("seed", 0), "eval_seed": r.seed,
                    "data": r.data or cfg.get("data", "?"), "split": r.split or "test", "norm": r.norm or "Linf",
                    "eps": float(p.eps), "eps_str": _eps_str(r, p.eps), "n": r.n,
                    "protocol": f"attacks={attacks};n={r.n};seed={r.seed}",
                    "model": _model(r, cfg),
                    "schedule": schedule(cfg),
                    "run": run, "source": source, "attacks": attacks, "ra_source": p.ra_source, "n_checkpoints": r.n_checkpoints,
                    "wa": _wa(cfg), "select": _select(cfg, r.checkpoints)})
    return out


def _model(r: EvalResult, cfg: dict) -> str:
    """The evaluated model as the eval file names it; with the config's model_args where it is the config's."""
    named = _first(r.models)
    return model_label(cfg) if cfg and named in (None, cfg.get("model")) else named or "?"


def _first(values) -> str | None:
    return ", ".join(values) if values else None


def _eps_str(r: EvalResult, eps: float) -> str | None:
    """The ε as the user wrote it ("8/255"), where the eval file kept it."""
    from fractions import Fraction
    for s in r.eps_str:
        try:
            if abs(float(Fraction(s.strip())) - eps) <= 1e-9:
                return s.strip()
        except (ValueError, ZeroDivisionError):
            continue
    return None


def val_row(run: dict) -> dict | None:
    """A run without an eval file: its last held-out validation numbers (metrics.jsonl), or None."""
    cfg, val = run["config"], [m for m in run["metrics"] if "val_clean_acc" in m]
    if not val:
        return None
    m = val[-1]
    sa, ra = m["val_clean_acc"], m.get("val_pgd_acc")
    mean, nrr = mean_nrr(sa, ra) if ra is not None else (None, None)
    split = m.get("val_split", "val")  # "test" for runs with select_on=test
    setting = f"held-out PGD-{cfg.get('eval_steps', 10)} ({split})"
    eps = cfg.get("eps")
    return {"clean": sa, "pgd": ra, "cw": None, "aa": None, "worst_case": ra, "mean": mean, "nrr": nrr,
            "std": {a: None for a in AXES}, "robust": ra, "robust_name": setting, "family": cfg.get("method", "?"),
            "knob": "", "knob_value": None, "seed": cfg.get("seed", 0), "eval_seed": None,
            "data": cfg.get("data", "?"), "split": split, "norm": cfg.get("norm", "Linf"),
            "eps": _as_float(eps), "eps_str": eps if isinstance(eps, str) else None,
            "n": cfg.get("eval_n") or "val split", "protocol": setting, "model": model_label(cfg),
            "schedule": schedule(cfg), "run": run["name"],
            "source": f"metrics.jsonl epoch {m['epoch']}", "attacks": setting, "ra_source": "val_pgd", "n_checkpoints": 1,
            "wa": _wa(cfg), "select": f"epoch {m['epoch']}"}


def _as_float(v) -> float:
    from fractions import Fraction
    return float(Fraction(v.strip())) if isinstance(v, str) else float(v or 0.0)


def read_run(run: Path) -> dict:
    """{name, path, config, metrics, evals: [(file name, EvalResult)]} of a run folder; bad files are one line."""
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


# config keys that never make two runs different points of one front
_NOT_A_KNOB = {"seed", "out", "device", "progress", "method", "data_root", "log_every", "workers", "resume"}


def run_rows(runs: list[dict]) -> list[dict]:
    """Rows of run folders: one per eval file at its largest ε (else the validation fallback). The knob of
    a run is what its config sets differently from the other runs of its method (`gamma=0.8`); runs that
    still collide on (method, knob, seed) are told apart by their folder names."""
    rows = []
    for r in runs:
        made = [row for f, e in r["evals"]
                for row in rows_from_eval(e, r["config"], run=r["name"], source=f, largest_only=True)]
        rows += made or [x for x in [val_row(r)] if x is not None]
    by_method: dict[str, list[dict]] = {}
    for r in runs:
        by_method.setdefault(r["config"].get("method", "?"), []).append(r["config"])
    for row in rows:
        cfgs = by_method.get(row["family"], [])
        cfg = next((r["config"] for r in runs if r["name"] == row["run"]), {})
        keys = sorted(k for k in cfg if k not in _NOT_A_KNOB and len({json.dumps(c.get(k), sort_keys=True, default=str)
                                                                         for c in cfgs}) > 1)
        row["knob"] = ",".join(f"{k}={_short(cfg[k])}" for k in keys)
    for name in (lambda r: r["run"], lambda r: f"{r['run']}/{r['source']}"):
        key = lambda r: (r["family"], r["knob"], r["seed"], r["eps"], r["protocol"])  # noqa: E731
        counts: dict[tuple, int] = {}
        for row in rows:
            counts[key(row)] = counts.get(key(row), 0) + 1
        for row in [r for r in rows if counts[key(r)] > 1]:
            row["knob"] = name(row)
    return rows


def _short(v) -> str:
    if isinstance(v, dict):
        return "{" + ",".join(f"{k}={_short(x)}" for k, x in sorted(v.items())) + "}"
    return f"{v:g}" if isinstance(v, float) else str(v)


__all__ = ["AXES", "read_run", "rows_from_eval", "run_rows", "strongest_pgd", "val_row"]

"""A typed evaluation result, read from any JSON `evaluate` / `robustfront eval` writes.

Three shapes exist on disk: one ε, an ε sweep ({"eps": [...], "sweep": [...]}), and several
checkpoints ({"checkpoints": [...], "aggregate": ...}). `EvalResult.from_json` reads all three into
one form, a sweep of `EpsPoint`s (a single ε is a sweep of one) whose numbers are `Value`s (the mean
over checkpoints and its sample std; std None for one checkpoint), so that readers such as the
report never branch on dict shapes. `to_json` writes that form; `from_json(to_json(r)) == r`. `raw` keeps
the JSON the result was read from (what `robustfront eval --out` writes: masks, logs, provenance); it
takes no part in comparisons and is not written by `to_json`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

FORMAT = "robustfront-eval/2"


def _canonical(name: str) -> str:
    """Older files spell the official attacks with hyphens ("apgd-ce", "autoattack-plus")."""
    return name.replace("-", "_")


@dataclass(frozen=True)
class Value:
    mean: float
    std: float | None = None      # sample std over checkpoints; None for a single one
    values: tuple = ()            # the per-checkpoint values (empty for a single one)

    @classmethod
    def read(cls, v) -> "Value | None":
        if v is None:
            return None
        if isinstance(v, dict):
            std = v.get("std")
            return cls(float(v["mean"]), None if std is None else float(std),
                       tuple(float(x) for x in v.get("values") or ()))
        return cls(float(v))


@dataclass(frozen=True)
class EpsPoint:
    eps: float
    clean: Value
    robust: dict[str, Value]
    worst_case: Value | None
    mean: Value | None
    nrr: Value | None
    ra_source: str | None = None

    @classmethod
    def read(cls, d: dict) -> "EpsPoint":
        robust = {_canonical(k): Value.read(v) for k, v in d.get("robust_acc", d.get("robust", {})).items()}
        get = lambda *keys: next((d[k] for k in keys if k in d), None)  # noqa: E731
        src = get("ra_source")
        return cls(float(d["eps"]), Value.read(get("clean_acc", "clean")), robust,
                   Value.read(get("worst_case_acc", "worst_case")), Value.read(d.get("mean")),
                   Value.read(d.get("nrr")), None if src is None else _canonical(src))

    @property
    def aa(self) -> Value | None:
        """Accuracy under the AutoAttack cascade that Mean and NRR use (None when none ran)."""
        if self.ra_source and self.ra_source.startswith("autoattack"):
            return self.robust.get(self.ra_source)
        aa = [a for a in ("autoattack", "autoattack_plus") if a in self.robust]
        return self.robust[aa[-1]] if aa and self.ra_source is None else None


@dataclass
class EvalResult:
    points: list[EpsPoint]                 # sorted by ε
    norm: str | None = None
    n: int | None = None
    seed: int | None = None
    data: str | None = None
    split: str | None = None
    models: list[str] = field(default_factory=list)
    methods: list[str] = field(default_factory=list)
    checkpoints: list[str] = field(default_factory=list)
    eps_str: list[str] = field(default_factory=list)
    sanity: list[dict] = field(default_factory=list)   # one per checkpoint that ran the checks
    raw: dict = field(default_factory=dict, compare=False, repr=False)  # the JSON read (evaluate's full result)

    @property
    def largest(self) -> EpsPoint | None:
        return self.points[-1] if self.points else None

    @property
    def n_checkpoints(self) -> int:
        return max(1, len(self.checkpoints))

    @classmethod
    def from_json(cls, d: dict) -> "EvalResult":
        if d.get("format") == FORMAT:
            pts = [EpsPoint.read(p) for p in d["points"]]
            return cls(sorted(pts, key=lambda p: p.eps), raw=d, **{k: d.get(k) for k in
                       ("norm", "n", "seed", "data", "split")},
                       **{k: list(d.get(k) or []) for k in ("models", "methods", "checkpoints", "eps_str", "sanity")})
        runs = d.get("checkpoints") or [d]
        agg = d.get("aggregate") if "checkpoints" in d else d
        singles = agg["sweep"] if "sweep" in agg else [agg]
        pts = sorted((EpsPoint.read(s) for s in singles if "eps" in s), key=lambda p: p.eps)
        eps_str = d.get("eps_str", runs[0].get("eps_str"))
        first = runs[0]
        return cls(pts, norm=d.get("norm", first.get("norm")), n=d.get("n", first.get("n")),
                   seed=d.get("seed", first.get("seed")), data=d.get("data", first.get("data")),
                   split=first.get("split", d.get("split")),
                   models=_distinct(r.get("model") for r in runs), methods=_distinct(r.get("method") for r in runs),
                   checkpoints=_distinct(r.get("checkpoint") for r in runs),
                   eps_str=[eps_str] if isinstance(eps_str, str) else list(eps_str or []),
                   sanity=[r["sanity"] for r in runs if r.get("sanity")], raw=d)

    def to_json(self) -> dict:
        d = asdict(replace(self, points=[], raw={}))
        del d["raw"]
        d["points"] = [{**asdict(p), "robust": {k: asdict(v) for k, v in p.robust.items()}} for p in self.points]
        return {"format": FORMAT, **d}


def _distinct(values) -> list[str]:
    return list(dict.fromkeys(str(v) for v in values if v is not None))


__all__ = ["EpsPoint", "EvalResult", "FORMAT", "Value"]

"""The maths of accuracy–robustness fronts: per method family, the (clean, robust) points its trade-off knob reaches,
as mean ± std over seeds, the Pareto-optimal ones joined, the area they dominate, and which points of
one front another dominates beyond the seed noise.

A *result* (one evaluated run) is a dict:

    family     method family ("ca_at")              knob        the knob setting's label ("gamma=0.8"; "" for none)
    seed       training seed                        clean, robust   accuracies in [0, 1]; robust is the front's
    data, split, norm, eps, protocol                             y axis (AutoAttack when evaluated)
    model, schedule                                 what was trained and for how long
    optional:  pgd, aa (accuracies), n (images), robust_name ("AutoAttack"), knob_value (orders the table), run

Results are grouped by (data, split, norm, ε, protocol, model, schedule): a front never mixes data
sets, budgets, norms, evaluation protocols, models or schedules. Within a group, the results of one
(family, knob) are averaged over seeds: mean and sample std (ddof = 1; 0 for one seed) in each axis.

Definitions (means m, stds s; both axes higher is better):
- Pareto-optimal: no other point of the same family is >= in both coordinates and > in one.
- hypervolume: the area of the union of the boxes [ref_c, c] x [ref_r, r] over the family's means
  (exact in 2-D; default ref (0, 0), so it is the area the front dominates in accuracy space).
- dominance of point a (front A) by point b (front B): plain when b >= a in both means and > in one;
  *beyond the seed noise* when b - a > k * sqrt(s_a^2 + s_b^2) in BOTH coordinates (k = 1 by default:
  the combined seed-to-seed spread, a margin rather than a significance test).
"""
from __future__ import annotations

import math

from ..eval.metrics import mean_nrr

REQUIRED = ("family", "knob", "seed", "clean", "robust", "data", "norm", "eps", "protocol")
DEFAULTS = {"split": "test", "model": "", "schedule": "", "pgd": None, "aa": None, "n": None, "robust_name": "robust",
            "knob_value": None, "run": None}
GROUP_KEYS = ("data", "split", "norm", "eps", "protocol", "model", "schedule")
AXES = ("clean", "robust", "pgd", "aa", "mean", "nrr")


def check_results(results) -> list[dict]:
    """Results with defaults filled in; a missing key or an accuracy outside [0, 1] is one ValueError line."""
    out = []
    for i, r in enumerate(results):
        missing = [k for k in REQUIRED if k not in r]
        if missing:
            raise ValueError(f"result {i} lacks {missing}; allowed: dicts with {', '.join(REQUIRED)}")
        for k in ("clean", "robust", "pgd", "aa"):
            v = r.get(k)
            if v is not None and not (isinstance(v, (int, float)) and 0.0 <= v <= 1.0):
                raise ValueError(f"result {i}: {k}={v!r} is not an accuracy; allowed: a number in [0, 1]")
        out.append({**DEFAULTS, **r, "eps": float(r["eps"])})
    return out


def group_key(r: dict) -> tuple:
    return tuple(round(r[k], 9) if k == "eps" else r[k] for k in GROUP_KEYS)


def group_results(results) -> dict[tuple, list[dict]]:
    """Results by (data, split, norm, ε, protocol, model, schedule), groups in sorted order."""
    groups: dict[tuple, list[dict]] = {}
    for r in check_results(results):
        groups.setdefault(group_key(r), []).append(r)
    return {k: groups[k] for k in sorted(groups, key=lambda t: tuple(map(str, t)))}


def mean_std(values: list[float]) -> dict:
    m = sum(values) / len(values)
    s = math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return {"mean": m, "std": s}


def summarize(results) -> list[dict]:
    """Mean ± std over seeds per (family, knob) of ONE group; results spanning groups are refused."""
    results = check_results(results)
    keys = {group_key(r) for r in results}
    if len(keys) > 1:
        raise ValueError(f"results span {len(keys)} groups (data, split, norm, eps, protocol, model, schedule); "
                         f"allowed: one group (use group_results first)")
    cells: dict[tuple, list[dict]] = {}
    for r in results:
        cells.setdefault((r["family"], r["knob"]), []).append(r)
    out = []
    for (family, knob), rs in cells.items():
        seeds = [r["seed"] for r in rs]
        if len(set(seeds)) < len(seeds):
            raise ValueError(f"family {family!r} knob {knob!r} has seed(s) {sorted({s for s in seeds if seeds.count(s) > 1})} "
                             f"twice; allowed: one result per seed")
        p = {"family": family, "knob": knob, "knob_value": rs[0]["knob_value"], "seeds": sorted(seeds),
             "n_seeds": len(rs), "n": rs[0]["n"], "runs": [r["run"] for r in rs]}
        for ax in ("clean", "robust", "pgd", "aa"):
            vals = [r[ax] for r in rs if r[ax] is not None]
            p[ax] = mean_std(vals) if len(vals) == len(rs) else None
        mn = [mean_nrr(  # per seed, then averaged
            r["clean"], r["aa"] if r["aa"] is not None else r["robust"]) for r in rs]
        p["mean"], p["nrr"] = mean_std([m for m, _ in mn]), mean_std([n for _, n in mn])
        out.append(p)
    return sorted(out, key=lambda p: (p["family"], p["knob_value"] is None, p["knob_value"] or 0, p["knob"]))


def pareto_mask(points: list[tuple[float, float]]) -> list[bool]:
    """True for the points no other point weakly dominates (>= in both, > in one); higher is better."""
    return [not any(q[0] >= p[0] and q[1] >= p[1] and (q[0] > p[0] or q[1] > p[1]) for q in points) for p in points]


def hypervolume(points: list[tuple[float, float]], ref: tuple[float, float] = (0.0, 0.0)) -> float:
    """Exact 2-D dominated area: the union of boxes [ref, p] (points not beyond ref in both add nothing)."""
    area, top = 0.0, ref[1]
    for c, r in sorted((p for p in points if p[0] > ref[0] and p[1] > ref[1]), key=lambda p: (-p[0], -p[1])):
        if r > top:  # widest boxes first: each adds the strip above the highest one so far
            area += (c - ref[0]) * (r - top)
            top = r
    return area


def _beats(b: dict, a: dict, k: float) -> tuple[bool, bool]:
    bc, br, ac, ar = b["clean"]["mean"], b["robust"]["mean"], a["clean"]["mean"], a["robust"]["mean"]
    plain = bc >= ac and br >= ar and (bc > ac or br > ar)
    noise_c = k * math.hypot(a["clean"]["std"], b["clean"]["std"])
    noise_r = k * math.hypot(a["robust"]["std"], b["robust"]["std"])
    return plain, (bc - ac > noise_c and br - ar > noise_r)


def dominance(front_a: list[dict], front_b: list[dict], *, k: float = 1.0) -> dict:
    """Which points of A (summaries of one family) are dominated by B's, plainly and beyond the seed noise."""
    rows = []
    for a in front_a:
        plain = [b["knob"] for b in front_b if _beats(b, a, k)[0]]
        noisy = [b["knob"] for b in front_b if _beats(b, a, k)[1]]
        rows.append({"knob": a["knob"], "dominated_by": plain, "dominated_beyond_noise_by": noisy})
    return {"a": front_a[0]["family"] if front_a else None, "b": front_b[0]["family"] if front_b else None, "k": k,
            "n": len(front_a), "n_dominated": sum(bool(r["dominated_by"]) for r in rows),
            "n_dominated_beyond_noise": sum(bool(r["dominated_beyond_noise_by"]) for r in rows), "points": rows}


def analyze(results, *, ref: tuple[float, float] = (0.0, 0.0), k: float = 1.0) -> list[dict]:
    """One entry per group: its key, each family's averaged points with Pareto flags and hypervolume,
    and the dominance summary of every ordered pair of families."""
    out = []
    for rs in group_results(results).values():
        fams: dict[str, dict] = {}
        for p in summarize(rs):
            fams.setdefault(p["family"], {"points": []})["points"].append(p)
        for f in fams.values():
            means = [(p["clean"]["mean"], p["robust"]["mean"]) for p in f["points"]]
            for p, on in zip(f["points"], pareto_mask(means)):
                p["pareto"] = on
            f["pareto"] = [p["knob"] for p in sorted(f["points"], key=lambda p: p["clean"]["mean"]) if p["pareto"]]
            f["hypervolume"] = hypervolume(means, ref)
        pairs = [dominance(fams[a]["points"], fams[b]["points"], k=k) for a in fams for b in fams if a != b]
        out.append({"group": {k: rs[0][k] for k in GROUP_KEYS}, "robust_name": rs[0]["robust_name"], "reference": list(ref),
                    "n": rs[0]["n"], "seeds": sorted({r["seed"] for r in rs}), "families": fams, "dominance": pairs})
    return out


__all__ = ["DEFAULTS", "GROUP_KEYS", "REQUIRED", "analyze", "check_results", "dominance", "group_key",
           "group_results", "hypervolume", "mean_std", "pareto_mask", "summarize"]

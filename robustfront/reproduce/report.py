"""reproduce.json / reproduce.md: per entry, paper | ours (a) | ours (b) | Δ | verdict, with WA, label
smoothing and the selection rule stated on every row, and the fronts of figure series.

Verdict (protocol (a) against the paper's number): "within 2 std" when |Δ| <= 2·std over seeds,
else "above" / "below"; with one seed there is no std and the verdict says so. Protocol (b) is the
standard the library vouches for; its column sits beside (a), its Δ is not taken against a paper
number measured another way.
"""
from __future__ import annotations

import statistics
from pathlib import Path

from ..checkpoint import write_json_atomic, write_text_atomic
from .protocols import metric_keys


def _ms(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def _fmt(m, s) -> str:
    if m is None:
        return "not run"
    return f"{100 * m:.2f}" + (f" ± {100 * s:.2f}" if s is not None else " (1 seed)")


def verdict(paper: float | None, mean: float | None, std: float | None) -> str:
    if paper is None or mean is None:
        return "—"
    if std is None:
        return "n/a (1 seed)"
    delta = 100 * mean - paper
    return "within 2 std" if abs(delta) <= 2 * 100 * std else ("above" if delta > 0 else "below")


def _group(rows: list[dict]) -> dict:
    """Points of one entry grouped by their non-seed values (a figure series has one group per value)."""
    groups = {}
    for r in rows:
        key = ",".join(f"{k}={v}" for k, v in r["varied"].items() if k != "seed") or "-"
        groups.setdefault(key, []).append(r)
    return groups


def _metrics(rows: list[dict], protocol: str) -> dict:
    rows = [r for r in rows if protocol in r]
    if not rows:
        return {}
    vals = {"clean": [r[protocol]["clean"] for r in rows]}
    for r in rows:
        for k, v in r[protocol]["robust"].items():
            vals.setdefault(k, []).append(v)
    return {k: _ms(v) for k, v in vals.items()}


def _front(points: list[tuple[str, float, float]]) -> list[str]:
    """Keys of the non-dominated (clean, robust) points (both higher is better)."""
    return [k for k, c, r in points
            if not any((c2 >= c and r2 >= r) and (c2 > c or r2 > r) for _, c2, r2 in points)]


def entry_report(e, rows: list[dict]) -> dict:
    nums = e.numbers or {}
    out = {"id": e.id, "paper": e.paper, "table": e.table, "what": e.what, "status": e.status,
           "wa": bool(e.raw.get("wa")), "label_smoothing": bool(e.raw.get("label_smoothing")),
           "selection": e.selection if e.config else None, "paper_numbers": nums or "unavailable",
           "protocol_a": e.protocol["label"], "groups": []}
    for key, grp in _group(rows).items():
        a, b = _metrics(grp, "paper"), _metrics(grp, "standard")
        table = []
        order = ["clean", *metric_keys(e.protocol, None)]   # the protocol's order: δ ascending, as listed
        for m in sorted({"clean", *nums, *a}, key=lambda k: (order.index(k) if k in order else len(order), k)):
            pm = nums.get(m)
            am, asd = a.get(m, (None, None))
            bm, bsd = b.get("clean" if m == "clean" else "autoattack", (None, None))
            table.append({"metric": m, "paper": pm, "a_mean": am, "a_std": asd, "b_metric": "clean" if m == "clean"
                          else "autoattack", "b_mean": bm, "b_std": bsd,
                          "delta": None if pm is None or am is None else 100 * am - pm, "verdict": verdict(pm, am, asd)})
        out["groups"].append({"point": key, "seeds": len(grp), "rows": table,
                              "standard": {k: {"mean": v[0], "std": v[1]} for k, v in b.items()}})
    if e.grid and out["groups"] and all("clean" in g["standard"] for g in out["groups"]):
        pts = [(g["point"], g["standard"]["clean"]["mean"], g["standard"].get("autoattack", {}).get("mean") or 0.0)
               for g in out["groups"]]
        out["front_standard"] = {"points": [{"point": k, "clean": c, "autoattack": r} for k, c, r in pts],
                                 "non_dominated": _front(pts)}
    return out


def _md_entry(r: dict) -> list[str]:
    flags = f"WA {'on' if r['wa'] else 'off'}, label smoothing {'on' if r['label_smoothing'] else 'off'}"
    lines = [f"### {r['id']}", "", f"{r['what']} — {flags}; selection: {r['selection']}",
             f"(a) = {r['protocol_a']}; (b) = robustfront standard (AutoAttack column shown)", ""]
    lines += [f"**failed point** {f}" for f in r.get("failed", [])] + ([""] if r.get("failed") else [])
    if not r["groups"]:
        return lines + ["not run", ""]
    lines += ["| point | metric | paper | ours (a) | ours (b) | Δ (a − paper) | verdict | WA | LS | selection |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for g in r["groups"]:
        for t in g["rows"]:
            delta = "—" if t["delta"] is None else f"{t['delta']:+.2f}"
            lines.append(f"| {g['point']} | {t['metric']} | {'—' if t['paper'] is None else t['paper']} | "
                         f"{_fmt(t['a_mean'], t['a_std'])} | {t['b_metric']} {_fmt(t['b_mean'], t['b_std'])} | "
                         f"{delta} | "
                         f"{t['verdict']} | {'on' if r['wa'] else 'off'} | {'on' if r['label_smoothing'] else 'off'} | "
                         f"{r['selection']} |")
    if "front_standard" in r:
        nd = r["front_standard"]["non_dominated"]
        lines += ["", "Front (protocol (b), clean vs AutoAttack): " + "; ".join(
            f"{p['point']}: {100 * p['clean']:.1f} / {100 * p['autoattack']:.1f}{' *' if p['point'] in nd else ''}"
            for p in r["front_standard"]["points"]) + " (* non-dominated)"]
    return lines + [""]


def write_report(entries, results: dict, out, *, tiny: bool, eval_n, failed: dict | None = None) -> dict:
    out = Path(out)
    reps = [entry_report(e, results.get(e.id, [])) for e in entries]
    for r in reps:
        r["failed"] = (failed or {}).get(r["id"], [])
    doc = {"scale": "tiny" if tiny else "full", "eval_n": eval_n, "entries": reps,
           "not_trained": [{"id": e.id, "status": e.status, "reason": e.raw.get("reason")}
                           for e in entries if e.status != "train"]}
    lines = ["# Reproduction: paper vs robustfront", ""]
    if eval_n:
        lines += [f"Evaluated on a seeded subset of {eval_n} test images (not the full test set).", ""]
    if tiny:
        lines += ["**Scale tiny: a CPU smoke run (digits, tiny model, 1 epoch, attacks capped). These numbers say "
                  "the pipeline runs, nothing about the papers.**", ""]
    for table in dict.fromkeys(r["table"] for r in reps if r["status"] == "train"):
        rs = [r for r in reps if r["table"] == table and r["status"] == "train"]
        lines += [f"## {table}", ""]
        if len({r["wa"] for r in rs}) > 1 or len({r["label_smoothing"] for r in rs}) > 1:
            lines += ["**Warning: this table mixes entries with WA / label smoothing on and off (see each row).**", ""]
        for r in rs:
            lines += _md_entry(r)
    if doc["not_trained"]:
        lines += ["## Not trained", ""] + [f"- {d['id']} ({d['status']}): {d['reason']}" for d in doc["not_trained"]]
    write_json_atomic(out / "reproduce.json", doc)
    write_text_atomic(out / "reproduce.md", "\n".join(lines) + "\n")
    return doc


__all__ = ["entry_report", "verdict", "write_report"]

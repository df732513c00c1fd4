"""The suite's state on disk, and the result built from it (suite.py runs the attacks).

A state folder holds

    suite.json              what the evaluation is (attacks, ε values, norm, seed, batch and chunk
                            size, the points' ids, sha256 of the points and of the weights), plus its
                            provenance (checkpoint, data, ...); a later run on the folder must match it
    eps-0/chunk-000003.json one chunk's clean mask and its mask under each of robustfront's own attacks
                            (with times), rewritten after every attack
    eps-0/autoattack/       an official attack's own cascade state folder (cascade_state.py): a version's
    eps-0/square/           cascade, or a cascade of one official attack (square, fab_t, apgd_ce, ...)
    result.json             the result, once every chunk of every ε is finished

(one eps-k folder per ε of a sweep, in the order given). Files are replaced atomically, so a kill
loses at most the attack in flight on one chunk (a cascade: the batch in flight). The result is
built from the chunk records only (`build_result`), by the run that finishes and by a merge of
shard folders alike, which is why the two are identical.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..attacks import AUTOATTACK_NAMES
from ..attacks.official import OFFICIAL
from ..state import StateFolder
from .cascade_state import CascadeState, finished as cascade_finished, summarize
from .masks import Masks, from_bits, from_ranges
from .metrics import mean_nrr

FORMAT = 1
SUITE, RESULT = "suite.json", "result.json"
VERSION = {"autoattack": "standard", "autoattack_plus": "plus", "autoattack_rand": "rand"}
# may differ between a run and its resume (a moved checkpoint, --batch-size given the value chosen before)
UNCHECKED = ("provenance", "run")


def ours(name: str) -> str:
    """robustfront's spelling of an official name: "apgd-ce" -> "apgd_ce", "autoattack-plus" -> "autoattack_plus"."""
    return name.replace("-", "_")


def official_run(name: str) -> tuple[str, list[str] | None]:
    """(version, single attacks) of an official name: a version's cascade (autoattack, ...), or a
    cascade of one attack at the standard version's budgets (fab, fab_t, square, apgd_ce, ...)."""
    return (VERSION[name], None) if name in VERSION else ("standard", [name])


def cascades(meta: dict, k: int) -> list[str]:
    """The official names, which run as a self-driven cascade at ε number k (at ε = 0 the official
    attacks are the identity and run as ordinary attacks)."""
    return [a for a in meta["attacks"] if (a in AUTOATTACK_NAMES or a in OFFICIAL) and meta["eps"][k] > 0]


class SuiteState(StateFolder):
    """suite.json + per-ε chunk records, in a folder or (folder=None) in memory."""

    def __init__(self, folder=None):
        super().__init__(folder, SUITE, what="evaluation state", writer="robustfront eval")

    def open(self, meta: dict) -> dict:
        return super().open(meta, unchecked=UNCHECKED)

    def eps_dir(self, k: int) -> Path | None:
        return None if self.folder is None else self.folder / f"eps-{k}"

    def cascade_dir(self, k: int, name: str) -> Path | None:
        return None if self.folder is None else self.folder / f"eps-{k}" / name

    def load_chunk(self, k: int, c: int) -> dict | None:
        return self.read(f"eps-{k}/chunk-{c:06d}.json")

    def save_chunk(self, k: int, rec: dict) -> None:
        self.write(f"eps-{k}/chunk-{rec['chunk']:06d}.json", rec)

    def all_chunks(self, k: int) -> dict[int, dict]:
        return {int(r["chunk"]): r for r in self.records(f"eps-{k}")}


def new_record(c: int, start: int, stop: int) -> dict:
    return {"chunk": c, "start": start, "stop": stop, "clean": None, "masks": {}, "time_s": {}, "checks": [],
            "precision": None}


def own_attacks(meta: dict, k: int) -> list[str]:
    return [a for a in meta["attacks"] if a not in cascades(meta, k)]


def record_finished(rec: dict | None, meta: dict, k: int) -> bool:
    return rec is not None and rec["clean"] is not None and all(a in rec["masks"] for a in own_attacks(meta, k))


def _dedupe(items) -> list:
    return list(dict.fromkeys(items))


def _one_eps(meta: dict, k: int, chunks: dict, runs: dict, shard) -> dict:
    """The result of ε number k from its chunk records and its cascades' (meta, records)."""
    eps, names, casc = meta["eps"][k], meta["attacks"], cascades(meta, k)
    total = n_chunks(meta)
    done = sorted(c for c, r in chunks.items() if record_finished(r, meta, k)
                  and all(cascade_finished(runs[a][1].get(c), runs[a][0]["attacks"]) for a in casc))
    ids = from_ranges(meta["ids"])
    pos = np.concatenate([np.arange(chunks[c]["start"], chunks[c]["stop"]) for c in done]) if done else np.zeros(0, int)

    def cat(get):
        return np.concatenate([from_bits(get(chunks[c], c)) for c in done]) if done else np.zeros(0, bool)
    correct, steps = {"clean": cat(lambda r, c: r["clean"])}, {}  # steps: each cascade's masks after each attack
    log, warnings, skipped, flags, budgets, time_s = {}, [], {}, {}, {}, {}
    for a in names:
        if a in casc:
            cmeta, crecs = runs[a]
            res = summarize(cmeta, {c: crecs[c] for c in done})
            sub = Masks.from_json(res["masks"])
            correct[a] = sub[cmeta["name"]]
            if a in VERSION:  # a cascade of one attack has no steps besides its result
                steps.update({f"{a}/{ours(s)}": sub[f"{cmeta['name']}/{s}"] for s in cmeta["attacks"]})
            log[a] = {ours(s): v for s, v in res["after"].items()}
            warnings += [f"{a}: {w}" for w in res["warnings"]]
            if cmeta["skipped"]:
                skipped[a] = {ours(s): why for s, why in cmeta["skipped"].items()}
            flags[a], budgets[a] = res["flags"], {ours(s): b for s, b in cmeta["budgets"].items()}
            time_s[a] = round(sum(res["time_s"].values()), 3)
        else:
            correct[a] = cat(lambda r, c, a=a: r["masks"][a])
            time_s[a] = round(sum(chunks[c]["time_s"].get(a, 0.0) for c in done), 3)
    masks = Masks(ids[pos], {**correct, **steps})
    acc = masks.accuracies()
    checks = _dedupe(w for c in done for w in chunks[c]["checks"])
    randomized = any("randomised" in w for w in checks) or any(f.get("randomized") for f in flags.values())
    res = {"clean_acc": acc["clean"], "robust_acc": {a: acc[a] for a in names},
           "worst_case_acc": masks.accuracy(["clean", *names]), "n": masks.n, "n_total": meta["n"],
           "complete": len(done) == total, "chunks_done": len(done), "chunks_total": total,
           "shard": None if shard is None else f"{shard[0]}/{shard[1]}", "eps": eps, "norm": meta["norm"],
           "seed": meta["seed"], "bounds": meta["bounds"], "time_s": time_s, "autoattack_log": log,
           "autoattack_warnings": _dedupe(warnings), "autoattack_skipped": skipped, "autoattack_flags": flags,
           "autoattack_budgets": budgets, "official_budgets": all(runs[a][0]["official_budgets"] for a in casc),
           "attack_settings": meta["attack_settings"][k], "warnings": checks, "flags": {"randomized": randomized},
           "masks": masks.to_json()}
    present = [a for a in AUTOATTACK_NAMES if a in names]
    res["ra_source"] = present[-1] if present else "worst_case"
    ra = res["robust_acc"][present[-1]] if present else res["worst_case_acc"]
    res["mean"], res["nrr"] = mean_nrr(res["clean_acc"], ra) if masks.n else (float("nan"), float("nan"))
    precision = _dedupe(json.dumps(chunks[c].get("precision"), sort_keys=True) for c in done)
    res["precision"] = {"exact_fp32": meta["exact_fp32"], **(json.loads(precision[0]) if len(precision) == 1 else
                                                              {"flags": [json.loads(p) for p in precision]})}
    return {**res, **meta["run"]}


def build_result(meta: dict, per_eps: list[dict], *, shard=None) -> dict:
    """The evaluation result (one ε: its dict; a sweep: {"eps", "sweep", ...}) from the chunk records:
    per_eps[k] = {"chunks": {c: record}, "cascades": {name: (cascade meta, {c: record})}}."""
    parts = [_one_eps(meta, k, p["chunks"], p["cascades"], shard) for k, p in enumerate(per_eps)]
    if not meta["sweep"]:
        return {**parts[0], **meta["provenance"]}
    top = {k: parts[0][k] for k in ("n", "n_total", "complete", "shard", "norm", "seed", "precision")}
    top["complete"] = all(p["complete"] for p in parts)
    return {"eps": list(meta["eps"]), "sweep": parts, **top, **meta["run"], **meta["provenance"]}


def union(per_eps_lists: list[list[dict]]) -> list[dict]:
    """One per_eps list from several processes' (disjoint chunks; finished records win)."""
    out = [{"chunks": {}, "cascades": {}} for _ in per_eps_lists[0]]
    for part in per_eps_lists:
        for k, p in enumerate(part):
            out[k]["chunks"].update(p["chunks"])
            for a, (cmeta, recs) in p["cascades"].items():
                have = out[k]["cascades"].setdefault(a, (cmeta, {}))[1]
                have.update(recs)
    return out


def read_folder(folder, meta: dict) -> list[dict]:
    """per_eps of a state folder (its own chunk files and its cascades' folders)."""
    st, per_eps = SuiteState(folder), []
    for k in range(len(meta["eps"])):
        runs = {}
        for a in cascades(meta, k):
            cs = CascadeState(st.cascade_dir(k, a))
            cmeta = cs.existing_meta()
            if cmeta is not None:
                runs[a] = (cmeta, cs.all_chunks())
        per_eps.append({"chunks": st.all_chunks(k) if st.eps_dir(k).is_dir() else {}, "cascades": runs})
    return per_eps


def merge_evaluations(*folders) -> dict:
    """One result from the state folders of the shards of one evaluation (`robustfront eval --merge`;
    one shared folder or one per shard), identical to the same evaluation run in one process."""
    if not folders:
        raise ValueError("merge_evaluations() needs at least one state folder")
    metas = []
    for f in folders:
        m = SuiteState(f).existing_meta()
        if m is None:
            raise ValueError(f"state folder {f} has no {SUITE}; allowed: a folder written by robustfront eval --state")
        metas.append(m)
    for f, m in zip(folders[1:], metas[1:]):
        diff = next((k for k in metas[0] if k not in UNCHECKED and metas[0][k] != m.get(k)), None)
        if diff is not None:
            raise ValueError(f"state folders {folders[0]} and {f} differ in {diff}; allowed: shards of one evaluation")
    meta = metas[0]
    per_eps = union([read_folder(f, meta) for f in folders])
    missing = missing_chunks(meta, per_eps)
    if missing:
        more = f" (+{len(missing) - 8} more)" if len(missing) > 8 else ""
        raise ValueError(f"{len(missing)} of {n_chunks(meta)} chunks are missing or unfinished: {missing[:8]}{more}; "
                         f"allowed: run every shard to the end first")
    return build_result(meta, per_eps)


def n_chunks(meta: dict) -> int:
    return -(-meta["n"] // meta["chunk_size"])


def missing_chunks(meta: dict, per_eps: list[dict]) -> list[int]:
    """Chunks not finished for some ε or some attack."""
    def done(k, p, c):
        return record_finished(p["chunks"].get(c), meta, k) and all(
            a in p["cascades"] and cascade_finished(p["cascades"][a][1].get(c), p["cascades"][a][0]["attacks"])
            for a in cascades(meta, k))
    return [c for c in range(n_chunks(meta)) if not all(done(k, p, c) for k, p in enumerate(per_eps))]


__all__ = ["SuiteState", "build_result", "cascades", "official_run", "merge_evaluations", "missing_chunks", "new_record", "read_folder",
           "union"]

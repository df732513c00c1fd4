"""The cascade's state on disk, and the result built from it.

A state folder holds

    meta.json            what the run is (attacks, budgets, ε, seed, batch and chunk size, digests of
                         the points and the weights); a later run on the folder must match it
    chunk-000003.json    one chunk's clean mask, its mask after each finished attack, and the progress
                         of the attack under way (batches done, the mask so far)
    result.json          the result, once every chunk is finished

Every file is replaced atomically after every batch, so a kill loses at most the batch in flight.
Shards write disjoint chunk files, into one shared folder or several (merged by `merge_states`).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from ..state import StateFolder, read_json
from .masks import Masks, from_bits, from_ranges
from ..attacks.official import flags_from, square_check

FORMAT = 1
META, RESULT = "meta.json", "result.json"


def digest_tensors(items) -> str:
    """sha256 over (name, dtype, shape, bytes) of (name, tensor) pairs, moved to the CPU piecewise."""
    h = hashlib.sha256()
    for name, t in items:
        t = t.detach()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        flat = t.reshape(-1)
        step = 1 << 22
        for i in range(0, flat.numel(), step):
            h.update(flat[i:i + step].cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def digest_points(x, y) -> str:
    return digest_tensors([("x", x.float()), ("y", y.long())])


def digest_model(model) -> str:
    return digest_tensors(sorted(model.state_dict().items()))


def read_state_json(path: Path, what: str = "cascade state", writer: str = "robustfront's cascade") -> dict:
    return read_json(path, what, writer)


class CascadeState(StateFolder):
    """meta + chunk records, in a folder or (folder=None) in memory only."""

    def __init__(self, folder=None):
        super().__init__(folder, META, what="cascade state", writer="robustfront's cascade")
        self.meta: dict | None = None

    def open(self, meta: dict) -> dict:
        """Write meta (a new folder) or check it against the folder's (a resumed run)."""
        self.meta = super().open(meta)
        return self.meta

    def chunk_path(self, c: int) -> Path:
        return self.folder / f"chunk-{c:06d}.json"

    def load_chunk(self, c: int) -> dict | None:
        return self.read(f"chunk-{c:06d}.json")

    def save_chunk(self, record: dict) -> None:
        self.write(f"chunk-{record['chunk']:06d}.json", record)

    def all_chunks(self) -> dict[int, dict]:
        return {int(rec["chunk"]): rec for rec in self.records()}


def new_chunk(c: int, start: int, stop: int) -> dict:
    return {"chunk": c, "start": start, "stop": stop, "clean": None, "masks": {}, "partial": None,
            "checks": [], "warnings": [], "time_s": {}, "attacked": {}, "device": None, "precision": None}


def finished(record: dict, attacks) -> bool:
    return record is not None and record["clean"] is not None and all(a in record["masks"] for a in attacks)


def _dedupe(items):
    return list(dict.fromkeys(items))


def summarize(meta: dict, chunks: dict[int, dict], *, shard=None, extra_warnings=()) -> dict:
    """The result over the finished chunks: accuracies, per-sample masks, warnings, flags, settings."""
    attacks, name = meta["attacks"], meta["name"]
    done = sorted(c for c, r in chunks.items() if finished(r, attacks))
    ids_all = from_ranges(meta["ids"])
    pos = np.concatenate([np.arange(chunks[c]["start"], chunks[c]["stop"]) for c in done]) if done else np.zeros(0, int)
    correct = {"clean": np.concatenate([from_bits(chunks[c]["clean"]) for c in done]) if done else np.zeros(0, bool)}
    for a in attacks:
        correct[f"{name}/{a}"] = np.concatenate([from_bits(chunks[c]["masks"][a]) for c in done]) if done \
            else np.zeros(0, bool)
    correct[name] = correct[f"{name}/{attacks[-1]}"] if attacks else correct["clean"]
    masks = Masks(ids_all[pos], correct)
    acc = masks.accuracies()
    after = {a: acc[f"{name}/{a}"] for a in attacks}
    warnings = _dedupe([w for c in done for w in chunks[c]["checks"] + chunks[c]["warnings"]] + list(extra_warnings))
    if done:
        warnings = _dedupe(warnings + square_check(after, acc["clean"]))
    n_chunks = -(-meta["n"] // meta["chunk_size"])
    precision = _dedupe(json.dumps(chunks[c].get("precision"), sort_keys=True) for c in done)
    time_s = {a: round(sum(chunks[c]["time_s"].get(a, 0.0) for c in done), 3) for a in ["clean", *attacks]}
    return {
        "kind": "autoattack-cascade", "attack": name, "version": meta["version"], "attacks": attacks,
        "skipped": meta["skipped"], "eps": meta["eps"], "norm": meta["norm"], "seed": meta["seed"],
        "batch_size": meta["batch_size"], "chunk_size": meta["chunk_size"],
        "n": masks.n, "n_total": meta["n"], "complete": len(done) == n_chunks, "chunks_done": len(done),
        "chunks_total": n_chunks, "shard": None if shard is None else f"{shard[0]}/{shard[1]}",
        "clean_acc": acc["clean"], "robust_acc": {name: acc[name]}, "worst_case_acc": acc[name], "after": after,
        "masks": masks.to_json(), "budgets": meta["budgets"], "official_budgets": meta["official_budgets"],
        "warnings": warnings, "flags": flags_from(warnings), "time_s": time_s,
        "n_classes": meta["n_classes"], "pyautoattack": meta["pyautoattack"],
        "devices": _dedupe(chunks[c].get("device") for c in done),
        # the TF32 switches in force (exact fp32: all off); a list if chunks ran under different ones
        "precision": json.loads(precision[0]) if len(precision) == 1 else [json.loads(p) for p in precision],
    }


def merge_states(*folders, allow_partial: bool = False) -> dict:
    """One result from the chunk files of several state folders (shards run on separate machines).

    Their meta must be identical; every chunk must be finished unless allow_partial."""
    if not folders:
        raise ValueError("merge_states() needs at least one state folder")
    metas, chunks = [], {}
    for f in folders:
        st = CascadeState(f)
        meta = st.existing_meta()
        if meta is None:
            raise ValueError(f"state folder {f} has no {META}; allowed: a folder written by the cascade")
        metas.append(meta)
        for c, rec in st.all_chunks().items():
            if finished(rec, meta["attacks"]) or c not in chunks:
                chunks[c] = rec
    for f, m in zip(folders[1:], metas[1:]):
        diff = next((k for k in metas[0] if metas[0][k] != m.get(k)), None)
        if diff is not None:
            raise ValueError(f"state folders {folders[0]} and {f} differ in {diff}; allowed: shards of one run")
    meta = metas[0]
    n_chunks = -(-meta["n"] // meta["chunk_size"])
    missing = [c for c in range(n_chunks) if not finished(chunks.get(c), meta["attacks"])]
    if missing and not allow_partial:
        more = f" (+{len(missing) - 8} more)" if len(missing) > 8 else ""
        raise ValueError(f"{len(missing)} of {n_chunks} chunks are missing or unfinished: {missing[:8]}{more}; "
                         f"allowed: run every shard to the end first (or allow_partial=True)")
    return summarize(meta, chunks)


__all__ = ["CascadeState", "digest_model", "digest_points", "merge_states", "new_chunk", "summarize"]

"""Per-sample correctness masks: for each attack, was each evaluated point still classified correctly?

    m = Masks(ids=[0, 1, 2, 3], correct={"clean": [1, 1, 0, 1], "pgd20": [1, 0, 0, 1]})
    m.accuracy()                       # worst case over every attack: 0.5
    m.accuracy(["clean"])              # 0.75
    both = merge(m, other)             # shards (disjoint ids) or more attacks on the same ids

Keyed by sample id (the point's index in the split), so masks of different runs combine: a point
counts as robust in a worst case only if it survived every attack named. The same attack in two
merged masks (two seeds, two runs) is combined the same way, by AND.

In an AutoAttack cascade later attacks only see the points earlier ones missed, so its masks are
cumulative: "autoattack/apgd-t" is "still correct after APGD-CE and APGD-T" (the official "robust
accuracy after APGD-T"), and "autoattack" is the final one.

JSON form: {"ids": [[start, stop], ...] (half-open ranges), "correct": {attack: "0110..."}}, the bits
in id order.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..checkpoint import write_json_atomic


def to_ranges(ids) -> list[list[int]]:
    """Sorted ids as half-open [start, stop) runs: [0, 1, 2, 5] -> [[0, 3], [5, 6]]."""
    ids = np.asarray(ids, dtype=np.int64)
    if ids.size == 0:
        return []
    cuts = np.flatnonzero(np.diff(ids) != 1) + 1
    starts, stops = np.r_[ids[0], ids[cuts]], np.r_[ids[cuts - 1] + 1, ids[-1] + 1]
    return [[int(a), int(b)] for a, b in zip(starts, stops)]


def from_ranges(ranges) -> np.ndarray:
    return np.concatenate([np.arange(a, b) for a, b in ranges]) if ranges else np.zeros(0, np.int64)


def to_bits(mask) -> str:
    """[True, False, True] -> "101"."""
    return (np.asarray(mask, dtype=bool).reshape(-1).astype(np.uint8) + ord("0")).tobytes().decode("ascii")


def from_bits(text: str) -> np.ndarray:
    if set(text) - {"0", "1"}:
        raise ValueError(f"mask text holds characters other than 0/1: {sorted(set(text) - {'0', '1'})[:5]}")
    return np.frombuffer(text.encode("ascii"), dtype=np.uint8) == ord("1")


class Masks:
    """attack name -> bool per sample id. ids are unique and sorted; every attack covers every id."""

    def __init__(self, ids, correct: dict):
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        order = np.argsort(ids, kind="stable")
        if ids.size and (np.diff(ids[order]) == 0).any():
            dup = int(ids[order][np.flatnonzero(np.diff(ids[order]) == 0)[0]])
            raise ValueError(f"Masks ids hold id {dup} twice; allowed: unique ids")
        self.ids = ids[order]
        self.correct = {}
        for name, v in correct.items():
            v = np.asarray(v.cpu() if isinstance(v, torch.Tensor) else v).astype(bool).reshape(-1)
            if v.size != ids.size:
                raise ValueError(f"mask {name!r} has {v.size} values for {ids.size} ids; allowed: one per id")
            self.correct[str(name)] = v[order]

    @property
    def n(self) -> int:
        return int(self.ids.size)

    @property
    def names(self) -> list[str]:
        return list(self.correct)

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self.correct:
            raise KeyError(f"no mask for {name!r}; masks: {', '.join(self.correct) or 'none'}")
        return self.correct[name]

    def __eq__(self, other) -> bool:
        return (isinstance(other, Masks) and np.array_equal(self.ids, other.ids) and self.names == other.names
                and all(np.array_equal(self.correct[k], other.correct[k]) for k in self.correct))

    def worst(self, names=None) -> np.ndarray:
        """Per sample: correct under every attack in `names` (all attacks when None)."""
        names = self.names if names is None else list(names)
        out = np.ones(self.n, dtype=bool)
        for k in names:
            out &= self[k]
        return out

    def accuracy(self, names=None) -> float:
        """Worst-case accuracy over `names` (all when None); nan for no points."""
        return float(self.worst(names).mean()) if self.n else float("nan")

    def accuracies(self) -> dict[str, float]:
        return {k: float(v.mean()) if self.n else float("nan") for k, v in self.correct.items()}

    def subset(self, names) -> "Masks":
        return Masks(self.ids, {k: self[k] for k in names})

    def to_json(self) -> dict:
        return {"ids": to_ranges(self.ids), "correct": {k: to_bits(v) for k, v in self.correct.items()}}

    @classmethod
    def from_json(cls, d: dict) -> "Masks":
        if not isinstance(d, dict) or "ids" not in d or "correct" not in d:
            found = sorted(d)[:6] if isinstance(d, dict) else type(d).__name__
            raise ValueError(f"not a masks record: expected keys ids and correct, found {found}")
        return cls(from_ranges(d["ids"]), {k: from_bits(v) for k, v in d["correct"].items()})

    def save(self, path) -> Path:
        return write_json_atomic(path, self.to_json())

    @classmethod
    def load(cls, path) -> "Masks":
        import json
        try:
            d = json.loads(Path(path).read_text())
        except (OSError, ValueError) as e:
            raise ValueError(f"masks file {path} cannot be read ({str(e).splitlines()[0][:120]})") from None
        return cls.from_json(d.get("masks", d) if isinstance(d, dict) else d)


def merge(*masks: Masks) -> Masks:
    """One Masks over the union of the ids: each attack ANDed where runs overlap. Every attack must
    then cover every id (a shard without an attack the others ran is one error line)."""
    if not masks:
        raise ValueError("merge() needs at least one Masks")
    ids = np.unique(np.concatenate([m.ids for m in masks]))
    names = list(dict.fromkeys(k for m in masks for k in m.names))
    out = {}
    for k in names:
        val, covered = np.ones(ids.size, dtype=bool), np.zeros(ids.size, dtype=bool)
        for m in masks:
            if k in m.correct:
                pos = np.searchsorted(ids, m.ids)
                val[pos] &= m.correct[k]
                covered[pos] = True
        if not covered.all():
            gap = int(ids[np.flatnonzero(~covered)[0]])
            raise ValueError(f"attack {k!r} has no result for {int((~covered).sum())} of the {ids.size} points "
                             f"(e.g. id {gap}); allowed: merging runs that all ran the same attacks on their points")
        out[k] = val
    return Masks(ids, out)


def worst_case(masks: Masks, names=None) -> float:
    return masks.accuracy(names)


__all__ = ["Masks", "from_bits", "from_ranges", "merge", "to_bits", "to_ranges", "worst_case"]

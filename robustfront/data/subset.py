"""One seed policy for every subset: a seeded permutation, then the first n, back in file order.

Files often come sorted by class, so "the first n images" of a split would hold a few classes
only; every subset in robustfront (training on n images, the per-epoch held-out check, evaluating
on n test images, the quickstart) goes through `subset_indices`.
"""
from __future__ import annotations

import numpy as np

from ..validation import check_int


def subset_indices(total: int, n: int | None, seed: int) -> np.ndarray:
    """Sorted indices of a seeded random subset of size n of range(total); all of them when n is
    None or n >= total."""
    check_int("total", total, 0)
    check_int("seed", seed, 0)
    if n is None:
        return np.arange(total)
    if check_int("n", n, 1) >= total:
        return np.arange(total)
    return np.sort(np.random.default_rng(seed).permutation(total)[:n])


__all__ = ["subset_indices"]

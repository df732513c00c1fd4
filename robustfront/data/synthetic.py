"""Small built-in datasets: scikit-learn's digits and the two-class Gaussian model."""
from __future__ import annotations

import numpy as np

from ..validation import check_int, check_number, invalid, one_line, shown
from .images import check_memory

GAUSSIAN_DEFAULTS = {"dim": 10, "mean_norm": 2.0, "sigma": 1.0, "n_train": 10000, "n_test": 2000, "data_seed": 0}
_INT_PARAMS = {"dim", "n_train", "n_test", "data_seed"}


def digits() -> dict:
    """8x8 digits as uint8 (1,8,8); a fixed stratified split (seed 0, 360 test) so every run
    seed sees the same test set."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = np.round(d.images * 255 / 16).astype(np.uint8)[:, None]
    y = d.target.astype(np.int64)
    tr, te = train_test_split(np.arange(len(y)), test_size=360, stratify=y, random_state=0)
    tr, te = np.sort(tr), np.sort(te)
    return {"x_train": x[tr], "y_train": y[tr], "x_test": x[te], "y_test": y[te],
            "classes": [str(i) for i in range(10)]}


def gaussian_params(spec: str, overrides: dict) -> dict:
    """Parameters from 'gaussian:dim=10,sigma=1' plus keyword overrides, validated (one line each)."""
    given = {}
    _, _, tail = spec.partition(":")
    for item in filter(None, (s.strip() for s in tail.split(","))):
        k, eq, v = item.partition("=")
        if not eq:
            raise invalid("gaussian option", item, "key=value, e.g. gaussian:dim=10,sigma=1")
        given[k.strip()] = v.strip()
    given.update(overrides)
    unknown = sorted(set(given) - set(GAUSSIAN_DEFAULTS))
    if unknown:
        raise ValueError(one_line(f"unknown gaussian parameter(s) {shown(unknown)}; allowed: "
                                  f"{', '.join(GAUSSIAN_DEFAULTS)}"))
    p = dict(GAUSSIAN_DEFAULTS)
    for k, v in given.items():
        if k in _INT_PARAMS:
            low = 0 if k == "data_seed" else 1
            if isinstance(v, str):
                try:
                    v = int(v)
                except ValueError:
                    raise invalid(f"gaussian {k}", v, f"an integer >= {low}") from None
            p[k] = check_int(f"gaussian {k}", v, low)
        elif k == "sigma":
            p[k] = check_number(f"gaussian {k}", v, 0, strict=True)
        else:
            p[k] = check_number(f"gaussian {k}", v, 0)
    # x in float32, drawn through float64 temporaries
    check_memory(p["n_train"] + p["n_test"], (p["dim"],), "gaussian data", itemsize=8, factor=2)
    return p


def gaussian_mean(dim: int, mean_norm: float) -> np.ndarray:
    """mu: all entries equal, ||mu|| = mean_norm."""
    return np.full(dim, mean_norm / np.sqrt(dim))


def gaussian(dim, mean_norm, sigma, n_train, n_test, data_seed) -> dict:
    """x ~ N(s*mu, sigma^2 I) with s = -1 for y = 0 and +1 for y = 1; float32 (dim,).
    Drawn from `data_seed`, not the run seed, so runs with different seeds share the data."""
    rng = np.random.default_rng(data_seed)
    mu = gaussian_mean(dim, mean_norm)

    def draw(n):
        y = rng.integers(0, 2, n)
        x = (2 * y - 1)[:, None] * mu + sigma * rng.standard_normal((n, dim))
        return x.astype(np.float32), y.astype(np.int64)

    x_train, y_train = draw(n_train)
    x_test, y_test = draw(n_test)
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test,
            "classes": ["neg", "pos"]}

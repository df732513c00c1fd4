"""Small built-in datasets: scikit-learn's digits and the two-class Gaussian model."""
from __future__ import annotations

import numpy as np

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
    """Parameters from 'gaussian:dim=10,sigma=1' plus keyword overrides, validated."""
    given = {}
    _, _, tail = spec.partition(":")
    for item in filter(None, (s.strip() for s in tail.split(","))):
        k, eq, v = item.partition("=")
        if not eq:
            raise ValueError(f"bad gaussian option '{item}'; expected key=value")
        given[k.strip()] = v.strip()
    given.update(overrides)
    unknown = sorted(set(given) - set(GAUSSIAN_DEFAULTS))
    if unknown:
        raise ValueError(f"unknown gaussian parameter(s) {unknown}; allowed: {', '.join(GAUSSIAN_DEFAULTS)}")
    p = dict(GAUSSIAN_DEFAULTS)
    for k, v in given.items():
        try:
            p[k] = int(v) if k in _INT_PARAMS else float(v)
        except (TypeError, ValueError):
            raise ValueError(f"gaussian {k}={v!r} is not a number") from None
    for k in ("dim", "n_train", "n_test"):
        if p[k] < 1:
            raise ValueError(f"gaussian {k}={p[k]} must be >= 1")
    if p["sigma"] <= 0 or p["mean_norm"] < 0:
        raise ValueError(f"gaussian needs sigma > 0 and mean_norm >= 0; got sigma={p['sigma']}, "
                         f"mean_norm={p['mean_norm']}")
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

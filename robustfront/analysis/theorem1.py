"""CA-AT's Theorem 1 experiment: the gradient conflict μ(δ) of a fixed linear classifier on the
two-class Gaussian model, and the fitted exponent of δ.

`theorem1_experiment` measures, `main_theorem1` is the entry point behind
`robustfront theorem1 --out DIR`. See docs/theorem1.md for the setting and measured numbers.

Why the fixed model is a logistic regression fitted on a separate clean training sample, with μ
measured on held-out data (model="linear", the default):

* at the model's own training optimum the clean gradient is zero, so μ ≡ 0 there;
* the Bayes-optimal classifier w = 2m/σ² (model="bayes") is also the population optimum of the
  logistic loss. Its clean gradient on a finite sample is only sampling noise (|g_c| shrinks like
  1/√n), so μ measures a conflict with noise and is 0 in the population limit;
* the Bayes direction at any other scale has a non-zero clean gradient, but it points along m.
  For the L2 worst case (and the L∞ one here, since m has equal entries and sign(m) ∥ m) the
  adversarial gradient stays in that direction, so the population conflict is exactly zero.
  The measured value shrinks as n grows;
* a fitted model is slightly misaligned with m, as any model is during training. Its held-out
  clean gradient has a non-zero population part, plus sampling noise of order √(d/n). For the
  fixed sample, μ(δ) is a smooth function with μ(0) = μ'(0) = 0. That is the situation the
  theorem describes.
"""
from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..checkpoint import write_text_atomic
from .conflict import gradient_conflict
from .linear import NORMS, fit_logistic_regression, linear_model, linear_worst_case

__all__ = ["DEFAULT_BUDGETS", "linear_worst_case", "fit_logistic_regression", "theorem1_experiment", "plot_theorem1",
           "main_theorem1", "format_table"]

MODELS = ("linear", "bayes")
DEFAULT_BUDGETS = (0.0, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 0.1, 0.2, 0.5, 1.0)



# --------------------------------------------------------------------------- fits

def _fit_line(lx: np.ndarray, ly: np.ndarray) -> tuple[float, float]:
    slope, intercept = np.polyfit(lx, ly, 1)
    return float(slope), float(intercept)


def _fits(rows: list[dict], fit_max: float) -> list[dict]:
    out = []
    for norm in dict.fromkeys(r["norm"] for r in rows):
        for dim in dict.fromkeys(r["dim"] for r in rows if r["norm"] == norm):
            pts = [(r["delta"], r["mu"]) for r in rows
                   if r["norm"] == norm and r["dim"] == dim and 0 < r["delta"] <= fit_max and r["mu"] > 0]
            fit = {"norm": norm, "dim": dim, "slope": None, "intercept": None, "prefactor": None,
                   "n_points": len(pts), "delta_min": None, "delta_max": None}
            if len(pts) >= 2:
                ld, lm = np.log([p[0] for p in pts]), np.log([p[1] for p in pts])
                fit["slope"], fit["intercept"] = _fit_line(ld, lm)
                # μ ≈ C·δ² with C the geometric mean of μ/δ² over the fit range
                fit["prefactor"] = float(np.exp(np.mean(lm - 2 * ld)))
                fit["delta_min"], fit["delta_max"] = float(min(p[0] for p in pts)), float(max(p[0] for p in pts))
            out.append(fit)
    return out


def _d_dependence(fits: list[dict]) -> list[dict]:
    """Exponent p of C(d) ∝ d^p for each norm (C = μ/δ² in the fit range), and of C_Linf/C_L2."""
    pref = {(f["norm"], f["dim"]): f["prefactor"] for f in fits if f["prefactor"]}
    out = []
    for norm in dict.fromkeys(f["norm"] for f in fits):
        dims = sorted(d for (n, d) in pref if n == norm)
        entry = {"quantity": f"mu/delta^2 ({norm})", "norm": norm, "dims": dims,
                 "values": [pref[(norm, d)] for d in dims], "d_exponent": None}
        if len(dims) >= 2:
            entry["d_exponent"] = _fit_line(np.log(dims), np.log(entry["values"]))[0]
        out.append(entry)
    dims = sorted(d for (n, d) in pref if n == "Linf" and ("L2", d) in pref)
    if dims:
        ratios = [pref[("Linf", d)] / pref[("L2", d)] for d in dims]
        entry = {"quantity": "mu_Linf/mu_L2", "norm": "Linf/L2", "dims": dims, "values": ratios, "d_exponent": None}
        if len(dims) >= 2:
            entry["d_exponent"] = _fit_line(np.log(dims), np.log(ratios))[0]
        out.append(entry)
    return out


# --------------------------------------------------------------------------- the experiment

def _check_args(dims, budgets, norms, mean_norm, sigma, n, steps, model, fit_max) -> tuple:
    dims = tuple(int(d) for d in dims)
    if not dims or any(d < 1 for d in dims):
        raise ValueError(f"dims={dims!r} is invalid; allowed: a non-empty list of integers >= 1")
    budgets = tuple(sorted({float(b) for b in budgets}))
    if not budgets or any(not math.isfinite(b) or b < 0 for b in budgets):
        raise ValueError(f"budgets={budgets!r} is invalid; allowed: a non-empty list of finite numbers >= 0")
    norms = tuple(norms)
    if not norms or any(nm not in NORMS for nm in norms):
        raise ValueError(f"norms={norms!r} is invalid; allowed: a non-empty subset of {', '.join(NORMS)}")
    if model not in MODELS:
        raise ValueError(f"model={model!r} is unknown; allowed: {', '.join(MODELS)}")
    if not (sigma > 0 and mean_norm > 0):
        raise ValueError(f"need sigma > 0 and mean_norm > 0; got sigma={sigma!r}, mean_norm={mean_norm!r}")
    if int(n) < 2 or int(steps) < 0:
        raise ValueError(f"need n >= 2 and steps >= 0; got n={n!r}, steps={steps!r}")
    if not fit_max > 0:
        raise ValueError(f"fit_max={fit_max!r} is invalid; allowed: a number > 0")
    return dims, budgets, norms


def theorem1_experiment(*, dims: Sequence[int] = (10, 100), budgets: Iterable[float] = DEFAULT_BUDGETS,
                        norms: Sequence[str] = NORMS, mean_norm: float = 2.0, sigma: float = 1.0, n: int = 10000,
                        seed: int = 0, steps: int = 20, model: str = "linear", n_train: int | None = None,
                        train_per_dim: int = 100, fit_max: float = 1e-2, threads: int | None = 1) -> dict:
    """Gradient conflict μ(δ) of a fixed linear classifier on the two-class Gaussian model.

    Data: `robustfront.data.synthetic.gaussian`: x ~ N(s·m, σ²I), s = 2y-1, |m| = mean_norm,
    equal entries. Drawn from `seed`: a training sample of n_train (default train_per_dim·d)
    points and a held-out sample of n points, on which μ is measured.

    Model: model="linear" fits a logistic regression on the training sample to convergence
    (L-BFGS, float64, gradient norm ≤ 1e-10). model="bayes" uses the Bayes-optimal classifier
    w = 2m/σ², b = 0. Either is a 2-logit nn.Linear with cross-entropy (same as the logistic loss).
    The module docstring and docs/theorem1.md explain why "linear" is the default.

    Perturbation: the exact worst case for a linear model, x' = x - δ·s·w/|w| (L2) or
    x' = x - δ·s·sign(w) (L∞), with no input box. With steps > 0, PGD (library `PGD`, random
    start, alpha = δ/4, `steps` steps, bounds=None) is run as a check. Each row records its loss
    and μ (`loss_adv_pgd`, `mu_pgd`). `pgd_check` reports the largest relative loss gap
    (L_exact - L_pgd)/(L_exact - L_clean) and the largest relative difference of μ.

    Fit: ln μ = intercept + slope·ln δ (natural logs) over 0 < δ ≤ fit_max; prefactor = geometric
    mean of μ/δ² there. d_dependence fits prefactor ∝ d^p per norm and for the ratio L∞/L2.

    threads: torch intra-op threads while it runs (restored afterwards). The default 1 is the
    fastest for these small tensors. On a busy 2-core machine, 2 threads ran PGD about 100x slower.
    None leaves the setting alone.

    Returns a JSON-able dict: rows, fits, d_dependence, pgd_check, models, settings, seconds.
    """
    dims, budgets, norms = _check_args(dims, budgets, norms, mean_norm, sigma, n, steps, model, fit_max)
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(int(threads))
    try:
        return _run(dims, budgets, norms, float(mean_norm), float(sigma), int(n), int(seed), int(steps), model,
                    n_train, int(train_per_dim), float(fit_max))
    finally:
        torch.set_num_threads(old_threads)


def _run(dims, budgets, norms, mean_norm, sigma, n, seed, steps, model, n_train, train_per_dim, fit_max) -> dict:
    from ..attacks import ThreatModel, create_attack
    from ..data.synthetic import gaussian, gaussian_mean

    t0 = time.perf_counter()
    rows, models, pgd_gaps, mu_diffs = [], [], [], []
    for dim in dims:
        ntr = int(n_train) if n_train is not None else int(train_per_dim) * dim
        data = gaussian(dim, float(mean_norm), float(sigma), max(ntr, 1), int(n), int(seed))
        x = torch.from_numpy(data["x_test"]).double()
        y = torch.from_numpy(data["y_test"])
        if model == "linear":
            w, b, gnorm = fit_logistic_regression(torch.from_numpy(data["x_train"]), torch.from_numpy(data["y_train"]))
        else:
            w = torch.from_numpy(gaussian_mean(dim, float(mean_norm))).double() * (2.0 / sigma ** 2)
            b, gnorm = torch.zeros(1, dtype=torch.float64), None
        m_dir = torch.from_numpy(gaussian_mean(dim, float(mean_norm))).double()
        lin = linear_model(w, b)
        lin32 = linear_model(w, b, torch.float32)  # attacks run in fp32
        with torch.no_grad():
            acc = float(((lin(x)[:, 1] - lin(x)[:, 0] > 0).long() == y).double().mean())
        models.append({"dim": dim, "model": model, "n_train": ntr if model == "linear" else 0,
                       "w_norm": float(w.norm()), "bias": float(b.reshape(-1)[0]),
                       "cos_w_mean": float(w @ m_dir / (w.norm() * m_dir.norm())),
                       "train_grad_norm": gnorm, "test_acc": acc})
        for norm in norms:
            for delta in budgets:
                x_adv = linear_worst_case(lin, x, y, delta, norm)
                r = gradient_conflict(lin, F.cross_entropy, x, y, x_adv)
                row = {"norm": norm, "dim": dim, "delta": delta, "mu": r["mu"], "cos": r["cos"],
                       "norm_clean": r["norm_clean"], "norm_adv": r["norm_adv"],
                       "loss_clean": r["loss_clean"], "loss_adv": r["loss_adv"]}
                if steps > 0 and delta > 0:
                    atk = create_attack("pgd", ThreatModel(norm=norm, eps=delta, alpha=delta / 4, steps=int(steps), bounds=None))
                    with torch.random.fork_rng(devices=[]):
                        torch.manual_seed(seed)
                        x_pgd = atk(lin32, x.float(), y).double()
                    rp = gradient_conflict(lin, F.cross_entropy, x, y, x_pgd)
                    row["loss_adv_pgd"], row["mu_pgd"] = rp["loss_adv"], rp["mu"]
                    gain = r["loss_adv"] - r["loss_clean"]
                    if gain > 0:
                        pgd_gaps.append((r["loss_adv"] - rp["loss_adv"]) / gain)
                    if r["mu"] > 0:
                        mu_diffs.append((rp["mu"] - r["mu"]) / r["mu"])
                rows.append(row)
    fits = _fits(rows, fit_max)
    result = {
        "rows": rows,
        "fits": fits,
        "d_dependence": _d_dependence(fits),
        "pgd_check": {"max_rel_loss_gap": max(pgd_gaps, key=abs) if pgd_gaps else None,
                      "max_rel_mu_diff": max(mu_diffs, key=abs) if mu_diffs else None,
                      "n_compared": len(pgd_gaps), "alpha": "delta/4", "steps": int(steps), "random_start": True},
        "models": models,
        "settings": {"dims": list(dims), "budgets": list(budgets), "norms": list(norms), "mean_norm": float(mean_norm),
                     "sigma": float(sigma), "n": int(n), "seed": int(seed), "steps": int(steps), "model": model,
                     "n_train": None if n_train is None else int(n_train), "train_per_dim": int(train_per_dim),
                     "fit_max": float(fit_max), "loss": "cross-entropy (2 logits) = logistic loss",
                     "perturbation": "exact linear worst case: L2 -delta*s*w/|w|, Linf -delta*s*sign(w); no input box",
                     "torch": torch.__version__, "threads": torch.get_num_threads()},
    }
    result["seconds"] = round(time.perf_counter() - t0, 3)
    return result


# --------------------------------------------------------------------------- output

def plot_theorem1(result: dict, path) -> str:
    """Log-log μ vs δ, one line per (norm, d), with a dotted δ² reference line; writes a PNG.
    Needs matplotlib (the JSON results do not)."""
    from ..plotting import figure, save
    fig, ax = figure(figsize=(6.4, 4.8))
    slopes = {(f["norm"], f["dim"]): f["slope"] for f in result["fits"]}
    groups: dict[tuple, list] = {}
    for r in result["rows"]:
        if r["delta"] > 0 and r["mu"] > 0:
            groups.setdefault((r["norm"], r["dim"]), []).append((r["delta"], r["mu"]))
    colors = {dim: f"C{i % 10}" for i, dim in enumerate(sorted({dim for _, dim in groups}))}
    all_d, anchor = [], None
    for (norm, dim), pts in groups.items():
        ds, ms = zip(*sorted(pts))
        all_d += ds
        s = slopes.get((norm, dim))
        label = f"{norm}, d={dim}" + (f" (slope {s:.2f})" if s is not None else "")
        ax.loglog(ds, ms, color=colors[dim], marker="o" if norm == "L2" else "s", ms=4,
                  ls="-" if norm == "L2" else "--", label=label)
        anchor = (ds[0], ms[0]) if anchor is None or ms[0] < anchor[1] else anchor
    if anchor:  # one decade below the lowest curve, so that it does not hide a measured line
        ref = np.array(sorted(set(all_d)))
        ax.loglog(ref, 0.1 * anchor[1] * (ref / anchor[0]) ** 2, color="gray", ls=":", lw=1.5, label="∝ δ² (reference)")
    fit_max = result.get("settings", {}).get("fit_max")
    if fit_max:
        ax.axvline(fit_max, color="lightgray", lw=1)
        ax.text(fit_max, 0.02, " fit range ←", transform=ax.get_xaxis_transform(), color="gray", fontsize=8,
                ha="right")
    ax.set_xlabel("budget δ")
    ax.set_ylabel("gradient conflict μ = |g_c||g_a|(1 - cos)")
    ax.set_title("CA-AT Theorem 1: μ(δ) for a linear model, Gaussian data")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8)
    return str(save(fig, path))


def _g(v, fmt=".3g") -> str:
    return "-" if v is None else format(v, fmt)


def format_table(result: dict) -> str:
    """The slopes table printed by main_theorem1 (plain text, also pasted into docs/theorem1.md)."""
    s = result["settings"]
    lines = [f"CA-AT Theorem 1: mu(delta) for a {s['model']} model on Gaussian data "
             f"(|m|={s['mean_norm']:g}, sigma={s['sigma']:g}, n={s['n']}, seed={s['seed']}); "
             f"fit over 0 < delta <= {s['fit_max']:g}",
             f"{'norm':<6}{'d':>6}{'slope':>8}{'mu/delta^2':>12}{'points':>8}{'mu@delta=' + format(max(s['budgets']), 'g'):>14}"]
    last = {}
    for r in result["rows"]:
        last[(r["norm"], r["dim"])] = r
    for f in result["fits"]:
        r = last[(f["norm"], f["dim"])]
        lines.append(f"{f['norm']:<6}{f['dim']:>6}{_g(f['slope'], '.3f'):>8}{_g(f['prefactor']):>12}"
                     f"{f['n_points']:>8}{_g(r['mu']):>14}")
    for e in result["d_dependence"]:
        vals = ", ".join(f"d={d}: {v:.3g}" for d, v in zip(e["dims"], e["values"]))
        lines.append(f"{e['quantity']:<22} {vals}; fitted d-exponent {_g(e['d_exponent'], '.2f')}")
    pc = result["pgd_check"]
    if pc["n_compared"]:
        lines.append(f"PGD ({pc['steps']} steps, random start) vs exact worst case over {pc['n_compared']} budgets: "
                     f"largest relative loss gap {pc['max_rel_loss_gap']:.1e}, largest relative mu difference "
                     f"{pc['max_rel_mu_diff']:.1e}")
    lines.append(f"({result['seconds']:.1f} s)")
    return "\n".join(lines)


def main_theorem1(out_dir, *, plot: bool = True, quiet: bool = False, **kw) -> dict:
    """Run `theorem1_experiment(**kw)`, write OUT/theorem1.json and OUT/theorem1.png, print the table.

    Entry point for `robustfront theorem1 --out OUT`. Returns the result, with "files" added
    (the paths written; png is None when plot=False or matplotlib is missing, which is reported
    on stderr and does not fail the run).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result = theorem1_experiment(**kw)
    json_path = out / "theorem1.json"
    write_text_atomic(json_path, json.dumps(result, indent=1) + "\n")
    png = None
    if plot:
        try:
            png = plot_theorem1(result, out / "theorem1.png")
        except ImportError as e:
            print(f"theorem1: no plot written: {e}", file=sys.stderr)
    if not quiet:
        print(format_table(result))
        print(f"wrote {json_path}" + (f" and {png}" if png else ""))
    result["files"] = {"json": str(json_path), "png": png}
    return result

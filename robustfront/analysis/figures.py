"""`robustfront analyze landscape|boundary`: AGR's Fig. 4 and Fig. 5 for one or more models.

    res = landscape_figure({"pgd_at": m1, "agr": m2}, x, y, out_dir, attack=PGD(8/255, steps=10))
    res = boundary_figure({"pgd_at": m1, "agr": m2}, x, out_dir)

Each writes a JSON of the numbers and a PNG, and returns the JSON-ready dict. Every model sees
the same images, directions and seed, so the curves are comparable.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch

from ..checkpoint import write_json_atomic
from ..plotting import figure, save
from .boundary import boundary_distance
from .landscape import loss_landscape_1d


def _write(out: Path, stem: str, res: dict, fig, note: str | None = None) -> dict:
    write_json_atomic(out / f"{stem}.json", res)
    save(fig, out / f"{stem}.png", note)
    res["files"] = [str(out / f"{stem}.json"), str(out / f"{stem}.png")]
    return res


def _figure():
    return figure(figsize=(5.5, 4))


def landscape_figure(models: dict, x, y, out, *, alphas=None, seed: int = 0, attack=None, label: str = "") -> dict:
    """Loss along one random filter-normalised direction per model (the same seed for all)."""
    res = {"kind": "landscape", "seed": seed, "n": len(y), "setting": label, "curves": {}}
    fig, ax = _figure()
    for name, model in models.items():
        a, losses = loss_landscape_1d(model, x, y, alphas=alphas, seed=seed, attack=attack)
        res["curves"][name] = {"alpha": a, "loss": losses}
        ax.plot(a, losses, marker=".", label=name)
    ax.set_xlabel("α (step along a filter-normalised direction)")
    ax.set_ylabel("adversarial CE loss" if attack is not None else "CE loss")
    ax.set_title(f"Weight loss landscape ({label}, n={len(y)}, seed={seed})", fontsize=8)
    ax.legend(fontsize=7)
    return _write(Path(out), "landscape", res, fig)


def boundary_figure(models: dict, x, out, *, directions: int = 1000, step: float = 1 / 255, max_steps: int = 64,
                    seed: int = 0, clamp: bool = True, label: str = "") -> dict:
    """Per image, the smallest L∞ distance (in steps of `step`) at which a random sign direction
    changes the prediction; summarised per model as mean/median over images and plotted as a CDF."""
    res = {"kind": "boundary", "seed": seed, "n": len(x), "directions": directions, "step": step,
           "max_steps": max_steps, "setting": label, "models": {}}
    fig, ax = _figure()
    for name, model in models.items():
        d = boundary_distance(model, x, directions=directions, step=step, max_steps=max_steps, seed=seed, clamp=clamp)
        mins = d["min"]
        finite = mins[torch.isfinite(mins)]
        res["models"][name] = {
            "min_distance": [v if math.isfinite(v) else None for v in mins.tolist()],  # None: never changed
            "never_changed": int((~torch.isfinite(mins)).sum()),
            "mean_min_distance": finite.mean().item() if len(finite) else None,
            "median_min_distance": finite.median().item() if len(finite) else None,
            "mean_hit_frac": d["hit_frac"].mean().item()}
        xs = torch.sort(finite * 255).values
        never = res["models"][name]["never_changed"]
        ax.step(xs.tolist(), (torch.arange(1, len(xs) + 1) / len(mins)).tolist(), where="post",
                label=f"{name} ({never}/{len(mins)} never reached the boundary)")
    ax.set_xlabel("smallest L∞ distance to the boundary (×1/255)")
    ax.set_ylabel("fraction of images")
    ax.set_ylim(0, 1)
    ax.set_title(f"Decision-boundary distance ({label}, n={len(x)}, {directions} random sign directions, "
                 f"seed={seed})", fontsize=7)
    ax.legend(fontsize=7)
    note = (f"Images whose prediction never changed within {max_steps} steps of {step * 255:.3g}/255 are not on "
            f"the curves: each curve ends below 1 by that fraction.")
    return _write(Path(out), "boundary", res, fig, note)


__all__ = ["boundary_figure", "landscape_figure"]

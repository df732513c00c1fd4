"""Decision-boundary distance along random directions (AGR Fig. 4).

From each image, walk along random unit-L∞ directions (uniform signs ±1 per pixel) in steps of
`step` (default 1/255) until the predicted class changes, up to `max_steps`; the distance is the
number of steps × step, or inf if the prediction never changed. Per image the minimum over
directions is returned (and the mean over directions).
"""
from __future__ import annotations

import torch

from ..models.modes import eval_mode
from ..ticker import Ticker


def boundary_distance(model, x, y=None, *, directions: int = 1000, step: float = 1 / 255, max_steps: int = 64,
                      seed: int = 0, clamp: bool = True, batch_size: int = 8192) -> dict:
    """Returns {"min": (N,) tensor, "mean": (N,) tensor over directions that hit the boundary,
    "hit_frac": (N,) fraction of directions that changed the prediction, "step", "max_steps"}.

    The reference prediction is the model's own on the clean image (y is unused except for shape checks).
    """
    g = torch.Generator(device="cpu").manual_seed(seed)
    mins, means, hits = [], [], []
    # per module, so a submodule kept in eval mode inside a training model comes back as it was
    with eval_mode(model), torch.no_grad():
        tick = Ticker("boundary", len(x), "images")
        for i in range(len(x)):
            xi = x[i:i + 1].float()
            pred = model(xi).argmax(1)
            dist = torch.full((directions,), float("inf"))
            d = (torch.randint(0, 2, (directions, *xi.shape[1:]), generator=g).float() * 2 - 1).to(x.device)
            alive = torch.ones(directions, dtype=torch.bool)
            for k in range(1, max_steps + 1):
                idx = alive.nonzero().squeeze(1)
                if len(idx) == 0:
                    break
                changed = []
                for j in range(0, len(idx), batch_size):
                    xs = xi + k * step * d[idx[j:j + batch_size]]
                    if clamp:
                        xs = xs.clamp(0, 1)
                    changed.append((model(xs).argmax(1) != pred).cpu())
                changed = torch.cat(changed)
                dist[idx[changed]] = k * step
                alive[idx[changed]] = False
            finite = torch.isfinite(dist)
            mins.append(dist.min())
            means.append(dist[finite].mean() if finite.any() else torch.tensor(float("inf")))
            hits.append(finite.float().mean())
            tick.step()
        tick.done()
    return {"min": torch.stack(mins), "mean": torch.stack(means), "hit_frac": torch.stack(hits), "step": step,
            "max_steps": max_steps}

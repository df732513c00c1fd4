"""Guard rails before an evaluation: models whose output is random, and one-line errors for bad
requests (n larger than the split, repeated ε values, unknown attacks).

A model whose two forward passes on the same inputs differ (dropout left on, a stochastic defence,
noise injection) defeats attacks that follow one sampled gradient: AutoAttack's standard version
then over-states robustness, and its authors' remedy is the "rand" version (APGD-CE and APGD-DLR with
20 EOT samples per step). `check_randomized` measures it the way AutoAttack's own check does
(normalised logits compared, 1e-4), and also names the modules left in training mode.
"""
from __future__ import annotations

import torch
from torch import nn

from ..validation import check_int, invalid, parse_number

RAND_TOL = 1e-4  # AutoAttack's threshold on the L2 distance of L2-normalised logits
_STOCHASTIC = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)


def train_mode_modules(model: nn.Module) -> list[str]:
    """Names of Dropout and BatchNorm modules left in training mode (random or batch-dependent outputs)."""
    kinds = _STOCHASTIC + (nn.modules.batchnorm._BatchNorm,)
    return [name or type(m).__name__ for name, m in model.named_modules() if m.training and isinstance(m, kinds)]


def check_randomized(model: nn.Module, x: torch.Tensor, *, passes: int = 2, tol: float = RAND_TOL) -> dict:
    """{"randomized": bool, "max_diff": float, "train_mode": [names], "message": str | None}.

    `passes` forward passes on the same x under no_grad; randomized when the predictions differ or
    the L2-normalised logits move by more than `tol` (what AutoAttack's check_randomized flags)."""
    outs = []
    with torch.no_grad():
        for _ in range(max(2, passes)):
            o = model(x).float()
            outs.append(o / (o.flatten(1).norm(dim=1).view(-1, *[1] * (o.dim() - 1)) + 1e-10))
    diff = max((a - b).flatten(1).norm(dim=1).max().item() for i, a in enumerate(outs) for b in outs[i + 1:])
    labels_differ = any(not torch.equal(outs[0].argmax(1), o.argmax(1)) for o in outs[1:])
    randomized = labels_differ or diff > tol
    train = train_mode_modules(model)
    message = None
    if randomized:
        where = f"; modules in training mode: {', '.join(train[:4])}" if train else ""
        message = (f"the model is randomised: two forward passes on the same inputs differ (normalised logits "
                   f"by up to {diff:.3g}){where}; AutoAttack's standard version over-states its robustness - "
                   f"call model.eval() if that is a mistake, otherwise evaluate with version='rand' "
                   f"(robustfront eval --attacks autoattack-rand)")
    return {"randomized": randomized, "max_diff": diff, "train_mode": train, "message": message}


def check_n(n, available: int, split: str = "test") -> int | None:
    """n (None = the whole split) between 1 and the split's size; larger is one error line."""
    if n is None:
        return None
    n = check_int("n", n, 1)
    if n > available:
        raise invalid("n", n, f"1 to {available} (the {split} split has {available} examples) or none for all",
                      "larger than the split")
    return n


def check_eps_values(values, name: str = "eps") -> list[float]:
    """Budgets as floats ("8/255" spellings accepted), each > 0 and no value twice."""
    out = []
    for v in values:
        x = parse_number(v, name)
        if x <= 0:
            raise invalid(name, v, "values > 0")
        if any(abs(x - y) <= 1e-9 * max(1.0, abs(y)) for y in out):
            raise invalid(name, list(values), "distinct values", f"a list with {v!r} twice")
        out.append(x)
    if not out:
        raise invalid(name, list(values), "at least one value")
    return out


def check_attacks(names, allowed) -> list[str]:
    """Each name one of `allowed` (an unknown one is one line listing them), no name twice."""
    allowed = list(allowed)
    seen = []
    for a in names:
        if a not in allowed:
            raise invalid("attack", a, ", ".join(allowed), "unknown")
        if a in seen:
            raise invalid("attacks", list(names), "each attack once", f"a list with {a!r} twice")
        seen.append(a)
    return seen


__all__ = ["check_attacks", "check_eps_values", "check_n", "check_randomized", "train_mode_modules"]

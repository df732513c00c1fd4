"""Guard rail before an evaluation: models whose output is random. (Bad requests - unknown attacks,
repeated or negative budgets, n larger than the split - are refused by `EvalConfig` and
`load_for_eval`, each rule once.)

A model whose two forward passes on the same inputs differ (dropout left on, a stochastic defence,
noise injection) defeats attacks that follow one sampled gradient: AutoAttack's standard version
then over-states robustness, and its authors' remedy is the "rand" version (APGD-CE and APGD-DLR with
20 EOT samples per step). `check_randomized` measures it the way AutoAttack's own check does
(normalised logits compared, 1e-4), and also names the modules left in training mode.
"""
from __future__ import annotations

import torch
from torch import nn


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


__all__ = ["check_randomized", "train_mode_modules"]

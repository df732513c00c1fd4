"""The official AutoAttack code (the `pyautoattack` package) behind robustfront's attack call shape.

`run_official` always passes the device, sets the number of target classes for data sets with fewer
than 10 classes, drops from a cascade the attacks that cannot run on so few classes, takes a seed,
records the accuracy the official runner logs after each attack of its cascade, and collects the
official code's own warnings (randomised defence, probability outputs, zero gradients, Square
stronger than the cascade). Names are robustfront's (`apgd_ce`, `fab_t`, ...); the objects, the
collector and the map to the package's own spellings come from the one adapter, official.py.

`AutoAttack` is the registered attack (`autoattack`, `autoattack_plus`, `autoattack_rand`, `fab`, `fab_t`,
`square`): called as `attack(model, x, y)` it returns the official adversarial examples, and
`robust_mask` gives the official runner's per-sample result with its log. Evaluation runs every one
of these names (and apgd_ce, apgd_dlr, apgd_t) through robustfront's cascade instead (eval/cascade.py:
the same per-sample results, resumable and shardable).
"""
from __future__ import annotations

import sys

import torch

from . import official
from .base import Attack, check_choice, check_int
from .official import MIN_CLASSES, OFFICIAL, VERSIONS, too_few_classes


def run_official(model, x, y, *, eps: float, norm: str = "Linf", version: str = "standard",
                 attacks: list[str] | None = None, seed: int = 0, batch_size: int = 250, n_iter: int | None = None,
                 n_target_classes: int | None = None, return_adv: bool = False):
    """Run the official AutoAttack on (x, y); x must be in [0,1] (the official code clamps to it).

    version: "standard", "plus" or "rand" (APGD-CE and APGD-DLR with 20 EOT samples, for randomised
    models); `attacks` picks single official attacks (with the budgets of
    `version`) instead of the whole cascade; n_iter / n_target_classes override the APGD budgets.
    An attack asked for explicitly that cannot run on the model's K classes raises ValueError; the
    cascade drops such attacks (one line on stderr). ε = 0 is the identity (the official code divides
    by ε). Returns (correct: bool per sample, info) with info = {"after": {attack: acc after it},
    "warnings": [the official code's warnings], "skipped": {attack: reason}}; with return_adv also
    the adversarial examples. (Evaluation runs these attacks through robustfront's cascade,
    eval/cascade.py, which gives the same per-sample results with resume and shards.)
    """
    check_choice("version", version, VERSIONS)
    with torch.no_grad():
        n_classes = model(x[:1]).shape[1]
    chosen = official.single(attacks, n_classes) if attacks else None
    if eps == 0 or len(y) == 0:
        with torch.no_grad():
            ok = torch.cat([model(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]
                            for i in range(0, len(y), batch_size)]) if len(y) else torch.zeros(0, dtype=torch.bool)
        info = {"after": {}, "warnings": [], "skipped": {}}
        return (ok, info, x.clone()) if return_adv else (ok, info)
    aa, cascade, skipped, log = official.build(model, eps=eps, norm=norm, version=version, seed=seed, device=x.device,
                                               n_classes=n_classes)
    aa.verbose = True  # the runner logs each attack's accuracy (log.after)
    if chosen:
        aa.attacks_to_run, skipped = chosen, {}
    else:
        aa.attacks_to_run, skipped = cascade, {official.ours(a): why for a, why in skipped.items()}
        if skipped:
            print(f"autoattack: K={n_classes} classes, dropped " + ", ".join(f"{a} ({why})"
                  for a, why in skipped.items()), file=sys.stderr, flush=True)
    if n_iter is not None:  # APGD derives its step-size checkpoints from n_iter at construction: keep them in step
        for apgd in (aa.apgd, aa.apgd_targeted):
            official.set_iters(apgd, int(n_iter))
    if n_target_classes is not None:
        aa.apgd_targeted.n_target_classes = min(aa.apgd_targeted.n_target_classes, int(n_target_classes))
        aa.fab.n_target_classes = min(aa.fab.n_target_classes, int(n_target_classes))
    params = [p for p in model.parameters()]
    grads = [None if p.grad is None else p.grad.clone() for p in params]
    try:
        torch.manual_seed(seed)
        x_adv, y_adv = aa.run_standard_evaluation(x, y, batch_size=batch_size)
    finally:
        for p, g in zip(params, grads):  # FAB calls .backward(): the parameters' .grad is put back
            p.grad = g
    info = {"after": log.after, "warnings": log.messages, "skipped": skipped}
    return ((y_adv == y), info, x_adv) if return_adv else ((y_adv == y), info)


class AutoAttack(Attack):
    r"""The official AutoAttack, a cascade ("standard": APGD-CE, APGD-T, FAB-T, Square; "plus": six
    attacks with restarts) or single official attacks (`attacks=["fab_t"]`) at that version's budgets.

    Paper: Reliable evaluation of adversarial robustness with an ensemble of diverse parameter-free
    attacks, https://arxiv.org/abs/2003.01690 (code: https://github.com/fra31/auto-attack)

    Arguments:
        eps (float), norm (str: Linf, L2, L1): the threat model.
        version (str): "standard" (default), "plus" or "rand" (for randomised models: EOT).
        attacks (list | None): single official attacks instead of the cascade.
        seed (int): the official runner's seed (default 0).
        batch_size (int): the runner's batch size (default 250).
        n_iter (int | None): APGD iterations instead of the official 100 (quick looks and tests only).
        bounds: only (0, 1), the box the official code clips to.

    Examples::
        >>> x_adv = AutoAttack(eps=8/255)(model, x, y)
    """

    def __init__(self, eps: float = 8 / 255, norm: str = "Linf", version: str = "standard",
                 attacks: list[str] | None = None, seed: int = 0, batch_size: int = 250, *, bounds=(0.0, 1.0),
                 n_iter: int | None = None):
        official.check_unit_box(bounds)
        super().__init__(eps, norm=norm, bounds=(0.0, 1.0))
        self.version = check_choice("version", version, VERSIONS)
        bad = [a for a in attacks or [] if a not in OFFICIAL]
        if bad:
            raise ValueError(f"unknown AutoAttack attack(s) {bad}; allowed: {', '.join(OFFICIAL)}")
        self.attacks = list(attacks) if attacks else None
        self.seed, self.batch_size = int(seed), int(batch_size)
        self.n_iter = None if n_iter is None else check_int("n_iter", n_iter, 1)

    def perturb(self, model, x, y):
        return run_official(model, x, y, eps=self.eps, norm=self.norm, version=self.version, attacks=self.attacks,
                            seed=self.seed, batch_size=self.batch_size, n_iter=self.n_iter, return_adv=True)[2]

    def robust_mask(self, model, x, y, *, batch_size: int = 500, seed: int = 0, progress=None):
        """The official runner's per-sample result (evaluation takes it from the cascade instead, which
        gives the same masks; eval/suite.py uses this one at ε = 0 only, where the attack is the identity)."""
        out = run_official(model, x, y, eps=self.eps, norm=self.norm, version=self.version, attacks=self.attacks,
                           seed=seed, batch_size=batch_size, n_iter=self.n_iter)
        if progress is not None:
            progress.update(len(y))
        return out


__all__ = ["AutoAttack", "MIN_CLASSES", "OFFICIAL", "VERSIONS", "run_official", "too_few_classes"]

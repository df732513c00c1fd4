"""The official AutoAttack code (the `pyautoattack` package) behind robustfront's attack call shape.

`run_official` always passes the device, sets the number of target classes for data sets with fewer
than 10 classes, drops from a cascade the attacks that cannot run on so few classes, takes a seed,
records the accuracy the official runner logs after each attack of its cascade, and collects the
official code's own warnings (randomised defence, probability outputs, zero gradients, Square
stronger than the cascade). Names are robustfront's (`apgd_ce`, `fab_t`, ...); the runner's own
spellings (`apgd-ce`, `fab-t`) are used only towards pyautoattack.

`AutoAttack` is the registered attack (`autoattack`, `autoattack_plus`, `autoattack_rand`, `fab`, `fab_t`,
`square`):
called as `attack(model, x, y)` it returns the official adversarial examples; evaluation asks it
for `robust_mask`, the official per-sample result with its log.
"""
from __future__ import annotations

import logging
from contextlib import nullcontext
import re
import sys

import torch

from .base import Attack, check_choice, check_int

# robustfront name -> the official runner's name
OFFICIAL = {"apgd_ce": "apgd-ce", "apgd_dlr": "apgd-dlr", "apgd_t": "apgd-t", "fab": "fab", "fab_t": "fab-t",
            "square": "square"}
VERSIONS = ("standard", "plus", "rand")
# DLR divides by z_(1) - z_(3), targeted DLR by z_(1) - (z_(3) + z_(4))/2; FAB-T needs one target class
MIN_CLASSES = {"apgd_ce": 2, "apgd_dlr": 3, "apgd_t": 4, "fab": 2, "fab_t": 2, "square": 2}
_AFTER = re.compile(r"robust accuracy after ([A-Z-]+): ([0-9.]+)%")
_OURS = {v: k for k, v in OFFICIAL.items()}


class _Recorder(logging.Handler):
    """Keeps "robust accuracy after X" lines and every WARNING+ record (forwarded to stderr).

    pyautoattack's checks call `logger.warning` on the "auto-attack" logger; with a handler attached
    Python's last-resort handler stays silent, so this handler must print them itself.
    """

    def __init__(self, progress=None):
        super().__init__(logging.DEBUG)
        self.after: dict[str, float] = {}
        self.warnings: list[str] = []
        self.progress = progress

    def emit(self, record):
        msg = record.getMessage()
        if self.progress is not None and record.levelno < logging.WARNING and " - " in msg:
            self.progress.note(msg)  # "apgd-t - 2/4 - 17 out of 250 successfully perturbed"
        m = _AFTER.search(msg)
        if m:
            self.after[_OURS.get(m.group(1).lower(), m.group(1).lower())] = float(m.group(2)) / 100
        if record.levelno >= logging.WARNING:
            msg = " ".join(msg.split())  # one line each
            self.warnings.append(msg)
            print(f"autoattack warning: {msg}", file=sys.stderr, flush=True)


def too_few_classes(attacks, n_classes: int) -> dict[str, str]:
    """{attack: reason} for the official attacks that cannot run on a model with n_classes outputs."""
    return {a: f"needs >= {MIN_CLASSES[a]} classes" for a in attacks if n_classes < MIN_CLASSES[a]}


def run_official(model, x, y, *, eps: float, norm: str = "Linf", version: str = "standard",
                 attacks: list[str] | None = None, seed: int = 0, batch_size: int = 250, n_iter: int | None = None,
                 n_target_classes: int | None = None, return_adv: bool = False, progress=None):
    """Run the official AutoAttack on (x, y); x must be in [0,1] (the official code clamps to it).

    version: "standard", "plus" or "rand" (APGD-CE and APGD-DLR with 20 EOT samples, for randomised
    models); `attacks` picks single official attacks (with the budgets of
    `version`) instead of the whole cascade; n_iter / n_target_classes override the APGD budgets.
    An attack asked for explicitly that cannot run on the model's K classes raises ValueError; the
    cascade drops such attacks (one line on stderr). ε = 0 is the identity (the official code divides
    by ε). Returns (correct: bool per sample, info) with info = {"after": {attack: acc after it},
    "warnings": [the official code's warnings], "skipped": {attack: reason}}; with return_adv also
    the adversarial examples. `progress.note(text)` gets the runner's per-batch log lines.
    """
    from pyautoattack import AutoAttack as Official

    check_choice("version", version, VERSIONS)
    bad = [a for a in attacks or [] if a not in OFFICIAL]
    if bad:
        raise ValueError(f"unknown AutoAttack attack(s) {bad}; allowed: {', '.join(OFFICIAL)}")
    with torch.no_grad():
        n_classes = model(x[:1]).shape[1]
    skipped = too_few_classes(attacks or [], n_classes)
    if skipped:
        a, why = next(iter(skipped.items()))
        raise ValueError(f"AutoAttack attack {a!r} cannot run on a model with K={n_classes} classes; it {why}")
    if eps == 0 or len(y) == 0:
        with torch.no_grad():
            ok = torch.cat([model(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]
                            for i in range(0, len(y), batch_size)]) if len(y) else torch.zeros(0, dtype=torch.bool)
        info = {"after": {}, "warnings": [], "skipped": {}}
        return (ok, info, x.clone()) if return_adv else (ok, info)
    aa = Official(model, device=x.device, eps=float(eps), norm=norm, seed=seed, version=version)
    to_run = [_OURS[a] for a in aa.attacks_to_run] if not attacks else list(attacks)
    skipped = too_few_classes(to_run, n_classes)
    if skipped:
        to_run = [a for a in to_run if a not in skipped]
        print(f"autoattack: K={n_classes} classes, dropped " + ", ".join(f"{a} ({why})" for a, why in skipped.items()),
              file=sys.stderr, flush=True)
    aa.attacks_to_run = [OFFICIAL[a] for a in to_run]
    if n_iter is not None:  # APGD derives its step-size checkpoints from n_iter at construction: keep them in step
        for apgd in (aa.apgd, aa.apgd_targeted):
            apgd.n_iter = apgd.n_iter_orig = int(n_iter)
            apgd.n_iter_2, apgd.n_iter_min = max(int(0.22 * n_iter), 1), max(int(0.06 * n_iter), 1)
            apgd.size_decr = max(int(0.03 * n_iter), 1)
    # The official default targets 9 classes; fewer classes would make it index past the logits.
    targets = min(9, n_classes - 1)
    if n_target_classes is not None:
        targets = min(targets, int(n_target_classes))
    aa.apgd_targeted.n_target_classes = min(aa.apgd_targeted.n_target_classes, targets)
    aa.fab.n_target_classes = min(aa.fab.n_target_classes, targets)

    logger = logging.getLogger("auto-attack")
    recorder, old = _Recorder(progress), (logger.level, logger.propagate)
    logger.addHandler(recorder)
    # DEBUG for the per-attack accuracies; no propagation, so a root handler neither gets flooded
    # with them nor prints the warnings a second time
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    params = [p for p in model.parameters()]
    grads = [None if p.grad is None else p.grad.clone() for p in params]
    try:
        torch.manual_seed(seed)
        x_adv, y_adv = aa.run_standard_evaluation(x, y, batch_size=batch_size)
    finally:
        logger.removeHandler(recorder)
        logger.setLevel(old[0])
        logger.propagate = old[1]
        for p, g in zip(params, grads):  # FAB calls .backward(): the parameters' .grad is put back
            p.grad = g
    info = {"after": recorder.after, "warnings": recorder.warnings, "skipped": skipped}
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
        if bounds is None or tuple(map(float, bounds)) != (0.0, 1.0):
            raise ValueError(f"bounds={bounds!r} is not allowed with the official AutoAttack code, which clamps "
                             f"to [0,1]; allowed: (0.0, 1.0)")
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
        with progress.watch(model) if progress is not None else nullcontext():  # lines inside the runner's batch
            return run_official(model, x, y, eps=self.eps, norm=self.norm, version=self.version, attacks=self.attacks,
                                seed=seed, batch_size=batch_size, n_iter=self.n_iter, progress=progress)


__all__ = ["AutoAttack", "MIN_CLASSES", "OFFICIAL", "VERSIONS", "run_official", "too_few_classes"]

"""A small adapter around the official AutoAttack code (the `pyautoattack` package).

It always passes the device, sets the number of target classes for data sets with fewer than 10
classes, drops from a cascade the attacks that cannot run on so few classes, takes a seed, records
the accuracy the official runner logs after each attack of its cascade, and collects the official
code's own warnings (randomised defence, probability outputs, zero gradients, Square stronger than
the cascade).
"""
from __future__ import annotations

import logging
import re
import sys

import torch

OFFICIAL = ("apgd-ce", "apgd-dlr", "apgd-t", "fab", "fab-t", "square")
VERSIONS = ("standard", "plus")
# DLR divides by z_(1) - z_(3), targeted DLR by z_(1) - (z_(3) + z_(4))/2; FAB-T needs one target class
MIN_CLASSES = {"apgd-ce": 2, "apgd-dlr": 3, "apgd-t": 4, "fab": 2, "fab-t": 2, "square": 2}
_AFTER = re.compile(r"robust accuracy after ([A-Z-]+): ([0-9.]+)%")


class _Recorder(logging.Handler):
    """Keeps "robust accuracy after X" lines and every WARNING+ record (forwarded to stderr).

    pyautoattack's checks call `logger.warning` on the "auto-attack" logger; with a handler attached
    Python's last-resort handler stays silent, so this handler must print them itself.
    """

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.after: dict[str, float] = {}
        self.warnings: list[str] = []

    def emit(self, record):
        msg = record.getMessage()
        m = _AFTER.search(msg)
        if m:
            self.after[m.group(1).lower()] = float(m.group(2)) / 100
        if record.levelno >= logging.WARNING:
            msg = " ".join(msg.split())  # one line each
            self.warnings.append(msg)
            print(f"autoattack warning: {msg}", file=sys.stderr, flush=True)


def too_few_classes(attacks, n_classes: int) -> dict[str, str]:
    """{attack: reason} for the official attacks that cannot run on a model with n_classes outputs."""
    return {a: f"needs >= {MIN_CLASSES[a]} classes" for a in attacks if n_classes < MIN_CLASSES[a]}


def autoattack(model, x, y, *, eps: float, norm: str = "Linf", version: str = "standard",
               attacks: list[str] | None = None, seed: int = 0, batch_size: int = 250):
    """Run the official AutoAttack on (x, y); x must be in [0,1] (the official code clamps to it).

    version: "standard" or "plus"; `attacks` picks single official attacks (with the budgets of
    `version`) instead of the whole cascade. An attack asked for explicitly that cannot run on the
    model's K classes raises ValueError; the cascade drops such attacks (one line on stderr).
    Returns (correct: bool tensor per sample, info) with info = {"after": {attack: acc after it},
    "warnings": [the official code's warnings], "skipped": {attack: reason}}.
    """
    from pyautoattack import AutoAttack

    if version not in VERSIONS:
        raise ValueError(f"version={version!r} is not known; allowed: {', '.join(VERSIONS)}")
    bad = [a for a in attacks or [] if a not in OFFICIAL]
    if bad:
        raise ValueError(f"unknown AutoAttack attack(s) {bad}; allowed: {', '.join(OFFICIAL)}")
    with torch.no_grad():
        n_classes = model(x[:1]).shape[1]
    skipped = too_few_classes(attacks or [], n_classes)
    if skipped:
        a, why = next(iter(skipped.items()))
        raise ValueError(f"AutoAttack attack {a!r} cannot run on a model with K={n_classes} classes; it {why}")
    aa = AutoAttack(model, device=x.device, eps=float(eps), norm=norm, seed=seed, version=version)
    if attacks:
        aa.attacks_to_run = list(attacks)
    skipped = too_few_classes(aa.attacks_to_run, n_classes)
    if skipped:
        aa.attacks_to_run = [a for a in aa.attacks_to_run if a not in skipped]
        print(f"autoattack: K={n_classes} classes, dropped " + ", ".join(f"{a} ({why})" for a, why in skipped.items()),
              file=sys.stderr, flush=True)
    # The official default targets 9 classes; fewer classes would make it index past the logits.
    targets = min(9, n_classes - 1)
    aa.apgd_targeted.n_target_classes = min(aa.apgd_targeted.n_target_classes, targets)
    aa.fab.n_target_classes = min(aa.fab.n_target_classes, targets)

    logger = logging.getLogger("auto-attack")
    recorder, old = _Recorder(), (logger.level, logger.propagate)
    logger.addHandler(recorder)
    # DEBUG for the per-attack accuracies; no propagation, so a root handler neither gets flooded
    # with them nor prints the warnings a second time
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        torch.manual_seed(seed)
        _, y_adv = aa.run_standard_evaluation(x, y, batch_size=batch_size)
    finally:
        logger.removeHandler(recorder)
        logger.setLevel(old[0])
        logger.propagate = old[1]
    return (y_adv == y), {"after": recorder.after, "warnings": recorder.warnings, "skipped": skipped}

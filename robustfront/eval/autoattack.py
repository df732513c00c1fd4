"""A small adapter around the official AutoAttack code (the `pyautoattack` package).

It always passes the device, sets the number of target classes for data sets
with fewer than 10 classes, takes a seed, and records the accuracy the official
runner logs after each attack of its cascade.
"""
from __future__ import annotations

import logging
import re

import torch

OFFICIAL = ("apgd-ce", "apgd-dlr", "apgd-t", "fab", "fab-t", "square")
VERSIONS = ("standard", "plus")
_AFTER = re.compile(r"robust accuracy after ([A-Z-]+): ([0-9.]+)%")


class _Recorder(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.after: dict[str, float] = {}

    def emit(self, record):
        m = _AFTER.search(record.getMessage())
        if m:
            self.after[m.group(1).lower()] = float(m.group(2)) / 100


def autoattack(model, x, y, *, eps: float, norm: str = "Linf", version: str = "standard",
               attacks: list[str] | None = None, seed: int = 0, batch_size: int = 250):
    """Run the official AutoAttack on (x, y).

    version: "standard" or "plus"; `attacks` picks single official attacks (with the budgets of
    `version`) instead of the whole cascade. Returns (correct: bool tensor per sample,
    accuracy after each attack of the cascade: {name: acc}).
    """
    from pyautoattack import AutoAttack

    if version not in VERSIONS:
        raise ValueError(f"version={version!r} is not known; allowed: {', '.join(VERSIONS)}")
    bad = [a for a in attacks or [] if a not in OFFICIAL]
    if bad:
        raise ValueError(f"unknown AutoAttack attack(s) {bad}; allowed: {', '.join(OFFICIAL)}")
    with torch.no_grad():
        n_classes = model(x[:1]).shape[1]
    aa = AutoAttack(model, device=x.device, eps=float(eps), norm=norm, seed=seed, version=version)
    if attacks:
        aa.attacks_to_run = list(attacks)
    # The official default targets 9 classes; fewer classes would make it index past the logits.
    targets = min(9, n_classes - 1)
    aa.apgd_targeted.n_target_classes = min(aa.apgd_targeted.n_target_classes, targets)
    aa.fab.n_target_classes = min(aa.fab.n_target_classes, targets)

    logger = logging.getLogger("auto-attack")
    recorder, old_level = _Recorder(), logger.level
    logger.addHandler(recorder)
    logger.setLevel(logging.DEBUG)
    try:
        torch.manual_seed(seed)
        _, y_adv = aa.run_standard_evaluation(x, y, batch_size=batch_size)
    finally:
        logger.removeHandler(recorder)
        logger.setLevel(old_level)
    return (y_adv == y), recorder.after

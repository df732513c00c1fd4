"""Evaluation: attack suites, metrics, sanity checks and the AutoAttack adapter. Never imports `train`."""
from .autoattack import autoattack
from .metrics import accuracy, aggregate, auto_batch_size, correct_mask, mean_nrr
from .mifgsm import MIFGSM
from .sanity import format_sanity, sanity_check
from .spsa import SPSA
from .suite import build_attack, check_attack_name, evaluate

__all__ = ["MIFGSM", "SPSA", "accuracy", "aggregate", "auto_batch_size", "autoattack", "build_attack", "check_attack_name",
           "correct_mask", "evaluate", "format_sanity", "mean_nrr", "sanity_check"]

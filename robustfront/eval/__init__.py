"""Evaluation: attack suites, metrics and the AutoAttack adapter. Never imports `train`."""
from .autoattack import autoattack
from .metrics import accuracy, correct_mask
from .suite import check_attack_name, evaluate

__all__ = ["accuracy", "autoattack", "check_attack_name", "correct_mask", "evaluate"]

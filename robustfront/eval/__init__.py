"""Evaluation: attack suites, metrics, sanity checks, typed results. Never imports `train`."""
from .load import EvalInput, load_for_eval
from .metrics import accuracy, aggregate, auto_batch_size, correct_mask, mean_nrr
from .result import EvalResult
from .sanity import format_sanity, sanity_check
from .suite import check_attacks, evaluate

__all__ = ["EvalInput", "EvalResult", "accuracy", "aggregate", "auto_batch_size", "check_attacks", "correct_mask",
           "evaluate", "format_sanity", "load_for_eval", "mean_nrr", "sanity_check"]

"""Analyses that are not training: the gradient conflict, CA-AT's Theorem 1 experiment, AGR's loss
landscape and decision-boundary distance."""
from .conflict import gradient_conflict
from .linear import fit_logistic_regression, linear_worst_case
from .theorem1 import DEFAULT_BUDGETS, format_table, main_theorem1, plot_theorem1, theorem1_experiment

__all__ = ["DEFAULT_BUDGETS", "fit_logistic_regression", "format_table", "gradient_conflict", "linear_worst_case",
           "main_theorem1", "plot_theorem1", "theorem1_experiment"]

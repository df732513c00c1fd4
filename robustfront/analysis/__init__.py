"""Analyses that are not training: the gradient conflict and CA-AT's Theorem 1 experiment."""
from .conflict import (DEFAULT_BUDGETS, fit_logistic_regression, format_table, gradient_conflict,
                       linear_worst_case, main_theorem1, plot_theorem1, theorem1_experiment)

__all__ = ["DEFAULT_BUDGETS", "fit_logistic_regression", "format_table", "gradient_conflict", "linear_worst_case",
           "main_theorem1", "plot_theorem1", "theorem1_experiment"]

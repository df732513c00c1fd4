"""The front wing: rows from evaluation results (rows.py), the Pareto / hypervolume / dominance maths
(maths.py), the table writer (table.py), the figures (plots.py, layout.py), and the report over run
folders and sweeps (report.py, html.py)."""
from .maths import analyze, check_results, dominance, group_results, hypervolume, mean_std, pareto_mask, summarize
from .rows import read_run, rows_from_eval, run_rows
from .report import write_fronts
from .table import eps_with_decimal, fmt_eps, front_markdown, write_front_table

__all__ = ["analyze", "check_results", "dominance", "eps_with_decimal", "fmt_eps", "front_markdown", "group_results",
           "hypervolume", "mean_std", "pareto_mask", "read_run", "rows_from_eval", "run_rows", "summarize",
           "write_front_table", "write_fronts"]

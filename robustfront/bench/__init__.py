"""`robustfront bench`: training-step throughput of robustfront against a reference-style PGD-AT loop.

runner.py times the configurations side by side; reference.py is the loop written the way published
code does it, kept out of the library's own training step.
"""
from .reference import ReferenceImages, reference_steps
from .runner import FULL, METHODS, QUICK, VARIANTS, format_table, paired_ratio, peak_memory, random_cifar, run_bench

__all__ = ["FULL", "METHODS", "QUICK", "ReferenceImages", "VARIANTS", "format_table", "paired_ratio", "peak_memory",
           "random_cifar", "reference_steps", "run_bench"]

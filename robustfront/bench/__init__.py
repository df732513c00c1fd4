"""`robustfront bench`: training-step throughput (images/s, FLOP/s, MFU, memory) of robustfront against a
reference-style PGD-AT loop. (The GPU run that drives it on a lent device lives outside the package,
in benchmarks/gpu/.)

runner.py builds and times the configurations side by side; report.py assembles the report;
flops.py counts a step's FLOPs and measures the device's peak; reference.py is the loop written the
way published code does it, kept out of the library's own training step. Names here are loaded on
first use (importing the package costs nothing).
"""
_NAMES = {"ReferenceImages": ".reference", "reference_steps": ".reference",
          "FULL": ".runner", "METHODS": ".runner", "QUICK": ".runner", "VARIANTS": ".runner",
          "peak_memory": ".runner", "random_cifar": ".runner",
          "format_table": ".report", "paired_ratio": ".report", "run_bench": ".report",
          "matmul_peak": ".flops", "pass_flops": ".flops", "step_flops": ".flops", "step_structure": ".flops"}

__all__ = sorted(_NAMES)


def __getattr__(name):
    if name not in _NAMES:
        raise AttributeError(f"module 'robustfront.bench' has no attribute {name!r}")
    import importlib
    return getattr(importlib.import_module(_NAMES[name], __name__), name)  # lazy (PEP 562): the name from its submodule

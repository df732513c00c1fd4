"""FLOPs of a training step and the device's measured peak, for `robustfront bench`'s MFU column.

As nanoGPT's estimate_mfu does: the FLOPs the algorithm needs per step, divided by the step time,
against the peak FLOP/s of the device — here a large matmul of the same dtype timed in the same
run, not a data-sheet number.

The model's three passes are counted once with torch's FLOP counter (FlopCounterMode: matmuls and
convolutions, 2 FLOPs per multiply-add; normalisation and element-wise ops are not counted):

* forward: model(x);
* input backward: the gradient with respect to the input only (what each attack step takes);
* full backward: the gradient with respect to every parameter (what a training backward takes; the
  input needs no gradient there).

A method's step is a fixed number of each pass (STRUCTURE, in passes of one batch); the test
tests/test_bench.py checks each structure against the FLOP counter run over a real Trainer.step.
"""
from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

PASSES = ("forward", "input_backward", "full_backward")


def _count(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def pass_flops(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, int]:
    """FLOPs of one forward, one input-only backward and one full (parameter) backward on batch x.

    Counted in eval mode (the counted ops are the same in train mode; eval mode leaves BatchNorm's
    running statistics alone); no parameter's .grad is touched."""
    from ..models.modes import eval_mode
    params = [p for p in model.parameters() if p.requires_grad]
    with eval_mode(model):
        with torch.no_grad():
            fwd = _count(lambda: model(x))
        xr = x.detach().clone().requires_grad_(True)
        loss = F.cross_entropy(model(xr).float(), y)
        bx = _count(lambda: torch.autograd.grad(loss, xr))
        loss = F.cross_entropy(model(x).float(), y)
        bf = _count(lambda: torch.autograd.grad(loss, params))
    return {"forward": fwd, "input_backward": bx, "full_backward": bf}


def step_structure(method: str, attack_steps: int) -> dict[str, int] | None:
    """Passes of one batch per training step (None for a method not listed here).

    K = attack_steps. The attack: K × (forward + input backward) in eval mode; TRADES' KL attack
    adds one forward of x for p(x). Training: one forward per train-mode input and one full backward
    through each (a surgery combiner's per-term backwards split one backward of the sum). RAAT:
    two attacked views, a no-grad split forward of 3 inputs per view, five train-mode forwards (DICAR's mix
    forward runs on every image with either choice of `dicar_inputs`: the default masks BatchNorm's
    statistics instead of compacting the batch)."""
    k = attack_steps
    table = {
        "pgd_at": (k + 1, k, 1),          # attack; CE(f(x'))
        "trades": (k + 3, k, 2),          # p(x) + attack; CE(f(x)) + β·KL(f(x), f(x'))
        "mart": (k + 2, k, 2),            # attack; f(x), f(x')
        "ca_at": (k + 2, k, 2),           # attack; CE(f(x)), CE(f(x')): one backward per term
        "agr": (k + 2, k, 2),
        "vanilla": (k + 2, k, 2),
        "raat": (2 * k + 11, 2 * k, 5),   # 2 attacks; 2 × split of (x, x', x''); x1, x2, x1_in, x2_in, mix
    }
    if method not in table:
        return None
    return dict(zip(PASSES, table[method]))


def step_flops(passes: dict[str, int], structure: dict[str, int] | None) -> int | None:
    if structure is None:
        return None
    return sum(structure[k] * passes[k] for k in PASSES)


# -- the device's peak, measured ---------------------------------------------------------------
PEAK_DTYPES = {"fp32": torch.float32, "tf32": torch.float32, "bf16": torch.bfloat16}


def _time(fn, reps: int, device) -> float:
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(reps):
            fn()
        end.record()
        torch.cuda.synchronize(device)
        return start.elapsed_time(end) / 1000
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    return time.perf_counter() - t0


def matmul_peak(device: torch.device, kind: str = "fp32", n_max: int | None = None, seconds: float = 0.25) -> dict:
    """FLOP/s of an n×n matmul in `kind` (fp32 with TF32 off, tf32, bf16): the best of several timed
    batches of calls (CUDA events on a GPU, else the wall clock), over the two forms a model's
    matmuls take, torch.mm and F.linear (on a CPU they can take different library paths: without
    avx512_bf16, bf16 linear goes through oneDNN at ~10x the speed of bf16 mm's fallback).
    n doubles from 256 up to n_max (8192 on CUDA, 1024 on CPU: the GEMM's plateau) while one call
    takes under a tenth of `seconds`, so a slow path stays quick to time."""
    from .precision import tf32_flags
    n_max = n_max or (8192 if device.type == "cuda" else 1024)
    dtype = PEAK_DTYPES[kind]
    best, spent, form = 0.0, 0.0, None
    with tf32_flags(kind == "tf32"):
        for name, op in (("mm", torch.mm), ("linear", F.linear)):
            n = 256
            while True:
                a = torch.randn(n, n, device=device, dtype=dtype)
                b = torch.randn(n, n, device=device, dtype=dtype)
                _time(lambda: op(a, b), 1, device)        # warm-up: library handles, kernel choice
                one = _time(lambda: op(a, b), 1, device)
                if n >= n_max or one > seconds / 10:
                    break
                n *= 2
            reps = max(1, int(seconds / 8 / max(one, 1e-9)))
            calls, t_op = 0, 0.0
            while calls < 3 or t_op < seconds:
                dt = _time(lambda: op(a, b), reps, device)
                if reps * 2 * n ** 3 / dt > best:
                    best, form = reps * 2 * n ** 3 / dt, {"op": name, "n": n}
                t_op, calls = t_op + dt, calls + 1
            spent += t_op
    return {"flops_per_s": best, "dtype": kind, **form, "timed_s": spent}


def peak_kind(variant: dict, device: torch.device, reference: bool = False) -> str:
    """Which peak a configuration is measured against: bf16 under autocast; otherwise fp32, or tf32
    where TF32 is on (the reference runs with torch's default flags: cuDNN convolutions in TF32 on CUDA)."""
    if variant.get("bf16"):
        return "bf16"
    if device.type == "cuda" and (variant.get("tf32") or reference):
        return "tf32"
    return "fp32"


__all__ = ["PASSES", "matmul_peak", "pass_flops", "peak_kind", "step_flops", "step_structure"]

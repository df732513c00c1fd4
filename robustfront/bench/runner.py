"""`robustfront bench`'s measurements: build each configuration, warm it up, time its steps side by side.

Both sides run the same model, data, batch size, attack (PGD-k, L∞ 8/255, α 2/255) and number of
timed steps, after the same number of untimed warm-up steps (compilation happens there). All
configurations are built in one process and timed side by side, one step of each per round, so
that a shared machine's slow phases hit all alike.

reference: PGD-AT written the way published code does it (bench/reference.py), with torch's
    default precision flags (on CUDA, cuDNN then runs its convolutions in TF32).
ours: `build_trainer(...).step` (robustfront.train.Trainer) for each method: device-resident
    loader with on-device augmentation, input-only attack gradients, fused/foreach SGD, no host sync
    inside the step; per variant bf16 autocast, channels_last, torch.compile and the TF32 switch.

Peak memory: on CUDA, measured in this process per configuration as the memory it holds after
its warm-up (model, optimizer, loader data) plus the most one step allocates beyond that; on CPU,
from a fresh process per configuration (`python -m robustfront.bench SPEC`, peak RSS).
"""
from __future__ import annotations

import json
import random
import resource
import subprocess
import sys
import time

import numpy as np
import torch

from ..device import CompiledNet, maybe_compile
from .precision import tf32_flags
from .reference import batches, reference_steps

METHODS = ("pgd_at", "trades", "mart", "ca_at", "agr", "raat")
# speed options of our trainer per variant; "fp32" is TrainConfig's defaults (fp32, NCHW) with TF32 off
VARIANTS = {"fp32": {"bf16": False, "channels_last": False, "compile": False, "tf32": False},
            "tf32": {"bf16": False, "channels_last": False, "compile": False, "tf32": True},
            "cl": {"bf16": False, "channels_last": True, "compile": False, "tf32": False},
            "bf16": {"bf16": True, "channels_last": False, "compile": False, "tf32": False},
            "fast": {"bf16": True, "channels_last": True, "compile": False, "tf32": False},
            "compiled": {"bf16": True, "channels_last": True, "compile": True, "tf32": False}}
REFERENCE = {"bf16": False, "channels_last": False, "compile": False, "tf32": None}
QUICK = {"model": "small_cnn", "data": "random-cifar", "batch_size": 128, "steps": 8, "warmup": 1}
FULL = {"model": "resnet18", "batch_size": 128, "steps": 30, "warmup": 5}


# -- data ------------------------------------------------------------------------------------
def random_cifar(n: int = 2048, seed: int = 0):
    """A CIFAR-shaped stand-in: n random uint8 images 3×32×32, 10 classes (speed does not
    depend on pixel values; every run sees the same arrays)."""
    from ..data import Dataset
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
    y = rng.integers(0, 10, n).astype(np.int64)
    return Dataset(x, y, x[:0], y[:0], x[:0], y[:0], [str(i) for i in range(10)], "random-cifar")


def dataset(spec: str, n: int, seed: int):
    if spec == "random-cifar":
        return random_cifar(n, seed)
    from ..data import load_dataset
    return load_dataset(spec, seed=seed)


# -- one configuration -----------------------------------------------------------------------
def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB; process-wide


def _our_steps(spec, ds, device):
    from ..train import TrainConfig, build_trainer
    backend = spec.get("compile_backend")
    cfg = TrainConfig(model=spec["model"], model_args=dict(spec.get("model_args") or {}), method=spec["method"],
                      batch_size=spec["batch_size"], attack_steps=spec["attack_steps"], bf16=spec["bf16"],
                      channels_last=spec["channels_last"], compile=spec["compile"] and not backend,
                      compile_mode=spec.get("compile_mode"), device=str(device), seed=spec["seed"],
                      crop=4, flip=True)
    tr = build_trainer(cfg, ds, device)
    if spec["compile"] and backend:   # the CPU dry run: dynamo's tracing, without inductor's minute of C++ builds
        tr.net = maybe_compile(tr.model, device, backend=backend)
    tr.on_epoch(200)   # an epoch past AGR's default start (150), so its full rule (GOP + GICS) is timed
    it = batches(tr.loader)

    def step():
        x, y = next(it)
        tr.step(x, y)                          # no host sync: time_step times it with CUDA events

    def notes():   # a compile that failed at a forward ran eagerly: say so beside the timing
        return {"compile_fallback": tr.net.fallback if isinstance(tr.net, CompiledNet) else None}
    return step, notes


def stepper(spec: dict, ds, device):
    """Build one configuration, run its untimed warm-up steps (compilation happens here); returns
    (step function running under the configuration's precision flags, warm-up seconds, notes:
    the first step's seconds — compilation included — and compile_fallback, the reason a compiled
    model ran eagerly, else None)."""
    random.seed(spec["seed"])
    torch.manual_seed(spec["seed"])
    if spec["compile"]:
        import torch._dynamo as dynamo
        # one graph per input shape (RAAT's 3B split forward is a second one), none with symbolic sizes
        dynamo.config.automatic_dynamic_shapes = False
        for name in ("recompile_limit", "cache_size_limit"):   # the name changed across torch versions
            if hasattr(dynamo.config, name):
                setattr(dynamo.config, name, max(getattr(dynamo.config, name), 64))
    if spec["method"] == "reference":
        inner, notes = reference_steps(spec, ds, device), dict
    else:
        inner, notes = _our_steps(spec, ds, device)

    def step():
        with tf32_flags(spec.get("tf32")):
            inner()
    t0 = time.perf_counter()
    first = None
    for _ in range(spec["warmup"]):
        step()
        if first is None:   # the first step compiles (torch.compile is lazy): its time is the compile's upper bound
            _sync(device)
            first = time.perf_counter() - t0
    _sync(device)
    return step, time.perf_counter() - t0, {"first_step_s": first, **notes()}


def time_step(step, device) -> float:
    """Seconds for one step: CUDA events around it (then a sync to read them), else the wall clock."""
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        step()
        end.record()
        torch.cuda.synchronize(device)
        return start.elapsed_time(end) / 1000
    t0 = time.perf_counter()
    step()
    return time.perf_counter() - t0


def _cuda_step_peak(step, device) -> int:
    """Bytes one step allocates beyond what is held before it (CUDA)."""
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    step()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - before


def time_interleaved(specs: list[dict], rounds: int, log=None, ds=None) -> tuple[list[list[float]], list[dict]]:
    """Step times of every configuration, measured side by side in this process: each round times
    one step of each configuration (the order rotated every round), so the slow phases of a shared
    machine (on the 2-core CI VM one step's time varies by ±20 %) hit all configurations alike and
    per-round ratios cancel them. Also returns per configuration {"warmup_s", and on CUDA
    "peak_mem_bytes" = held after warm-up + one step's peak beyond it}."""
    device = torch.device(specs[0]["device"])
    if specs[0].get("threads"):
        torch.set_num_threads(specs[0]["threads"])
    ds = ds if ds is not None else dataset(specs[0]["data"], specs[0]["n_images"], specs[0]["seed"])
    cuda = device.type == "cuda"
    steps, info = [], []
    for sp in specs:
        held = torch.cuda.memory_allocated(device) if cuda else 0
        step, warm, notes = stepper(sp, ds, device)
        steps.append(step)
        info.append({"warmup_s": warm, **notes,
                     "held_bytes": max(0, torch.cuda.memory_allocated(device) - held) if cuda else None})
        if log:
            log(f"built {sp['method']} [{sp['variant']}]: warm-up {warm:.1f}s")
    if cuda:  # one more untimed step each, for its transient peak
        for i, step in enumerate(steps):
            info[i]["peak_mem_bytes"] = info[i]["held_bytes"] + _cuda_step_peak(step, device)
    times: list[list[float]] = [[] for _ in specs]
    for r in range(rounds):
        for i in [(r + j) % len(specs) for j in range(len(specs))]:
            times[i].append(time_step(steps[i], device))
        if log:
            log(f"round {r + 1}/{rounds}: " + ", ".join(f"{sp['method']}[{sp['variant']}] {t[-1]:.3f}s"
                                                        for sp, t in zip(specs, times)))
    return times, info


def peak_memory(spec: dict) -> dict:
    """Peak memory of one configuration (warm-up and one step) in this process: CUDA max allocated,
    or on CPU the process's peak RSS (meaningful in a fresh process: see peak_memory_isolated)."""
    device = torch.device(spec["device"])
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    ds = dataset(spec["data"], spec["n_images"], spec["seed"])
    cuda = device.type == "cuda"
    base = 0 if cuda else _rss()
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    step, _, _ = stepper(spec, ds, device)
    step()
    _sync(device)
    return {"peak_mem_bytes": int(torch.cuda.max_memory_allocated(device)) if cuda else _rss(),
            "base_mem_bytes": base}


def peak_memory_isolated(spec: dict) -> dict:
    proc = subprocess.run([sys.executable, "-m", "robustfront.bench", json.dumps(spec)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise RuntimeError(f"bench run {spec['method']} failed: {tail}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


__all__ = ["FULL", "METHODS", "QUICK", "REFERENCE", "VARIANTS", "dataset", "peak_memory", "peak_memory_isolated",
           "random_cifar", "stepper", "time_interleaved", "time_step"]

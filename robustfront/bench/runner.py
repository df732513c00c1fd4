"""`robustfront bench`: training-step throughput of robustfront against a reference-style PGD-AT loop.

Both sides run the same model, data, batch size, attack (PGD-k, L∞ 8/255, α 2/255) and number of
timed steps, after the same number of untimed warm-up steps. All configurations are built in one
process and timed side by side, one step of each per round, so that a shared machine's slow phases
hit all alike; peak memory comes from a fresh subprocess per configuration (isolate=True).

reference: PGD-AT written the way published code does it (bench/reference.py).
ours: `build_trainer(...).step` (robustfront.train.Trainer) for each method: device-resident
    loader with on-device augmentation, input-only attack gradients, fused/foreach SGD, no host sync
    inside the step, optionally bf16 autocast, channels_last and torch.compile.

speedup(M) = median over rounds of step time(reference PGD-AT) / step time(M, ours): every method is
compared with the same reference loop. step_time_vs_pgd_at(M) = median over rounds of
step time(M, ours) / step time(PGD-AT, ours, same variant).
"""
from __future__ import annotations

import json
import os
import random
import resource
import statistics
import subprocess
import sys
import time

import numpy as np
import torch

from .reference import batches, reference_steps

METHODS = ("pgd_at", "trades", "mart", "ca_at", "agr", "raat")
# speed options of our trainer per variant; "fp32" is TrainConfig's defaults (fp32, NCHW)
VARIANTS = {"fp32": {"bf16": False, "channels_last": False},
            "cl": {"bf16": False, "channels_last": True},
            "fast": {"bf16": True, "channels_last": True}}
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


def _dataset(spec: str, n: int, seed: int):
    if spec == "random-cifar":
        return random_cifar(n, seed)
    from ..data import load_dataset
    return load_dataset(spec, seed=seed)


# -- one measurement -------------------------------------------------------------------------
def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_mem(device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB; process-wide


def _our_steps(spec, ds, device):
    from ..train import TrainConfig, build_trainer
    cfg = TrainConfig(model=spec["model"], method=spec["method"], batch_size=spec["batch_size"],
                      attack_steps=spec["attack_steps"], bf16=spec["bf16"], channels_last=spec["channels_last"],
                      compile=spec["compile"], device=str(device), seed=spec["seed"],
                      crop=4, flip=True)
    tr = build_trainer(cfg, ds, device)
    tr.on_epoch(200)   # an epoch past AGR's default start (150), so its full rule (GOP + GICS) is timed
    it = batches(tr.loader)

    def step():
        x, y = next(it)
        tr.step(x, y)                          # no host sync: _time_step times it with CUDA events
    return step


def _stepper(spec: dict, ds, device):
    """Build one configuration, run its untimed warm-up steps, return its step function."""
    random.seed(spec["seed"])
    torch.manual_seed(spec["seed"])
    step = (reference_steps if spec["method"] == "reference" else _our_steps)(spec, ds, device)
    for _ in range(spec["warmup"]):
        step()
    _sync(device)
    return step


def _time_step(step, device) -> float:
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


def time_interleaved(specs: list[dict], rounds: int, log=None) -> list[list[float]]:
    """Step times of every configuration, measured side by side in this process: each round times
    one step of each configuration (the order rotated every round), so the slow phases of a shared
    machine (on the 2-core CI VM one step's time varies by ±20 %) hit all configurations alike and
    per-round ratios cancel them."""
    device = torch.device(specs[0]["device"])
    if specs[0].get("threads"):
        torch.set_num_threads(specs[0]["threads"])
    ds = _dataset(specs[0]["data"], specs[0]["n_images"], specs[0]["seed"])
    steps = [_stepper(sp, ds, device) for sp in specs]
    times: list[list[float]] = [[] for _ in specs]
    for r in range(rounds):
        for i in [(r + j) % len(specs) for j in range(len(specs))]:
            times[i].append(_time_step(steps[i], device))
        if log:
            log(f"round {r + 1}/{rounds}: " + ", ".join(f"{sp['method']}[{sp['variant']}] {t[-1]:.3f}s"
                                                        for sp, t in zip(specs, times)))
    return times


def peak_memory(spec: dict) -> dict:
    """Peak memory of one configuration (warm-up and one step) in this process: CUDA max allocated,
    or on CPU the process's peak RSS (meaningful in a fresh process: see _peak_memory_isolated)."""
    device = torch.device(spec["device"])
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    ds = _dataset(spec["data"], spec["n_images"], spec["seed"])
    base = _peak_mem(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    step = _stepper(spec, ds, device)
    step()
    _sync(device)
    return {"peak_mem_bytes": _peak_mem(device), "base_mem_bytes": base if device.type == "cpu" else 0}


def _peak_memory_isolated(spec: dict) -> dict:
    proc = subprocess.run([sys.executable, "-m", "robustfront.bench", json.dumps(spec)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise RuntimeError(f"bench run {spec['method']} failed: {tail}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def paired_ratio(num: list[float], den: list[float]) -> float:
    """Median over rounds of num[r] / den[r] (two configurations timed in the same round)."""
    return statistics.median(a / b for a, b in zip(num, den))


# -- the whole benchmark ---------------------------------------------------------------------
def run_bench(*, quick: bool = True, data: str | None = None, device: str = "auto", model: str | None = None,
              batch_size: int | None = None, steps: int | None = None, warmup: int | None = None,
              attack_steps: int = 10, methods=METHODS, threads: int | None = None, variants=None,
              compile: bool = False, ref_workers: int | None = None, isolate: bool = True, seed: int = 0,
              log=None) -> dict:
    """Run the reference loop and each method; returns the JSON-ready report."""
    from ..device import cpu_bf16_native, resolve_device
    from ..train.methods import METHODS as REGISTRY
    for m in methods:
        REGISTRY.get(m)  # unknown names fail here, listing the valid ones
    dev = resolve_device(device)
    if variants is None:  # emulated bf16 (a CPU without avx512_bf16/AMX) is slower than fp32: time NHWC alone
        variants = ("fp32", "cl") if dev.type == "cpu" and not cpu_bf16_native() else ("fp32", "fast")
    for v in variants:
        if v not in VARIANTS:
            raise ValueError(f"variant {v!r} is not known; allowed: {', '.join(VARIANTS)}")
    base = dict(QUICK if quick else FULL)
    if not quick and data is None:
        raise ValueError("full mode needs --data PATH (CIFAR-10 folder or archive); or use --quick")
    base["data"] = data or base.get("data", "random-cifar")
    for k, v in (("model", model), ("batch_size", batch_size), ("steps", steps), ("warmup", warmup)):
        if v is not None:
            base[k] = v
    for k in ("batch_size", "steps"):
        if base[k] < 1:
            raise ValueError(f"{k}={base[k]} must be >= 1")
    cuda = dev.type == "cuda"
    spec = dict(base, device=str(dev), attack_steps=attack_steps, seed=seed,
                threads=threads or torch.get_num_threads(), compile=compile,
                ref_workers=(4 if cuda else 0) if ref_workers is None else ref_workers,
                n_images=max(2048, 2 * base["batch_size"]))
    load_before = os.getloadavg()
    say = log or (lambda m: None)
    specs = [dict(spec, method="reference", variant="fp32", bf16=False, channels_last=False)]
    specs += [dict(spec, method=m, variant=v, **VARIANTS[v]) for v in variants for m in methods]
    mem = []
    for sp in specs:
        # a fresh process per configuration, so that its peak memory is its own
        mem.append(_peak_memory_isolated(sp) if isolate else {"peak_mem_bytes": None, "base_mem_bytes": None})
        if isolate:
            say(f"peak memory {sp['method']} [{sp['variant']}]: {mem[-1]['peak_mem_bytes'] / 2**20:.0f} MiB")
    times = time_interleaved(specs, base["steps"], log=say)
    ref_t = times[0]
    ref_ips = spec["batch_size"] / statistics.median(ref_t)
    results = []
    for v in variants:
        rows = [(sp, t, m) for sp, t, m in zip(specs, times, mem) if sp["variant"] == v and sp["method"] != "reference"]
        pgd_t = next((t for sp, t, _ in rows if sp["method"] == "pgd_at"), None)
        for sp, t, m in rows:
            med = statistics.median(t)
            results.append({"method": sp["method"], "variant": v, **VARIANTS[v],
                            "images_per_s": spec["batch_size"] / med, "step_time_s": med,
                            "step_time_min_s": min(t), "step_time_max_s": max(t),
                            "reference_images_per_s": ref_ips, "speedup": paired_ratio(ref_t, t),
                            "step_time_vs_pgd_at": paired_ratio(t, pgd_t) if pgd_t else None,
                            **m, "step_times_s": t})
    settings = {k: spec[k] for k in ("model", "data", "batch_size", "steps", "warmup", "attack_steps", "threads",
                                     "compile", "ref_workers", "seed")}
    settings["timing"] = ("all configurations built in one process and timed side by side: `steps` rounds, each "
                          "timing one step of every configuration (order rotated), after `warmup` untimed steps "
                          "each; CPU wall clock / CUDA events per step. step_time_s: median over rounds; "
                          "images_per_s = batch_size / step_time_s")
    settings["variants"] = {v: VARIANTS[v] for v in variants}
    settings.update({
        "mode": "quick" if quick else "full", "torch": torch.__version__, "isolated_memory_runs": isolate,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(), "cpu_bf16_native": cpu_bf16_native(),
        "cpu_count": os.cpu_count(), "loadavg_before": list(load_before), "loadavg_after": list(os.getloadavg()),
        "attack": "PGD L-inf eps=8/255 alpha=2/255 (TRADES: KL attack, MART: normal start)",
        "peak_mem": ("torch.cuda.max_memory_allocated" if cuda else
                     "process peak RSS (ru_maxrss, whole process incl. torch itself; base_mem_bytes is the "
                     "peak before the model was built)") + ", from a fresh process per configuration "
                     "(warm-up and one step); null without isolated runs",
        "speedup_definition": ("median over rounds of step time(reference PGD-AT) / step time(method, robustfront), "
                               "both timed in the same round"),
        "step_time_vs_pgd_at_definition": "median over rounds of step time(method) / step time(our pgd_at, same variant)",
    })
    ref_mem = mem[0]
    return {"device": _device_name(dev), "settings": settings,
            "reference": {"method": "pgd_at (reference loop)", "images_per_s": ref_ips,
                          "step_time_s": statistics.median(ref_t), "step_time_min_s": min(ref_t),
                          "step_time_max_s": max(ref_t), **ref_mem, "step_times_s": ref_t},
            "results": results}


def _device_name(dev) -> str:
    if dev.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(dev)}"
    name = ""
    try:
        with open("/proc/cpuinfo") as f:
            name = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "")
    except OSError:
        pass
    return f"cpu: {name}".rstrip(": ")


def format_table(report: dict) -> str:
    ref = report["reference"]
    lines = [f"device: {report['device']}  model={report['settings']['model']} "
             f"batch={report['settings']['batch_size']} steps={report['settings']['steps']} "
             f"threads={report['settings']['threads']}",
             f"{'method':<14}{'variant':<8}{'img/s':>9}{'speedup':>9}{'vs pgd_at':>11}{'peak MiB':>10}",
             f"{'reference':<14}{'fp32':<8}{ref['images_per_s']:>9.1f}{1.0:>9.2f}{'':>11}"
             f"{_mib(ref['peak_mem_bytes']):>10}"]
    for r in report["results"]:
        rel = "" if r["step_time_vs_pgd_at"] is None else f"{r['step_time_vs_pgd_at']:.2f}x"
        lines.append(f"{r['method']:<14}{r['variant']:<8}{r['images_per_s']:>9.1f}{r['speedup']:>9.2f}{rel:>11}"
                     f"{_mib(r['peak_mem_bytes']):>10}")
    return "\n".join(lines)


def _mib(v) -> str:
    return "–" if v is None else f"{v / 2**20:.0f}"


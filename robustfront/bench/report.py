"""`robustfront bench`: the whole benchmark as one JSON-ready report, and its table.

speedup(M) = median over rounds of step time(reference PGD-AT) / step time(M, ours): every method is
compared with the same reference loop. step_time_vs_pgd_at(M) = median over rounds of
step time(M, ours) / step time(PGD-AT, ours, same variant). MFU = (FLOPs the step needs / median step
time) / peak FLOP/s of a large matmul in the configuration's dtype, measured in the same run
(bench/flops.py).
"""
from __future__ import annotations

import os
import statistics

import torch

from .flops import matmul_peak, pass_flops, peak_kind, step_flops, step_structure
from .precision import flags_now
from .runner import FULL, METHODS, QUICK, REFERENCE, VARIANTS, dataset, peak_memory_isolated, time_interleaved


def paired_ratio(num: list[float], den: list[float]) -> float:
    """Median over rounds of num[r] / den[r] (two configurations timed in the same round)."""
    return statistics.median(a / b for a, b in zip(num, den))


def _flops(spec: dict, ds, dev) -> dict:
    """The model's three passes at the bench's batch size, counted once (fp32, eager, NCHW)."""
    from ..train import TrainConfig, build_model
    model = build_model(TrainConfig(model=spec["model"], model_args=dict(spec.get("model_args") or {})), ds, dev)
    g = torch.Generator().manual_seed(0)
    b = spec["batch_size"]
    x = torch.rand(b, *ds.shape, generator=g).to(dev)
    y = torch.randint(0, len(ds.classes), (b,), generator=g).to(dev)
    passes = pass_flops(model, x, y)
    del model
    return passes


def _mfu_fields(flops: int | None, step_s: float, kind: str, peaks: dict) -> dict:
    achieved = None if flops is None else flops / step_s
    peak = peaks[kind]["flops_per_s"]
    return {"flops_per_step": flops, "achieved_flops_per_s": achieved, "peak_kind": kind,
            "peak_flops_per_s": peak, "mfu": None if achieved is None else achieved / peak}


def _isolated(i: int, n: int, sp: dict, say) -> dict:
    """Peak memory in a fresh process, announced: each is a silent subprocess of seconds to minutes."""
    say(f"memory {i + 1}/{n}: {sp['method']} [{sp['variant']}] in a fresh process ...")
    m = peak_memory_isolated(sp)
    say(f"memory {i + 1}/{n}: {sp['method']} [{sp['variant']}] peak {m['peak_mem_bytes'] / 2**20:.0f} MiB")
    return m


def run_bench(*, quick: bool = True, data: str | None = None, device: str = "auto", model: str | None = None,
              model_args: dict | None = None, batch_size: int | None = None, steps: int | None = None,
              warmup: int | None = None, attack_steps: int = 10, methods=METHODS, threads: int | None = None,
              variants=None, compile: bool = False, compile_mode: str | None = None, compile_backend: str | None = None,
              ref_workers: int | None = None, isolate: bool = True, reference: bool = True, seed: int = 0,
              log=None) -> dict:
    """Run the reference loop (reference=True) and each method in each variant; returns the report.

    compile=True compiles our model in every variant; compile_mode is torch.compile's mode;
    compile_backend (the CPU dry run only) replaces inductor. isolate: on CPU, peak memory from a
    fresh process per configuration (on CUDA it is measured in this process)."""
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
    threads = threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    spec = dict(base, device=str(dev), attack_steps=attack_steps, seed=seed, threads=threads,
                model_args=dict(model_args or {}), compile_mode=compile_mode, compile_backend=compile_backend,
                ref_workers=(4 if cuda else 0) if ref_workers is None else ref_workers,
                n_images=max(2048, 2 * base["batch_size"]))
    load_before = os.getloadavg()
    say = log or (lambda m: None)
    default_flags = flags_now()
    ds = dataset(spec["data"], spec["n_images"], seed)
    specs = [dict(spec, method="reference", variant="fp32", **REFERENCE)] if reference else []
    specs += [dict(spec, method=m, variant=v, **dict(VARIANTS[v], compile=VARIANTS[v]["compile"] or compile))
              for v in variants for m in methods]
    say(f"counting the FLOPs of one step ({len(specs)} configuration(s))")
    passes = _flops(spec, ds, dev)
    kinds = sorted({peak_kind(sp, dev, reference=sp["method"] == "reference") for sp in specs})
    say(f"measuring the matmul peak ({', '.join(kinds)})")
    peaks = {k: matmul_peak(dev, k) for k in kinds}
    say("peak: " + ", ".join(f"{k} {p['flops_per_s'] / 1e12:.3g} TFLOP/s" for k, p in peaks.items()))
    mem = [_isolated(i, len(specs), sp, say) if isolate and not cuda else None for i, sp in enumerate(specs)]
    times, info = time_interleaved(specs, base["steps"], log=say, ds=ds)
    for k in kinds:   # once more after the timing: on a shared machine the peak drifts with the load
        again = matmul_peak(dev, k)
        peaks[k] = dict(max(peaks[k], again, key=lambda p: p["flops_per_s"]),
                        flops_per_s_before=peaks[k]["flops_per_s"], flops_per_s_after=again["flops_per_s"])
    for i, sp in enumerate(specs):
        if not cuda:
            info[i]["peak_mem_bytes"] = mem[i]["peak_mem_bytes"] if mem[i] else None
            info[i]["base_mem_bytes"] = mem[i]["base_mem_bytes"] if mem[i] else None
        info[i].pop("held_bytes", None)
    b = spec["batch_size"]
    out_ref = None
    if reference:
        ref_t = times[0]
        med = statistics.median(ref_t)
        out_ref = {"method": "pgd_at (reference loop)", "images_per_s": b / med, "step_time_s": med,
                   "step_time_min_s": min(ref_t), "step_time_max_s": max(ref_t), **info[0],
                   **_mfu_fields(step_flops(passes, step_structure("pgd_at", attack_steps)), med,
                                 peak_kind(REFERENCE, dev, reference=True), peaks), "step_times_s": ref_t}
    ours = [(sp, t, m) for sp, t, m in zip(specs, times, info) if sp["method"] != "reference"]
    results = []
    for v in variants:
        rows = [(sp, t, m) for sp, t, m in ours if sp["variant"] == v]
        pgd_t = next((t for sp, t, _ in rows if sp["method"] == "pgd_at"), None)
        for sp, t, m in rows:
            med = statistics.median(t)
            first = next(t0 for s0, t0, _ in ours if s0["method"] == sp["method"] and s0["variant"] == variants[0])
            structure = step_structure(sp["method"], attack_steps)
            results.append({"method": sp["method"], "variant": v, **{k: sp[k] for k in VARIANTS[v]},
                            "images_per_s": b / med, "step_time_s": med,
                            "step_time_min_s": min(t), "step_time_max_s": max(t),
                            "reference_images_per_s": out_ref["images_per_s"] if reference else None,
                            "speedup": paired_ratio(times[0], t) if reference else None,
                            "step_time_vs_pgd_at": paired_ratio(t, pgd_t) if pgd_t else None,
                            f"step_time_vs_{variants[0]}": paired_ratio(t, first),
                            "step_structure": structure,
                            **_mfu_fields(step_flops(passes, structure), med, peak_kind(sp, dev), peaks),
                            **m, "step_times_s": t})
    settings = {k: spec[k] for k in ("model", "model_args", "data", "batch_size", "steps", "warmup", "attack_steps",
                                     "threads", "ref_workers", "seed", "compile_mode", "compile_backend")}
    settings["compile"] = compile
    settings["timing"] = ("all configurations built in one process and timed side by side: `steps` rounds, each "
                          "timing one step of every configuration (order rotated), after `warmup` untimed steps "
                          "each (warmup_s: their wall time, compilation included); CPU wall clock / CUDA events "
                          "per step. step_time_s: median over rounds; images_per_s = batch_size / step_time_s")
    settings["variants"] = {v: VARIANTS[v] for v in variants}
    settings["flops"] = {"passes_per_batch": passes, "per_image": {k: v / b for k, v in passes.items()},
                         "counter": "torch.utils.flop_counter.FlopCounterMode (matmuls and convolutions, 2 FLOPs "
                                    "per multiply-add), fp32 eager, counted once at this batch size"}
    settings["peak_flops"] = peaks
    settings["mfu_definition"] = ("flops_per_step / step_time_s / peak_flops_per_s; flops_per_step = the passes of "
                                  "step_structure × the model's counted passes (the FLOPs the method needs; the "
                                  "reference is given PGD-AT's, though its attack also computes parameter "
                                  "gradients); peak = best FLOP/s of an n×n matmul (mm or linear) in the "
                                  "configuration's dtype (fp32 with TF32 off, tf32, bf16), timed in this run before "
                                  "and after the steps (flops_per_s_before, _after; flops_per_s: the better)")
    settings["precision_flags_default"] = default_flags
    settings.update({
        "mode": "quick" if quick else "full", "torch": torch.__version__, "isolated_memory_runs": isolate and not cuda,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(), "cpu_bf16_native": cpu_bf16_native(),
        "cpu_count": os.cpu_count(), "loadavg_before": list(load_before), "loadavg_after": list(os.getloadavg()),
        "attack": "PGD L-inf eps=8/255 alpha=2/255 (TRADES: KL attack, MART: normal start)",
        "peak_mem": ("CUDA, in this process: memory_allocated held after the warm-up + one step's max_memory_allocated "
                     "beyond it" if cuda else
                     "process peak RSS (ru_maxrss, whole process incl. torch itself; base_mem_bytes is the "
                     "peak before the model was built), from a fresh process per configuration (warm-up and one "
                     "step); null without isolated runs"),
        "speedup_definition": ("median over rounds of step time(reference PGD-AT) / step time(method, robustfront), "
                               "both timed in the same round"),
        "step_time_vs_pgd_at_definition": "median over rounds of step time(method) / step time(our pgd_at, same variant)",
    })
    if cuda:
        settings.update(cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version())
    return {"device": device_name(dev), "settings": settings, "reference": out_ref, "results": results}


def device_name(dev) -> str:
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
    s, ref = report["settings"], report["reference"]
    lines = [f"device: {report['device']}  model={s['model']} batch={s['batch_size']} steps={s['steps']} "
             f"threads={s['threads']}  peak: " + ", ".join(f"{k} {p['flops_per_s'] / 1e12:.3g} TFLOP/s"
                                                         for k, p in s["peak_flops"].items()),
             f"{'method':<14}{'variant':<10}{'img/s':>9}{'speedup':>9}{'vs pgd_at':>11}{'MFU':>7}{'peak MiB':>10}"]
    if ref:
        lines.append(f"{'reference':<14}{'fp32':<10}{ref['images_per_s']:>9.1f}{1.0:>9.2f}{'':>11}"
                     f"{_pct(ref['mfu']):>7}{_mib(ref['peak_mem_bytes']):>10}")
    for r in report["results"]:
        rel = "" if r["step_time_vs_pgd_at"] is None else f"{r['step_time_vs_pgd_at']:.2f}x"
        sp = "" if r["speedup"] is None else f"{r['speedup']:.2f}"
        lines.append(f"{r['method']:<14}{r['variant']:<10}{r['images_per_s']:>9.1f}{sp:>9}{rel:>11}"
                     f"{_pct(r['mfu']):>7}{_mib(r['peak_mem_bytes']):>10}")
    return "\n".join(lines)


def _mib(v) -> str:
    return "–" if v is None else f"{v / 2**20:.0f}"


def _pct(v) -> str:
    return "–" if v is None else f"{100 * v:.1f}%"


__all__ = ["device_name", "format_table", "paired_ratio", "run_bench"]

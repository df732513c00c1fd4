"""What the GPU run does and how long each stage should take: sizes, estimates, the plan, one-line
summaries, and the per-method epoch times a reproduction planner reads.

Standard library only (gpu_run.py imports this before any worker has imported torch).

Estimates start from priors for an H200 and are replaced by what the run has measured once it has:
the bench's step times give the epoch's, the epoch's time gives the schedules', the fp32 bench
step gives the evaluation's. The priors, derived (ResNet-18 for CIFAR: 1.11 GFLOP forward per
image, counted with FlopCounterMode; input backward ≈ forward, full backward ≈ 2 forwards, so one
PGD-10 AT step costs 11 + 10 + 2 = 23 forward-equivalents per image):
  fp32 (TF32 off) at ~25 TFLOP/s achieved (40 % of the H200's 67): 44 µs per forward-equivalent image;
  bf16 + channels_last at ~100 TFLOP/s: PGD-AT ≈ 3 900 images/s, an epoch of 49 000 ≈ 13 s;
  AutoAttack standard ≈ 4 000 forward-equivalents per image (APGD-CE 100 × 2; APGD-T and FAB-T
  9 × 100 × 2 on the ~45 % still robust; Square 5 000 forwards on those): ≈ 0.18 s per image in fp32
  (an upper bound after a short schedule, where fewer images stay robust);
  the bench: 16 configurations × 7 steps at batch 512, ≈ 0.2-1.3 s a step: ≈ 70 s;
  torch.compile of ResNet-18 (the training graph and the attack's input-gradient graph, forward and
  backward, by inductor): ≈ 100 s.

The plan (`plan_run`) runs these estimates over the stage list before anything starts, so the
first command says up front what it will measure: the schedules' epochs and AutoAttack's image
count come from a ladder that shrinks the epochs first and drops AutoAttack last, with the time
of the stages after them (bench_compile) kept free.
"""
from __future__ import annotations

import math

AA_FEQ_PER_IMAGE = 4000      # AutoAttack standard, forward-equivalents per image (see above)
PGD20_FEQ_PER_IMAGE = 42     # clean forward + 20 × (forward + input backward) + final forward
PGD_AT_FEQ_PER_IMAGE = 23    # one PGD-10 AT step
AA_MIN = 200                 # AutoAttack on fewer images than this is not planned

# (epochs, AutoAttack images): epochs shrink first, then the AutoAttack images, AutoAttack goes last
CUDA_LADDER = [(e, 1000) for e in (10, 8, 6, 4, 3, 2)] + [(2, 500), (2, AA_MIN), (1, AA_MIN), (2, 0), (1, 0)]

SIZES = {
    "cuda": {"model": "resnet18", "model_args": {}, "attack_steps": 10, "batch": 512,
             "bench_steps": 5, "bench_warmup": 2, "bench_variants": ["fp32", "bf16", "fast"],
             "compile_methods": ["pgd_at"], "compile_variants": ["fast", "compiled"], "compile_warmup": 2,
             "train_batch": 512, "lr": 0.4, "eval_n": 1000, "n_train": 49000,
             "ladder": CUDA_LADDER, "aa_sizes": [1000, 500, AA_MIN],
             "prior": {"env": 10, "tests": 35, "data": 30, "bench": 70, "bench_compile": 100,
                       "epoch_s": 15.0, "overhead": 12, "t_feq": 44e-6}},
    "dry": {"model": "small_cnn", "model_args": {"width": 4}, "attack_steps": 2, "batch": 16,
            "bench_steps": 2, "bench_warmup": 1, "bench_variants": ["fp32", "bf16"],
            "compile_methods": ["pgd_at"], "compile_variants": ["fp32", "compiled"], "compile_warmup": 1,
            "compile_backend": "eager", "train_batch": 16, "lr": 0.1, "eval_n": 16, "n_train": 72,
            "ladder": [(2, 8), (1, 8), (1, 0)], "aa_sizes": [8],
            "prior": {"env": 8, "tests": 40, "data": 5, "bench": 40, "bench_compile": 30,
                      "epoch_s": 2.0, "overhead": 8, "t_feq": 2e-4}},
}
BENCH_METHODS = ["pgd_at", "ca_at", "agr", "trades", "raat"]
STAGES = ["env", "tests", "data", "bench", "epoch", "schedule_pgd_at", "schedule_ca_at", "autoattack",
          "bench_compile"]
SCHEDULE_METHODS = {"schedule_pgd_at": "pgd_at", "schedule_ca_at": "ca_at"}
AFTER_SCHEDULES = ["bench_compile"]   # kept free when the schedules' length is chosen


def _ok(results: dict, name: str) -> dict | None:
    r = results.get(name)
    return r["result"] if r and r["status"] == "ok" and r.get("result") else None


def bench_row(results: dict, stage: str, method: str, variant: str) -> dict | None:
    rep = _ok(results, stage)
    if not rep:
        return None
    return next((r for r in rep["results"] if r["method"] == method and r["variant"] == variant), None)


def t_feq(results: dict, size: dict) -> float:
    """Seconds per forward-equivalent image in exact fp32: the fp32 PGD-AT bench step, else the prior."""
    row = bench_row(results, "bench", "pgd_at", "fp32")
    if row:
        return row["step_time_s"] / (size["batch"] * PGD_AT_FEQ_PER_IMAGE)
    return size["prior"]["t_feq"]


def epoch_s(results: dict, size: dict, method: str) -> float:
    """One training epoch of `method` (bf16 + channels_last): the epoch stage's time, else the
    bench's fast step × steps; other methods scaled by their bench step against PGD-AT's."""
    ep = _ok(results, "epoch")
    fast = bench_row(results, "bench", "pgd_at", "fast")
    if ep:
        base = ep["epoch_time_s"][0]
    elif fast:
        base = 1.15 * fast["step_time_s"] * math.ceil(size["n_train"] / size["train_batch"])
    else:
        base = size["prior"]["epoch_s"]
    if method == "pgd_at":
        return base
    row = bench_row(results, "bench", method, "fast")
    return base * (row["step_time_vs_pgd_at"] if row and row.get("step_time_vs_pgd_at") else 1.15)


def schedule_s(results: dict, size: dict, method: str, epochs: int) -> float:
    return (size["prior"]["overhead"] + epochs * epoch_s(results, size, method)
            + size["eval_n"] * PGD20_FEQ_PER_IMAGE * t_feq(results, size))


def autoattack_s(results: dict, size: dict, n: int, models: int = 2) -> float:
    return 0.0 if n == 0 else models * (size["prior"]["overhead"] + n * AA_FEQ_PER_IMAGE * t_feq(results, size))


def estimate(name: str, results: dict, size: dict, plan: dict) -> float:
    """Seconds stage `name` should take, from what is known now."""
    pr = size["prior"]
    if name in SCHEDULE_METHODS:
        return schedule_s(results, size, SCHEDULE_METHODS[name], plan["epochs"])
    if name == "autoattack":
        return autoattack_s(results, size, plan["aa_n"], len(plan.get("checkpoints", [None, None])))
    if name == "epoch":
        return pr["overhead"] + epoch_s(results, size, "pgd_at")
    return pr[name]


def choose_schedule(results: dict, size: dict, left: float, epochs: int | None, aa_n: int | None,
                    methods: list[str], with_aa: bool):
    """(epochs, AutoAttack images, estimate) for the schedules of `methods`: the first rung of the
    ladder whose schedules and (with_aa) AutoAttack fit in `left` seconds (given values are kept);
    None when none fits."""
    rungs = list(size["ladder"])
    if epochs is not None:
        rungs = [(epochs, n) for n in ([aa_n] if aa_n is not None else size["aa_sizes"] + [0])]
    elif aa_n is not None:
        rungs = [(e, aa_n) for e in sorted({e for e, _ in size["ladder"]}, reverse=True)]
    for e, n in rungs:
        n = n if with_aa else 0
        cost = (sum(schedule_s(results, size, m, e) for m in methods)
                + autoattack_s(results, size, n, len(methods)))
        if cost <= left:
            return e, n, cost
    return None


def pick_schedule(results: dict, size: dict, left: float, reserve: float, epochs: int | None, aa_n: int | None,
                  methods: list[str], with_aa: bool):
    """choose_schedule with `reserve` seconds kept for the later stages, unless only giving those up
    lets the schedules run, or run with AutoAttack (it outranks them)."""
    kept = choose_schedule(results, size, left - reserve, epochs, aa_n, methods, with_aa)
    if kept and (kept[1] or not with_aa):
        return kept
    return choose_schedule(results, size, left, epochs, aa_n, methods, with_aa) or kept


def choose_aa(results: dict, size: dict, left: float, models: int, aa_n: int | None):
    sizes = [aa_n] if aa_n is not None else size["aa_sizes"]
    return next((n for n in sizes if n and autoattack_s(results, size, n, models) <= left), None)


def reserve_s(results: dict, size: dict, wanted: list[str], plan: dict) -> float:
    """Seconds kept free for the wanted stages that run after the schedules and AutoAttack."""
    return sum(estimate(n, results, size, plan) for n in AFTER_SCHEDULES if n in wanted)


def plan_run(size: dict, budget: float, wanted: list[str], epochs: int | None = None, aa_n: int | None = None,
             margin: float = 5) -> dict:
    """The whole run estimated from the priors before it starts: each wanted stage's estimate, the
    schedules' epochs and AutoAttack images, the stages that would not fit, the total."""
    plan, t, stages, skipped = {"epochs": epochs, "aa_n": aa_n}, 0.0, [], []
    todo = [m for n, m in SCHEDULE_METHODS.items() if n in wanted]
    for name in STAGES:
        if name not in wanted:
            continue
        left = budget - t - margin
        if name in SCHEDULE_METHODS and plan["epochs"] is None or name == "schedule_pgd_at":
            pick = pick_schedule({}, size, left, reserve_s({}, size, wanted, plan), epochs, aa_n, todo,
                                 "autoattack" in wanted)
            if pick:
                plan["epochs"], plan["aa_n"] = pick[0], pick[1]
        if (name in SCHEDULE_METHODS and plan["epochs"] is None) or (name == "autoattack" and not plan["aa_n"]):
            skipped.append(name)
            continue
        est = estimate(name, {}, size, plan)
        if est > left:
            skipped.append(name)
            continue
        stages.append({"name": name, "estimate_s": round(est, 1)})
        t += est
    return {"stages": stages, "skipped": skipped, "epochs": plan["epochs"], "aa_n": plan["aa_n"] or 0,
            "total_s": round(t, 1), "budget_s": budget}


# -- one line per stage ------------------------------------------------------------------------
def _pct(v) -> str:
    return "–" if v is None else f"{100 * v:.1f}%"


def summarize(name: str, r: dict) -> str:
    if name == "env":
        gpu = (r.get("gpu") or {}).get("name") or r["device"]
        smi = (r.get("nvidia_smi") or {}).get("gpus") or [""]
        return (f"{gpu}; torch {r['torch']} (CUDA {r['torch_cuda']}), cuDNN {r['cudnn']}; nvidia-smi: {smi[0]}; "
                f"flags {r['precision_flags']}")
    if name == "tests":
        return f"{r['passed']} passed, {r['failed']} failed, {r['errors']} errors, {r['skipped']} skipped"
    if name == "data":
        return f"{r['name']}: {r['train']}/{r['val']}/{r['test']} images {r['shape']}, loaded in {r['load_s']:.1f}s"
    if name.startswith("bench"):
        s, rows = r["settings"], r["results"]
        out = [f"batch {s['batch_size']}"]
        if r.get("reference"):
            out.append(f"reference {r['reference']['images_per_s']:.0f} img/s")
        for row in rows:
            if row["method"] in ("pgd_at", "ca_at", "agr", "raat"):
                bits = [f"{row['images_per_s']:.0f} img/s", f"MFU {_pct(row['mfu'])}"]
                if row.get("speedup") is not None:
                    bits.append(f"{row['speedup']:.1f}x ref")
                if row["method"] != "pgd_at" and row.get("step_time_vs_pgd_at"):
                    bits.append(f"{row['step_time_vs_pgd_at']:.2f}x pgd_at step")
                if row.get("compile"):
                    bits.append(f"compile ≈ {compile_s(row):.0f}s" if not row.get("compile_fallback")
                                else f"compile failed, eager: {row['compile_fallback'][:120]}")
                out.append(f"{row['method']}[{row['variant']}] " + " ".join(bits))
        return "; ".join(out)
    if name == "epoch":
        return (f"PGD-AT epoch over {r['n_train']} images: {r['epoch_time_s'][0]:.1f}s "
                f"({r['images_per_s'][0]:.0f} img/s, batch {r['config']['batch_size']})")
    if name in SCHEDULE_METHODS:
        e = r["eval"]
        return (f"{r['method']} {r['epochs']} epochs in {sum(r['epoch_time_s']):.0f}s; test n={e['n']}: clean "
                f"{_pct(e['clean_acc'])}, PGD-20 {_pct(e['robust_acc'].get('pgd20'))} ({e['time_s'].get('pgd20', 0):.1f}s)")
    if name == "autoattack":
        return "; ".join(f"{m}: AutoAttack {_pct(v['robust_acc']['autoattack'])} clean {_pct(v['clean_acc'])} on "
                         f"{v['n']} in {v['time_s']['autoattack']:.0f}s" if "robust_acc" in v else f"{m}: {v['error']}"
                         for m, v in r["results"].items())
    return ""


def compile_s(row: dict) -> float:
    """Compile time of a compiled bench row: its first warm-up step less one timed step."""
    return max(0.0, (row.get("first_step_s") or 0.0) - row["step_time_s"])


def throughput(results: dict, size: dict) -> dict | None:
    """Seconds per training epoch of each bench method on this device (bf16 + channels_last and
    exact fp32), for a reproduction planner (`robustfront reproduce --plan`) to read from
    gpu_run.json["throughput"]; None before the bench has run."""
    rep = _ok(results, "bench")
    if not rep:
        return None
    steps = math.ceil(size["n_train"] / size["train_batch"])
    methods = sorted({r["method"] for r in rep["results"]})
    fast = {m: round(epoch_s(results, size, m), 2) for m in methods if bench_row(results, "bench", m, "fast")}
    fp32 = {m: round(row["step_time_s"] * steps, 2) for m in methods
            if (row := bench_row(results, "bench", m, "fp32"))}
    env = _ok(results, "env") or {}
    return {"schema": "robustfront-gpu-throughput/1", "device": (env.get("gpu") or {}).get("name") or env.get("device"),
            "model": size["model"], "batch_size": size["train_batch"], "attack_steps": size["attack_steps"],
            "images_per_epoch": size["n_train"], "epoch_s": {"bf16_channels_last": fast, "fp32": fp32},
            "source": "the epoch stage's measured PGD-AT epoch (else the bench's fast step x steps per epoch), "
                      "other methods scaled by their bench step time against PGD-AT's; fp32: bench step x steps"}


__all__ = ["SIZES", "STAGES", "bench_row", "choose_aa", "choose_schedule", "compile_s", "estimate", "pick_schedule",
           "plan_run", "reserve_s", "summarize", "throughput"]

"""Step time and memory of adversarial fine-tuning per mode: full, linear, adapter, LoRA (attacked
through the model or through its merged attack view), on a small ViT with 32-px inputs.

One step = PGD-K on the input only (the attack passes) + one PGD-AT update (forward, backward, SGD
on the trainable parameters). All modes are built in one process and timed side by side, in rotated
order, `rounds` times after a warm-up step each (the median is reported; the CPU may be shared).
Memory, per mode in a fresh process: autograd's saved tensors in the update's forward (the
activation memory that differs by mode) and in an attack pass (the same in every mode: input
gradients need the whole backbone's activations), parameter / gradient / optimizer-state bytes, and the peak
RSS growth over the first step on a CPU (includes the step's gradient and optimizer-state
allocation; torch.cuda.max_memory_allocated on a GPU).

    python benchmarks/peft_bench.py                       # -> benchmarks/results/peft_cpu.json
    python benchmarks/peft_bench.py --trainer --method ca_at   # the trainer's own step (build_trainer + Trainer.step)
    python benchmarks/peft_bench.py --device cuda --depth 12 --batch 128 --out benchmarks/results/peft_gpu.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from robustfront.checkpoint import write_json_atomic  # noqa: E402
from robustfront.models import attack_view, create_model, prepare_finetune, trainable_parameters  # noqa: E402
from robustfront.models.peft import parameter_counts  # noqa: E402

MODES = {"full": ("full", {}), "linear": ("linear", {}), "adapter": ("adapter", {"adapter_reduction": 8}),
         "lora": ("lora", {"lora_rank": 8}), "lora_merged": ("lora", {"lora_rank": 8})}


def pgd(model, x, y, eps, steps):
    """L-inf PGD, step eps/4, random start; gradients w.r.t. the input only. δ is kept so that x + δ
    stays in [0,1] (a δ pushed outside would get a zero gradient through a clamp and stick there)."""
    delta = (x + torch.empty_like(x).uniform_(-eps, eps)).clamp(0, 1) - x
    for _ in range(steps):
        delta.requires_grad_(True)
        g, = torch.autograd.grad(F.cross_entropy(model(x + delta), y), delta)
        delta = (x + (delta.detach() + eps / 4 * g.sign()).clamp(-eps, eps)).clamp(0, 1) - x
    return (x + delta).detach()


def build(key, args, device):
    mode, kw = MODES[key]
    torch.manual_seed(0)
    model = create_model("vit_tiny_patch4_32", 10, depth=args.depth, embed_dim=args.dim, num_heads=args.heads)
    prepare_finetune(model, mode, **kw)
    model.to(device)
    view = attack_view(model) if key == "lora_merged" else model
    opt = torch.optim.SGD(trainable_parameters(model), lr=0.01, momentum=0.9)
    return model, view, opt


def build_trainer_step(key, args, device):
    """(model, trainer, None): the config's fine-tuning run as `robustfront train` builds it, on random
    32-px images; its step is Trainer.step (guarded update, per-term gradients for CA-AT/AGR, LoRA
    attacks on the merged view)."""
    import numpy as np
    from robustfront.data import Dataset
    from robustfront.train import TrainConfig, build_trainer
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (args.batch, 3, 32, 32), dtype=np.uint8)
    y = rng.integers(0, 10, args.batch).astype(np.int64)
    ds = Dataset(x, y, x[:0], y[:0], x, y, [str(i) for i in range(10)], "random")
    cfg = TrainConfig(model="vit_tiny_patch4_32", model_args={"depth": args.depth, "embed_dim": args.dim,
                                                              "num_heads": args.heads},
                      finetune=MODES[key][0], method=args.method, batch_size=args.batch, eps="8/255",
                      attack_steps=args.attack_steps, lr=0.01, val_size=0, select_on="last", crop=0, flip=False,
                      progress=False)
    torch.manual_seed(0)
    trainer = build_trainer(cfg, ds, device)
    trainer.on_epoch(0)
    return trainer.model, trainer, None


def step(model, view, opt, x, y, args):
    if opt is None:  # --trainer: view is the Trainer
        view.step(x, y)
        return
    x_adv = pgd(view, x, y, 8 / 255, args.attack_steps)
    loss = F.cross_entropy(model(x_adv), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def saved_bytes(model, x, y, input_grad=False):
    """Bytes autograd saves for backward in one forward (distinct storages counted once): the update's
    (input_grad=False) or an attack pass's (the input requires grad, so every layer saves its input)."""
    seen = {}
    x = x.clone().requires_grad_(input_grad)

    def pack(t):
        seen[(t.untyped_storage().data_ptr(), t.device)] = t.untyped_storage().nbytes()
        return t
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = F.cross_entropy(model(x), y)
    del loss
    return sum(seen.values())


def _status_kb(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) so the next peak is this step's own (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def memory_one(key, args):
    """Memory figures of one mode (run in a fresh process)."""
    device = torch.device(args.device)
    x = torch.rand(args.batch, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (args.batch,), device=device)
    model, view, opt = (build_trainer_step if args.trainer else build)(key, args, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        start = torch.cuda.memory_allocated(device)
    else:
        peak_reset, start = _reset_peak_rss(), _status_kb("VmRSS") * 1024
    step(model, view, opt, x, y, args)
    sync(device)
    params = trainable_parameters(model)
    if args.trainer:
        opt, view = view.opt, attack_view(model)
    out = {"saved_activation_bytes": saved_bytes(model, x, y),
           "attack_saved_activation_bytes": saved_bytes(view, x, y, input_grad=True),
           "param_bytes": sum(p.numel() * p.element_size() for p in model.parameters()),
           "grad_bytes": sum(p.numel() * p.element_size() for p in params),
           "optimizer_state_bytes": sum(t.numel() * t.element_size() for s in opt.state.values()
                                        for t in s.values() if torch.is_tensor(t))}
    if device.type == "cuda":
        out["peak_allocated_bytes"] = torch.cuda.max_memory_allocated(device)
        out["peak_over_start_bytes"] = out["peak_allocated_bytes"] - start
    else:
        peak = _status_kb("VmHWM") * 1024 if peak_reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        out["peak_rss_growth_bytes"] = peak - start  # model built, before the first step -> peak of the step
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--depth", type=int, default=6)
    ap.add_argument("--dim", type=int, default=192)
    ap.add_argument("--heads", type=int, default=3)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--attack-steps", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "peft_cpu.json"))
    ap.add_argument("--trainer", action="store_true", help="time the trainer's step (build_trainer + Trainer.step)")
    ap.add_argument("--method", default="pgd_at", help="with --trainer: the method (pgd_at, ca_at, ...)")
    ap.add_argument("--memory-one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.memory_one:
        print(json.dumps(memory_one(args.memory_one, args)))
        return
    device = torch.device(args.device)
    keys = [k.strip() for k in args.modes.split(",")]
    if args.trainer:  # the trainer always attacks LoRA through the merged view
        keys = [k for k in keys if k != "lora_merged"]
    load_before = os.getloadavg()
    built = {k: (build_trainer_step if args.trainer else build)(k, args, device) for k in keys}
    g = torch.Generator(device="cpu").manual_seed(0)
    x = torch.rand(args.batch, 3, 32, 32, generator=g).to(device)
    y = torch.randint(0, 10, (args.batch,), generator=g).to(device)
    for k in keys:  # warm-up
        step(*built[k], x, y, args)
    times = {k: [] for k in keys}
    cpu_times = {k: [] for k in keys}  # CPU seconds the process itself used: less sensitive to a shared CPU
    for r in range(args.rounds):
        for k in keys[r % len(keys):] + keys[:r % len(keys)]:
            sync(device)
            t, c = time.perf_counter(), time.process_time()
            step(*built[k], x, y, args)
            sync(device)
            times[k].append(time.perf_counter() - t)
            cpu_times[k].append(time.process_time() - c)
    results = {}
    for k in keys:
        cmd = [sys.executable, __file__, "--memory-one", k, "--device", args.device, "--depth", str(args.depth),
               "--dim", str(args.dim), "--heads", str(args.heads), "--batch", str(args.batch),
               "--attack-steps", str(args.attack_steps), "--threads", str(args.threads), "--method", args.method]
        cmd += ["--trainer"] if args.trainer else []
        mem = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
        results[k] = {**parameter_counts(built[k][0]), "step_time_s": statistics.median(times[k]),
                      "step_times_s": [round(t, 4) for t in times[k]],
                      "step_cpu_time_s": statistics.median(cpu_times[k]),
                      "step_cpu_times_s": [round(t, 4) for t in cpu_times[k]], **mem}
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor()) if device.type == "cpu" else torch.cuda.get_device_name(device)
    report = {
        "device": f"{device.type}: {cpu}", "torch": torch.__version__, "cpu_count": os.cpu_count(),
        "threads": args.threads, "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
        "note": ("CPU shared with other jobs while measuring: compare modes within this file, not with other "
                 "machines" if device.type == "cpu" else ""),
        "settings": {"model": f"vit_tiny_patch4_32 depth={args.depth} dim={args.dim} heads={args.heads}, 32-px inputs "
                              "(8x8 grid + class token), 10 classes", "batch": args.batch,
                     "step": (f"Trainer.step of --method {args.method} (PGD-{args.attack_steps} L-inf 8/255 training "
                              "attack, guarded SGD update of the trainable parameters)" if args.trainer else
                              f"PGD-{args.attack_steps} L-inf 8/255 on the input + one PGD-AT SGD update"),
                     "adapter": "reduction 8 after each MLP", "lora": "rank 8, alpha 8, on attn.qkv and attn.proj",
                     "lora_merged": "LoRA with the attack passes on attack_view(model) (merged weights)",
                     "timing": f"median of {args.rounds} rounds after one warm-up step, modes in rotated order; "
                               "wall-clock (step_time_s) and the process's CPU time (step_cpu_time_s)"},
        "results": results,
    }
    write_json_atomic(args.out, report)
    print(json.dumps({k: {"step_s": round(v["step_time_s"], 3), "step_cpu_s": round(v["step_cpu_time_s"], 3),
                          "trainable": v["trainable"],
                          "saved_MB": round(v["saved_activation_bytes"] / 2**20, 1)} for k, v in results.items()}))


if __name__ == "__main__":
    main()

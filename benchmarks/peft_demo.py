"""Demonstration: adversarial fine-tuning of a robustly pretrained tiny ViT, per fine-tuning mode.

1. Pretrain a small ViT with PGD-AT on one task (CIFAR-10 classes 0-4 of the JPEG copy) and write
   it the way robust checkpoints are published: a plain timm state dict, normaliser outside. (This
   stands in for someone else's robust checkpoint: its own loop, AdamW with an ε ramp, since a ViT
   attacked at full ε from its first step stays at chance.)
2. For each mode (full / linear / adapter / lora) and each method ("clean" = standard fine-tuning,
   the weighted average `vanilla:λ`, CA-AT `ca_at:γ`, `pgd_at`) fine-tune on another task (classes
   5-9) from that file THROUGH THE TRAINER: a TrainConfig with pretrained / finetune / method ->
   build_trainer (load_pretrained, prepare_finetune, trainable parameters to SGD and the combiner,
   LoRA attacks on the merged view) -> Trainer.step; the checkpoint is the trainer's own state_dict.
3. Evaluate clean, PGD-20 and AutoAttack (official, standard) accuracy, and record trainable
   parameters, median step time and peak memory growth; write JSON and a markdown table.

    python benchmarks/peft_demo.py --preset cpu        # CIFAR-10 JPEG copy, 32 px (hours on 2 CPU cores)
    python benchmarks/peft_demo.py --preset cpu_small  # CIFAR-10 at 16 px, smaller: about 1.5 h at nice 15 on a busy CPU
    python benchmarks/peft_demo.py --preset tiny       # digits at 16 px: minutes (a toy)
    python benchmarks/peft_demo.py --preset tiny --pretrain-epochs 1 ...   # every preset value overridable

`vanilla:λ` passes λ to `--opt lam` as it is; the presets use λ = 0.5, where the paper's meaning
(λ weights the adversarial loss) and the older one (λ weights the clean loss) agree.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(Path(__file__).parent)]
from peft_bench import _reset_peak_rss, _status_kb, pgd  # noqa: E402

from robustfront.attacks import ThreatModel, create_attack  # noqa: E402
from robustfront.attacks.autoattack import AutoAttack  # noqa: E402
from robustfront.checkpoint import save_atomic, write_json_atomic, write_text_atomic  # noqa: E402
from robustfront.data import DeviceLoader, load_dataset  # noqa: E402
from robustfront.models import create_model, trainable_parameters  # noqa: E402
from robustfront.models.info import info  # noqa: E402
from robustfront.models.peft import parameter_counts  # noqa: E402
from robustfront.train import TrainConfig, build_trainer  # noqa: E402

PRESETS = {
    "tiny": dict(data="digits", resize=16, pretrain_classes="0-4", finetune_classes="5-9", dim=32, depth=2, heads=2,
                 n_pretrain=1000, n_finetune=1000, n_test=200, n_aa=100, pretrain_epochs=20, finetune_epochs=8,
                 batch=64, eps="0.1", attack_steps=3, pretrain_lr=3e-3, lr=0.05, modes="full,linear,adapter,lora",
                 methods="clean,vanilla:0.5,ca_at:0.8"),
    "cpu": dict(data="../shared/datasets/cifar10-jpeg.tar.gz", resize=None, pretrain_classes="0-4",
                finetune_classes="5-9", dim=96, depth=4, heads=3, n_pretrain=10000, n_finetune=2500, n_test=1000,
                n_aa=500, pretrain_epochs=10, finetune_epochs=5, batch=64, eps="8/255", attack_steps=5,
                pretrain_lr=1e-3, lr=0.05, modes="full,linear,adapter,lora", methods="clean,vanilla:0.5,ca_at:0.8"),
    "cpu_small": dict(data="../shared/datasets/cifar10-jpeg.tar.gz", resize=16, pretrain_classes="0-4",
                      finetune_classes="5-9", dim=64, depth=4, heads=2, n_pretrain=5000, n_finetune=2000,
                      n_test=500, n_aa=100, pretrain_epochs=10, finetune_epochs=4, batch=64, eps="8/255",
                      attack_steps=3, pretrain_lr=1e-3, lr=0.05, modes="full,linear,adapter,lora",
                      methods="clean,ca_at:0.8"),
}
METHODS = {"clean": ("standard", None), "pgd_at": ("pgd_at", None), "vanilla": ("vanilla", "lam"),
           "ca_at": ("ca_at", "gamma")}


def classes(spec: str) -> list[int]:
    lo, _, hi = spec.partition("-")
    return list(range(int(lo), int(hi or lo) + 1))


def task(x, y, keep, n, seed):
    """Images of the classes in `keep`, relabelled 0..len(keep)-1, a seeded subset of n."""
    idx = np.flatnonzero(np.isin(y, keep))
    idx = np.sort(np.random.default_rng(seed).permutation(idx)[:n])
    return x[idx], np.searchsorted(np.asarray(keep), y[idx])


def peak_start(device):
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return torch.cuda.memory_allocated(device)
    return _status_kb("VmRSS") * 1024 if _reset_peak_rss() else None


def peak_growth(device, start):
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) - start
    return None if start is None else _status_kb("VmHWM") * 1024 - start


def pretrain(model, loader, epochs, lr, eps, steps, eps_warmup=0.4):
    """PGD-AT with AdamW (one-cycle learning rate), ε ramped up linearly over the first `eps_warmup`
    of the steps: the stand-in for a published robust backbone."""
    params = trainable_parameters(model)
    opt = torch.optim.AdamW(params, lr, weight_decay=0.05)
    total = epochs * len(loader)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=total, pct_start=0.2)
    done = 0
    for _ in range(epochs):
        model.train()
        for x, y in loader:
            done += 1
            x_adv = pgd(model, x, y, eps * min(1.0, done / (eps_warmup * total)), steps)
            loss = torch.nn.functional.cross_entropy(model(x_adv), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()


def finetune(trainer, epochs, device):
    """The trainer's own steps; returns (step times, peak memory growth over the fine-tuning)."""
    times, cpu, start = [], [], peak_start(device)
    for epoch in range(epochs):
        trainer.on_epoch(epoch)
        for x, y in trainer.loader:
            t, c = time.perf_counter(), time.process_time()
            trainer.step(x, y)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)  # the process's own CPU seconds: less sensitive to sharing
    trainer.pop_epoch()
    return times, cpu, peak_growth(device, start)


def evaluate(model, x, y, eps, n_aa, batch=250):
    model.eval()
    threat = ThreatModel(norm="Linf", eps=eps, alpha=eps / 4, steps=20, bounds=(0.0, 1.0))
    pgd20 = create_attack("pgd", threat)
    clean = adv = 0
    for i in range(0, len(y), batch):
        xb, yb = x[i:i + batch], y[i:i + batch]
        with torch.no_grad():
            clean += (model(xb).argmax(1) == yb).sum().item()
        torch.manual_seed(0)
        mask, _ = pgd20.robust_mask(model, xb, yb, batch_size=batch)
        adv += mask.sum().item()
    aa = None
    if n_aa > 0:
        mask, _ = AutoAttack(eps=eps, norm="Linf", version="standard").robust_mask(model, x[:n_aa], y[:n_aa], seed=0)
        aa = mask.float().mean().item()
    return {"clean": clean / len(y), "pgd20": adv / len(y), "autoattack": aa}


def run(cfg: dict, out: Path, device: str = "cpu", seed: int = 0) -> dict:
    from robustfront.validation import parse_number
    dev = torch.device(device)
    eps = parse_number(cfg["eps"], "eps")
    load_start = os.getloadavg()
    torch.manual_seed(seed)
    ds = load_dataset(cfg["data"], resize=cfg["resize"], val_size=0, seed=seed)
    size = ds.shape[-1]
    pre_keep, ft_keep = classes(cfg["pretrain_classes"]), classes(cfg["finetune_classes"])
    arch = dict(embed_dim=cfg["dim"], depth=cfg["depth"], num_heads=cfg["heads"])
    big = size >= 32

    xp, yp = task(ds.x_train, ds.y_train, pre_keep, cfg["n_pretrain"], seed)
    base = create_model("vit_tiny_patch4_32", len(pre_keep), input_size=size, in_channels=ds.shape[0], **arch).to(dev)
    t0 = time.time()
    pretrain(base, DeviceLoader(xp, yp, cfg["batch"], crop=4 if big else 0, flip=big, device=dev, seed=seed),
             cfg["pretrain_epochs"], cfg["pretrain_lr"], eps, cfg["attack_steps"])
    xpt, ypt = task(ds.x_test, ds.y_test, pre_keep, cfg["n_test"], seed)
    x_pre, y_pre = torch.as_tensor(xpt, device=dev).float() / 255, torch.as_tensor(ypt, device=dev)
    pretrain_res = {"seconds": round(time.time() - t0, 1), **evaluate(base, x_pre, y_pre, eps, 0)}
    base_file = out / "pretrained_vit.pth"  # as robust checkpoints are published: no normaliser inside
    save_atomic({"state_dict": {k: v for k, v in base.state_dict().items() if not k.startswith("normalize.")}},
                base_file)
    print(json.dumps({"pretrain": pretrain_res}), flush=True)

    xf, yf = task(ds.x_train, ds.y_train, ft_keep, cfg["n_finetune"], seed)
    xt, yt = task(ds.x_test, ds.y_test, ft_keep, cfg["n_test"], seed)
    ft = dataclasses.replace(ds, x_train=xf, y_train=yf, x_test=xt, y_test=yt, x_val=xf[:0], y_val=yf[:0],
                             classes=[ds.classes[k] for k in ft_keep])
    x_test, y_test = ft.tensors("test", dev)
    rows = []
    for mode in cfg["modes"].split(","):
        for spec in cfg["methods"].split(","):
            name, _, value = spec.partition(":")
            method, knob = METHODS[name]
            tc = TrainConfig(data=str(cfg["data"]), model="vit_tiny_patch4_32", model_args=arch, method=method,
                             opts={knob: float(value)} if knob and value else {}, pretrained=str(base_file),
                             input_mean=info(base).config["mean"], input_std=info(base).config["std"], finetune=mode,
                             epochs=cfg["finetune_epochs"], batch_size=cfg["batch"], lr=cfg["lr"], momentum=0.9,
                             weight_decay=0.0, schedule="onecycle", eps=str(cfg["eps"]),
                             alpha=repr(eps / 4), attack_steps=cfg["attack_steps"], seed=seed, val_size=0,
                             select_on="last", progress=False, device=device)
            torch.manual_seed(seed)
            t0 = time.time()
            trainer = build_trainer(tc, ft, dev)
            times, cpu, mem = finetune(trainer, tc.epochs, dev)
            model = trainer.scored
            row = {"mode": mode, "method": spec, **parameter_counts(model),
                   "step_time_s": statistics.median(times), "step_cpu_time_s": statistics.median(cpu),
                   "peak_memory_growth_bytes": mem,
                   "seconds": round(time.time() - t0, 1), **evaluate(model, x_test, y_test, eps, cfg["n_aa"]),
                   "head": info(model).pretrained_report["head"]}
            save_atomic({**trainer.state_dict(), "config": tc.to_dict()}, out / f"{mode}_{name}.pt")
            rows.append(row)
            print(json.dumps({k: row[k] for k in ("mode", "method", "trainable", "clean", "pgd20", "autoattack",
                                                  "step_time_s", "seconds")}), flush=True)
    result = {"config": cfg, "device": str(dev), "torch": torch.__version__, "seed": seed, "pretrain": pretrain_res,
              "n_test_used": len(y_test), "loadavg_start": load_start, "loadavg_end": os.getloadavg(), "rows": rows}
    write_json_atomic(out / "peft_demo.json", result)
    write_text_atomic(out / "peft_demo.md", table(result))
    return result


def table(result: dict) -> str:
    cfg = result["config"]

    def fmt(v):
        return "-" if v is None else f"{100 * v:.1f}"
    lines = [f"Fine-tuning on classes {cfg['finetune_classes']} of {cfg['data']} from a PGD-AT ViT pretrained on "
             f"classes {cfg['pretrain_classes']} (dim {cfg['dim']}, depth {cfg['depth']}); L-inf eps {cfg['eps']}, "
             f"{result.get('n_test_used', cfg['n_test'])} test images (AutoAttack: first {cfg['n_aa']}), "
             f"seed {result['seed']}, "
             f"{result['device']}, torch {result['torch']}. Fine-tuning through build_trainer / Trainer.step "
             f"(SGD, one-cycle lr {cfg['lr']}, PGD-{cfg['attack_steps']} training attack).", "",
             "| mode | method | trainable | clean % | PGD-20 % | AutoAttack % | step s (CPU s) | peak MB |",
             "|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        mem = "-" if r["peak_memory_growth_bytes"] is None else f"{r['peak_memory_growth_bytes'] / 2**20:.0f}"
        cpu = f" ({r['step_cpu_time_s']:.3f})" if "step_cpu_time_s" in r else ""
        lines.append(f"| {r['mode']} | {r['method']} | {r['trainable']:,} / {r['total']:,} | {fmt(r['clean'])} | "
                     f"{fmt(r['pgd20'])} | {fmt(r['autoattack'])} | {r['step_time_s']:.3f}{cpu} | {mem} |")
    return "\n".join(lines) + "\n"


def _value(text: str):
    """A flag's value: an int, a float, or the string itself (class ranges, "8/255", lists)."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "peft_demo"))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    for k, v in PRESETS["cpu"].items():  # every preset value can be overridden: --n-finetune 500
        ap.add_argument("--" + k.replace("_", "-"), type=_value, default=None)
    args = ap.parse_args(argv)
    cfg = dict(PRESETS[args.preset])
    cfg.update({k: getattr(args, k) for k in cfg if getattr(args, k) is not None})
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    return run(cfg, out, args.device, args.seed)


if __name__ == "__main__":
    main()

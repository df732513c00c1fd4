"""Demonstration: adversarial fine-tuning of a robustly pretrained tiny ViT, per fine-tuning mode.

1. Pretrain a small ViT with PGD-AT on one task (CIFAR-10 classes 0-4 of the JPEG copy) and write
   it the way robust checkpoints are published: a plain timm state dict, normaliser outside.
2. For each mode (full / linear / adapter / lora) and each method (the weighted average with
   λ, CA-AT with γ; "clean" = λ 0, standard fine-tuning) fine-tune on another task (classes 5-9)
   from that file: load_pretrained -> prepare_finetune -> attacks on attack_view -> updates of
   trainable_parameters only (CA-AT's rule on exactly those gradients).
3. Evaluate clean, PGD-20 and AutoAttack (official, standard) accuracy, and record trainable
   parameters, median step time and peak memory; write JSON and a markdown table.

    python benchmarks/peft_demo.py --preset cpu        # CIFAR-10 JPEG copy, a few hours on 2 CPU cores
    python benchmarks/peft_demo.py --preset tiny       # digits at 16 px: 12 min on 2 shared cores (a toy)
    python benchmarks/peft_demo.py --preset tiny --pretrain-epochs 1 ...   # every preset value overridable

λ weights the adversarial loss as in CA-AT's paper and docs/METHODS: (1-λ)·CE(x) + λ·CE(x').
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(Path(__file__).parent)]
from peft_bench import _reset_peak_rss, _status_kb, pgd  # noqa: E402

from robustfront.checkpoint import save_atomic, write_json_atomic, write_text_atomic  # noqa: E402
from robustfront.combiners import CAAT  # noqa: E402
from robustfront.data import DeviceLoader, load_dataset  # noqa: E402
from robustfront.models import (attack_view, create_model, load_pretrained, peft_state_dict,  # noqa: E402
                                prepare_finetune, trainable_parameters)
from robustfront.models.peft import parameter_counts  # noqa: E402

PRESETS = {
    "tiny": dict(data="digits", resize=16, pretrain_classes="0-4", finetune_classes="5-9", dim=32, depth=2, heads=2,
                 n_pretrain=1000, n_finetune=1000, n_test=200, n_aa=100, pretrain_epochs=20, finetune_epochs=8,
                 batch=64, eps="0.1", attack_steps=3, lr=3e-3, modes="full,linear,adapter,lora",
                 methods="clean,vanilla:0.5,ca_at:0.8"),
    "cpu": dict(data="/work/shared/datasets/cifar10-jpeg.tar.gz", resize=None, pretrain_classes="0-4",
                finetune_classes="5-9", dim=96, depth=4, heads=3, n_pretrain=10000, n_finetune=2500, n_test=1000,
                n_aa=500, pretrain_epochs=10, finetune_epochs=5, batch=64, eps="8/255", attack_steps=5, lr=1e-3,
                modes="full,linear,adapter,lora", methods="clean,vanilla:0.5,ca_at:0.8"),
}


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


def train(model, loader, epochs, lr, eps, steps, lam=1.0, gamma=None, eps_warmup=0.0):
    """Adversarial (fine-)tuning of the trainable parameters with AdamW (one-cycle learning rate) and ε
    ramped up linearly over the first `eps_warmup` of the steps (ViTs collapse to chance when
    attacked at full ε from the first step); returns (step times, peak memory growth)."""
    params = trainable_parameters(model)
    opt = torch.optim.AdamW(params, lr, weight_decay=0.05)
    total = epochs * len(loader)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=total, pct_start=0.2)
    view = attack_view(model)
    rule = CAAT(gamma) if gamma is not None else None
    device = next(model.parameters()).device
    times, start = [], peak_start(device)
    for _ in range(epochs):
        model.train()
        for x, y in loader:
            t = time.perf_counter()
            e = eps * min(1.0, (len(times) + 1) / (eps_warmup * total)) if eps_warmup else eps
            x_adv = pgd(view, x, y, e, steps) if (lam > 0 or rule) else x
            clean, adv = F.cross_entropy(model(x), y), F.cross_entropy(model(x_adv), y)
            opt.zero_grad(set_to_none=True)
            if rule:  # CA-AT: the cone rule on the flattened gradient of the trainable parameters
                g_c = torch.autograd.grad(clean, params, retain_graph=True)
                g_a = torch.autograd.grad(adv, params)
                for p, u in zip(params, rule.combine({"clean": list(g_c), "adv": list(g_a)})):
                    p.grad = u
            else:
                ((1 - lam) * clean + lam * adv).backward()
            opt.step()
            sched.step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t)
    return times, peak_growth(device, start)


def autoattack_acc(model, x, y, eps, n):
    if n <= 0:
        return None
    try:  # the adapter moves to robustfront.attacks.autoattack in the architecture step
        from robustfront.attacks.autoattack import autoattack
    except ImportError:
        from robustfront.eval.autoattack import autoattack
    correct, _ = autoattack(model, x[:n], y[:n], eps=eps, norm="Linf", version="standard", seed=0)
    return correct.float().mean().item()


def evaluate(model, x, y, eps, n_aa, batch=250):
    model.eval()
    clean = adv = 0
    for i in range(0, len(y), batch):
        xb, yb = x[i:i + batch], y[i:i + batch]
        with torch.no_grad():
            clean += (model(xb).argmax(1) == yb).sum().item()
        torch.manual_seed(0)
        x_adv = pgd(model, xb, yb, eps, 20)
        with torch.no_grad():
            adv += (model(x_adv).argmax(1) == yb).sum().item()
    return {"clean": clean / len(y), "pgd20": adv / len(y), "autoattack": autoattack_acc(model, x, y, eps, n_aa)}


def run(cfg: dict, out: Path, device: str = "cpu", seed: int = 0) -> dict:
    from robustfront.validation import parse_number
    dev = torch.device(device)
    eps = parse_number(cfg["eps"], "eps")
    torch.manual_seed(seed)
    ds = load_dataset(cfg["data"], resize=cfg["resize"], val_size=0, seed=seed)
    size = ds.shape[-1]
    pre_keep, ft_keep = classes(cfg["pretrain_classes"]), classes(cfg["finetune_classes"])
    arch = dict(input_size=size, in_channels=ds.shape[0], embed_dim=cfg["dim"], depth=cfg["depth"],
                num_heads=cfg["heads"])
    big = size >= 32
    aug = dict(crop=4 if big else 0, flip=big, device=dev, seed=seed)

    xp, yp = task(ds.x_train, ds.y_train, pre_keep, cfg["n_pretrain"], seed)
    base = create_model("vit_tiny_patch4_32", len(pre_keep), **arch).to(dev)
    t0 = time.time()
    train(base, DeviceLoader(xp, yp, cfg["batch"], **aug), cfg["pretrain_epochs"], cfg["lr"], eps,
          cfg["attack_steps"], eps_warmup=0.4)
    xpt, ypt = task(ds.x_test, ds.y_test, pre_keep, cfg["n_test"], seed)
    x_pre, y_pre = torch.as_tensor(xpt, device=dev).float() / 255, torch.as_tensor(ypt, device=dev)
    pretrain = {"seconds": round(time.time() - t0, 1), **evaluate(base, x_pre, y_pre, eps, 0)}
    base_file = out / "pretrained_vit.pth"  # as robust checkpoints are published: no normaliser inside
    save_atomic({"state_dict": {k: v for k, v in base.state_dict().items() if not k.startswith("normalize.")}},
                base_file)

    xf, yf = task(ds.x_train, ds.y_train, ft_keep, cfg["n_finetune"], seed)
    xt, yt = task(ds.x_test, ds.y_test, ft_keep, cfg["n_test"], seed)
    x_test, y_test = torch.as_tensor(xt, device=dev).float() / 255, torch.as_tensor(yt, device=dev)
    rows = []
    for mode in cfg["modes"].split(","):
        for method in cfg["methods"].split(","):
            name, _, value = method.partition(":")
            lam, gamma = {"clean": (0.0, None), "pgd_at": (1.0, None), "vanilla": (float(value or 0.5), None),
                          "ca_at": (1.0, float(value or 0.8))}[name]
            torch.manual_seed(seed)
            model = create_model("vit_tiny_patch4_32", len(ft_keep), **arch)
            report = load_pretrained(model, base_file, input_mean=base.rf_config["mean"],
                                     input_std=base.rf_config["std"])
            prepare_finetune(model, mode)
            model.to(dev)
            t0 = time.time()
            times, mem = train(model, DeviceLoader(xf, yf, cfg["batch"], **aug), cfg["finetune_epochs"],
                               cfg["lr"], eps, cfg["attack_steps"], lam=lam, gamma=gamma, eps_warmup=0.2)
            row = {"mode": mode, "method": method, **parameter_counts(model),
                   "step_time_s": statistics.median(times), "peak_memory_growth_bytes": mem,
                   "seconds": round(time.time() - t0, 1), **evaluate(model, x_test, y_test, eps, cfg["n_aa"]),
                   "head": report["head"]}
            save_atomic(peft_state_dict(model), out / f"{mode}_{name}.pt")
            rows.append(row)
            print(json.dumps({k: row[k] for k in ("mode", "method", "trainable", "clean", "pgd20", "autoattack")}),
                  flush=True)
    result = {"config": cfg, "device": str(dev), "torch": torch.__version__, "seed": seed, "pretrain": pretrain,
              "rows": rows}
    write_json_atomic(out / "peft_demo.json", result)
    write_text_atomic(out / "peft_demo.md", table(result))
    return result


def table(result: dict) -> str:
    cfg = result["config"]

    def fmt(v):
        return "-" if v is None else f"{100 * v:.1f}"
    lines = [f"Fine-tuning on classes {cfg['finetune_classes']} of {cfg['data']} from a PGD-AT ViT pretrained on "
             f"classes {cfg['pretrain_classes']} (dim {cfg['dim']}, depth {cfg['depth']}); L-inf eps {cfg['eps']}, "
             f"{cfg['n_test']} test images (AutoAttack: first {cfg['n_aa']}), seed {result['seed']}, "
             f"{result['device']}, torch {result['torch']}.", "",
             "| mode | method | trainable | clean % | PGD-20 % | AutoAttack % | step s | peak MB |",
             "|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        mem = "-" if r["peak_memory_growth_bytes"] is None else f"{r['peak_memory_growth_bytes'] / 2**20:.0f}"
        lines.append(f"| {r['mode']} | {r['method']} | {r['trainable']:,} / {r['total']:,} | {fmt(r['clean'])} | "
                     f"{fmt(r['pgd20'])} | {fmt(r['autoattack'])} | {r['step_time_s']:.3f} | {mem} |")
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

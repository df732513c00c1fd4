"""What the standard AutoAttack (official attacks, official budgets, robustfront's cascade) costs on
this machine, per 1000 images, for a small adversarially trained CNN.

    python benchmarks/autoattack_cost.py --shape digits --out benchmarks/results/autoattack_cost_digits.json
    python benchmarks/autoattack_cost.py --shape cifar --n 100 --out benchmarks/results/autoattack_cost_cifar_shape.json

digits: small_cnn (width 16) on scikit-learn's 8x8 digits, PGD-AT (ε = 32/255, 7 steps of 8/255, 15
epochs), AutoAttack at ε = 32/255 on the 360 test images. cifar: the same digits upsampled to 32x32
and repeated over 3 channels (a CIFAR-shaped input, so the per-image compute is CIFAR's for this
net), 5 epochs. The cost of a cascade grows with the number of points that survive APGD-CE (APGD-T,
FAB-T and Square only see those), so the robust accuracies are reported beside the times. On a
shared machine the wall time depends on the other jobs; the process CPU time (autoattack_cpu_s) much
less: run with OMP_NUM_THREADS=1 to read it as single-core seconds.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import torch
import torch.nn.functional as F

from robustfront.attacks.pgd import PGD
from robustfront.data import load_dataset
from robustfront.eval.cascade import autoattack_cascade
from robustfront.models import create_model


def data(shape: str):
    ds = load_dataset("digits")
    out = []
    for x, y in ((ds.x_train, ds.y_train), (ds.x_test, ds.y_test)):
        x = torch.as_tensor(x).float().div(255)
        if shape == "cifar":
            x = F.interpolate(x, scale_factor=4, mode="nearest").repeat(1, 3, 1, 1)
        out.append((x, torch.as_tensor(y)))
    return out


def pgd_at(x, y, epochs: int, eps: float, seed: int = 0):
    torch.manual_seed(seed)
    model = create_model("small_cnn", 10, in_channels=x.shape[1], input_size=x.shape[-1], width=16)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    steps = epochs * -(-len(y) // 64)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 0.05, total_steps=steps, pct_start=0.2)
    atk = PGD(eps, alpha=eps / 4, steps=7)
    for _ in range(epochs):
        perm = torch.randperm(len(y))
        for i in range(0, len(y), 64):
            idx = perm[i:i + 64]
            xa = atk(model, x[idx], y[idx])
            model.train()
            opt.zero_grad()
            F.cross_entropy(model(xa), y[idx]).backward()
            opt.step()
            sched.step()
    return model.eval()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", choices=("digits", "cifar"), default="digits")
    p.add_argument("--n", type=int, default=None, help="test images (default: all 360)")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    eps = 32 / 255
    (xtr, ytr), (xte, yte) = data(a.shape)
    if a.n:
        xte, yte = xte[:a.n], yte[:a.n]
    t0 = time.perf_counter()
    model = pgd_at(xtr, ytr, a.epochs or (15 if a.shape == "digits" else 5), eps)
    train_s = time.perf_counter() - t0
    load = os.getloadavg()
    t0, c0 = time.perf_counter(), time.process_time()
    res = autoattack_cascade(model, xte, yte, eps=eps, batch_size=500, seed=0)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    n = len(yte)
    out = {"shape": a.shape, "input": list(xte.shape[1:]), "model": "small_cnn (width 16), PGD-AT", "n": n,
           "eps": "32/255", "train_s": round(train_s, 1), "autoattack_wall_s": round(wall, 1),
           "seconds_per_1000_images": round(wall * 1000 / n, 1), "autoattack_cpu_s": round(cpu, 1),
           "cpu_seconds_per_1000_images": round(cpu * 1000 / n, 1), "time_s": res["time_s"],
           "clean_acc": res["clean_acc"], "after": res["after"], "batch_size": res["batch_size"],
           "precision": res["precision"], "threads": torch.get_num_threads(), "loadavg_before": load,
           "loadavg_after": os.getloadavg(), "cpu": platform.processor() or platform.machine(),
           "torch": torch.__version__, "warnings": res["warnings"]}
    os.makedirs(os.path.dirname(a.out) or ".", exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(out, f, indent=2)
    print(json.dumps({k: out[k] for k in ("shape", "n", "clean_acc", "after", "autoattack_wall_s",
                                          "seconds_per_1000_images", "autoattack_cpu_s",
                                          "cpu_seconds_per_1000_images", "time_s")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

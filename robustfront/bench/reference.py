"""The reference loop `robustfront bench` compares against: PGD-AT written the way published code
does it (Madry et al. / Rice et al. style), kept apart from the library's own training step.

fp32; a torch.utils.data.DataLoader over the uint8 images with per-sample random crop (pad 4) and
flip in numpy (what torchvision's RandomCrop/RandomHorizontalFlip/ToTensor do), per-batch
`.to(device)` (workers spawned on CUDA, forked on the CPU); the attack calls `loss.backward()` (so every step also computes the parameters'
gradients, which are thrown away by `opt.zero_grad()`); torch's default SGD; `.item()` per step.
"""
from __future__ import annotations

import random

import numpy as np
import torch
import torch.nn.functional as F


class ReferenceImages(torch.utils.data.Dataset):
    """torchvision-style per-sample pipeline: HWC uint8 -> RandomCrop(32, padding=4) ->
    RandomHorizontalFlip -> ToTensor, one image at a time in Python/numpy."""

    def __init__(self, x_nchw: np.ndarray, y: np.ndarray, pad: int = 4):
        self.x = np.ascontiguousarray(x_nchw.transpose(0, 2, 3, 1))  # torchvision CIFAR10 keeps NHWC
        self.y, self.pad = y, pad

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        img, p = self.x[i], self.pad
        h, w = img.shape[:2]
        img = np.pad(img, ((p, p), (p, p), (0, 0)))
        top, left = random.randint(0, 2 * p), random.randint(0, 2 * p)
        img = img[top:top + h, left:left + w]
        if random.random() < 0.5:
            img = img[:, ::-1]
        return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float().div(255), int(self.y[i])


def batches(loader):
    while True:  # epochs back to back
        yield from loader


def reference_steps(spec, ds, device):
    """Reference-style PGD-AT; returns a function running one step (with a .item())."""
    from ..train import TrainConfig, build_model
    cfg = TrainConfig(model=spec["model"], model_args=dict(spec.get("model_args") or {}), eps="8/255",
                      attack_steps=spec["attack_steps"])
    eps, alpha, k = float(cfg.eps), float(cfg.alpha), cfg.attack_steps
    model = build_model(cfg, ds, device)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    workers = spec["ref_workers"]
    # this process already holds a CUDA context (the model is built): workers are spawned, not forked
    # from it (a forked child inherits a CUDA state it must not touch); spawn pickles the dataset once
    context = "spawn" if workers > 0 and device.type == "cuda" else None
    loader = torch.utils.data.DataLoader(ReferenceImages(ds.x_train, ds.y_train), batch_size=spec["batch_size"],
                                         shuffle=True, drop_last=True, num_workers=workers,
                                         pin_memory=device.type == "cuda", persistent_workers=workers > 0,
                                         multiprocessing_context=context)
    it = batches(loader)
    log = {"loss": 0.0}

    def step():
        x, y = next(it)
        x, y = x.to(device), y.to(device)
        model.eval()
        delta = torch.empty_like(x).uniform_(-eps, eps)
        delta = (x + delta).clamp(0, 1) - x
        for _ in range(k):
            delta.requires_grad_(True)
            loss = F.cross_entropy(model(x + delta), y)
            loss.backward()                       # also fills every parameter's .grad
            delta = (delta + alpha * delta.grad.sign()).clamp(-eps, eps)
            delta = ((x + delta).clamp(0, 1) - x).detach()
        model.train()
        loss = F.cross_entropy(model(x + delta), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        log["loss"] += loss.item()                # the usual running-loss print: a host sync per step
    return step

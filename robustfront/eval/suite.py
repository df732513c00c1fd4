"""Evaluation by attack name: clean accuracy, robust accuracy per attack and worst case."""
from __future__ import annotations

import re
import time

import torch

from ..attacks import create_attack
from .autoattack import OFFICIAL, autoattack
from .metrics import correct_mask

NORMS = ("Linf", "L2", "L1")
FIXED_NAMES = ("fgsm", "autoattack", "autoattack-plus", *OFFICIAL)


def attack_names_help() -> str:
    return "fgsm, pgdK (e.g. pgd10, pgd20, pgd100), " + ", ".join(FIXED_NAMES[1:])


def check_attack_name(name: str) -> None:
    if name in FIXED_NAMES or re.fullmatch(r"pgd[1-9][0-9]*", name):
        return
    raise ValueError(f"unknown attack '{name}'; allowed: {attack_names_help()}")


def run_attack(model, x, y, name: str, *, eps: float, norm: str, seed: int, batch_size: int):
    """Per-sample correctness under attack `name` (plus AutoAttack's per-attack log, if any)."""
    check_attack_name(name)
    torch.manual_seed(seed)
    if name == "fgsm":
        if norm != "Linf":
            raise ValueError(f"fgsm is an L-infinity attack; norm={norm!r} is not allowed with it (use pgdK)")
        return correct_mask(model, x, y, create_attack("fgsm", eps=eps), batch_size), {}
    if name.startswith("pgd"):
        steps = int(name[3:])
        atk = create_attack("pgd", eps=eps, alpha=eps / 4, steps=steps, norm=norm)
        return correct_mask(model, x, y, atk, batch_size), {}
    if name in ("autoattack", "autoattack-plus"):
        return autoattack(model, x, y, eps=eps, norm=norm, version="plus" if name.endswith("plus") else "standard",
                          seed=seed, batch_size=batch_size)
    return autoattack(model, x, y, eps=eps, norm=norm, attacks=[name], seed=seed, batch_size=batch_size)


def evaluate(model, x, y, attacks=("pgd20",), *, eps: float = 8 / 255, norm: str = "Linf", seed: int = 0,
             batch_size: int = 500, log=None) -> dict:
    """Clean accuracy and robust accuracy per attack for any model mapping [0,1] inputs to logits.

    Runs in fp32 with the model in eval mode (its mode is restored afterwards). Returns
    {clean_acc, robust_acc: {name: acc}, worst_case_acc, n, eps, norm, seed, time_s: {name: s},
    autoattack_log: {name: {attack: acc after it}}}.
    """
    if norm not in NORMS:
        raise ValueError(f"norm={norm!r} is not known; allowed: {', '.join(NORMS)}")
    if eps < 0:
        raise ValueError(f"eps={eps} is negative; allowed: eps >= 0")
    for name in attacks:
        check_attack_name(name)
    was_training = model.training
    model.eval()
    try:
        x, y = x.float(), y.long()
        clean = correct_mask(model, x, y, None, batch_size)
        worst = clean.clone()
        res = {"clean_acc": clean.float().mean().item(), "robust_acc": {}, "n": len(y), "eps": eps,
               "norm": norm, "seed": seed, "time_s": {}, "autoattack_log": {}}
        for name in attacks:
            t0 = time.perf_counter()
            ok, aa_log = run_attack(model, x, y, name, eps=eps, norm=norm, seed=seed, batch_size=batch_size)
            worst &= ok
            res["robust_acc"][name] = ok.float().mean().item()
            res["time_s"][name] = time.perf_counter() - t0
            if aa_log:
                res["autoattack_log"][name] = aa_log
            if log:
                log(f"{name}: {100 * res['robust_acc'][name]:.2f}% ({res['time_s'][name]:.1f}s)")
        res["worst_case_acc"] = worst.float().mean().item()
        return res
    finally:
        model.train(was_training)

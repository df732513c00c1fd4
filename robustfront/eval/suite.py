"""Evaluation by attack name: clean accuracy, robust accuracy per attack, worst case, Mean and NRR.

Attack names (budgets follow ε and the norm given to `evaluate`):

    fgsm              one L∞ step of size ε (no random start)
    pgdK, pgdKxR      PGD-K on cross-entropy, α = ε/4, random start, R restarts (pgd20x5)
    mifgsm            MI-FGSM, 10 steps, α = ε/10, momentum μ = 1.0 (L∞)
    cw, cw0           CW∞: PGD-30 on the CW margin loss min(margin, κ), κ = 50 (cw) or 0 (cw0), α = ε/4,
                      random start
    spsa              SPSA, 100 Adam iterations, 128 samples, lr 0.01, δ = 0.01 (gradient-free)
    apgd-ce, apgd-dlr, apgd-t, fab, fab-t, square
                      single attacks of the official AutoAttack code (standard-version budgets)
    autoattack, autoattack-plus
                      the official AutoAttack cascade, version "standard" or "plus"

Own attacks work in any input box (`bounds`, None = unbounded); the official code clamps to [0,1],
so its names need bounds=(0, 1).
"""
from __future__ import annotations

import re
import time
from collections.abc import Sequence

import torch

from ..attacks import FGSM, PGD
from ..models.modes import eval_mode
from .autoattack import OFFICIAL, autoattack
from .metrics import correct_mask, mean_nrr
from .mifgsm import MIFGSM
from .spsa import SPSA

NORMS = ("Linf", "L2", "L1")
FIXED_NAMES = ("fgsm", "mifgsm", "cw", "cw0", "spsa", "autoattack", "autoattack-plus", *OFFICIAL)
AA_NAMES = ("autoattack", "autoattack-plus")
_PGD = re.compile(r"pgd([1-9][0-9]*)(?:x([1-9][0-9]*))?")
CW_STEPS, CW_KAPPA = 30, {"cw": 50.0, "cw0": 0.0}
UNIT_BOX = (0.0, 1.0)
SPSA_SETTINGS = {"iterations": 100, "samples": 128, "lr": 0.01, "delta": 0.01}


def attack_names_help() -> str:
    return "fgsm, pgdK or pgdKxR (e.g. pgd10, pgd20, pgd100, pgd20x5), " + ", ".join(FIXED_NAMES[1:])


def check_attack_name(name: str) -> None:
    if name in FIXED_NAMES or _PGD.fullmatch(name):
        return
    raise ValueError(f"unknown attack '{name}'; allowed: {attack_names_help()}")


def check_bounds(name: str, bounds) -> None:
    """The official AutoAttack code clamps to [0,1]: its names need bounds=(0, 1)."""
    if (name in OFFICIAL or name in AA_NAMES) and (bounds is None or tuple(map(float, bounds)) != UNIT_BOX):
        raise ValueError(f"attack '{name}' is the official AutoAttack code, which clamps to [0,1]; bounds={bounds!r} "
                         f"is not allowed with it (allowed: (0.0, 1.0))")


def build_attack(name: str, *, eps: float, norm: str, bounds=UNIT_BOX):
    """robustfront's own attack for `name` in the input box `bounds` (None for the official AutoAttack names)."""
    check_attack_name(name)
    m = _PGD.fullmatch(name)
    if m:
        return PGD(eps, alpha=eps / 4, steps=int(m.group(1)), restarts=int(m.group(2) or 1), norm=norm, bounds=bounds)
    if name in ("fgsm", "mifgsm") and norm != "Linf":
        raise ValueError(f"{name} is an L-infinity attack; norm={norm!r} is not allowed with it (use pgdK)")
    if name == "fgsm":
        return FGSM(eps, bounds=bounds)
    if name == "mifgsm":
        return MIFGSM(eps, steps=10, decay=1.0, bounds=bounds)
    if name in CW_KAPPA:
        return PGD(eps, alpha=eps / 4, steps=CW_STEPS, norm=norm, loss="cw", kappa=CW_KAPPA[name], bounds=bounds)
    if name == "spsa":
        return SPSA(eps, norm=norm, bounds=bounds, **SPSA_SETTINGS)
    check_bounds(name, bounds)
    return None


def run_attack(model, x, y, name: str, *, eps: float, norm: str, seed: int, batch_size: int, bounds=UNIT_BOX):
    """Per-sample correctness under attack `name` and AutoAttack's info (see `autoattack`; None for own attacks)."""
    torch.manual_seed(seed)
    atk = build_attack(name, eps=eps, norm=norm, bounds=bounds)
    if atk is not None:
        return correct_mask(model, x, y, atk, batch_size), None
    if eps == 0:  # the official code divides by ε; at ε = 0 the attack is the identity
        return correct_mask(model, x, y, None, batch_size), None
    if name in AA_NAMES:
        return autoattack(model, x, y, eps=eps, norm=norm, version="plus" if name.endswith("plus") else "standard",
                          seed=seed, batch_size=batch_size)
    return autoattack(model, x, y, eps=eps, norm=norm, attacks=[name], seed=seed, batch_size=batch_size)


def evaluate(model, x, y, attacks=("pgd20",), *, eps: float | Sequence[float] = 8 / 255, norm: str = "Linf",
             seed: int = 0, batch_size: int = 500, bounds=UNIT_BOX, log=None) -> dict:
    """Clean accuracy and robust accuracy per attack for any model mapping inputs in `bounds` to logits.

    bounds: the input box, (0, 1) by default; None for unbounded inputs (e.g. synthetic Gaussian data),
    where only robustfront's own attacks are allowed (ValueError for the official names).
    Runs in fp32 with every module in eval mode (each module's own flag is restored afterwards). Returns
    {clean_acc, robust_acc: {name: acc}, worst_case_acc (per-sample worst case over the attacks),
    mean, nrr, ra_source, n, eps, norm, seed, bounds, time_s: {name: s}, autoattack_log: {name: {attack: acc}},
    autoattack_warnings: [the official code's own warnings, "name: message"],
    autoattack_skipped: {name: {attack: why}} (cascade attacks that cannot run on the model's classes)}.
    Mean = (SA + RA)/2 and NRR = 2·SA·RA/(SA + RA) use RA = AutoAttack's accuracy when an AutoAttack
    cascade is in `attacks`, else the worst case; `ra_source` names which.

    A list of ε (a sweep) returns {"eps": [...], "sweep": [one such dict per ε], n, norm, seed}.
    """
    if norm not in NORMS:
        raise ValueError(f"norm={norm!r} is not known; allowed: {', '.join(NORMS)}")
    for name in attacks:
        check_attack_name(name)
        check_bounds(name, bounds)
    if isinstance(eps, Sequence):
        sweep = [evaluate(model, x, y, attacks, eps=e, norm=norm, seed=seed, batch_size=batch_size, bounds=bounds,
                          log=log) for e in eps]
        return {"eps": list(eps), "sweep": sweep, "n": len(y), "norm": norm, "seed": seed}
    if eps < 0:
        raise ValueError(f"eps={eps} is negative; allowed: eps >= 0")
    with eval_mode(model):
        x, y = x.float(), y.long()
        clean = correct_mask(model, x, y, None, batch_size)
        worst = clean.clone()
        res = {"clean_acc": clean.float().mean().item(), "robust_acc": {}, "n": len(y), "eps": eps, "norm": norm,
               "seed": seed, "bounds": None if bounds is None else list(map(float, bounds)), "time_s": {},
               "autoattack_log": {}, "autoattack_warnings": [], "autoattack_skipped": {}}
        if log:
            log(f"eps={eps:.5g} clean: {100 * res['clean_acc']:.2f}%")
        for name in attacks:
            t0 = time.perf_counter()
            ok, aa = run_attack(model, x, y, name, eps=eps, norm=norm, seed=seed, batch_size=batch_size,
                                bounds=bounds)
            worst &= ok
            res["robust_acc"][name] = ok.float().mean().item()
            res["time_s"][name] = time.perf_counter() - t0
            if aa is not None:
                if aa["after"]:
                    res["autoattack_log"][name] = aa["after"]
                res["autoattack_warnings"] += [f"{name}: {w}" for w in aa["warnings"]]
                if aa["skipped"]:
                    res["autoattack_skipped"][name] = aa["skipped"]
            if log:
                log(f"eps={eps:.5g} {name}: {100 * res['robust_acc'][name]:.2f}% ({res['time_s'][name]:.1f}s)")
        res["worst_case_acc"] = worst.float().mean().item()
        cascades = [a for a in AA_NAMES if a in res["robust_acc"]]
        res["ra_source"] = cascades[-1] if cascades else "worst_case"
        ra = res["robust_acc"][cascades[-1]] if cascades else res["worst_case_acc"]
        res["mean"], res["nrr"] = mean_nrr(res["clean_acc"], ra)
        return res

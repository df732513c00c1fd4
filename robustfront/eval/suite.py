"""Evaluation by attack spec: clean accuracy, robust accuracy per attack, worst case, Mean and NRR.

Attack names are the one vocabulary of `robustfront.attacks` (pgdK, pgdKxR, fgsm, mifgsm, cw, cw0,
spsa, apgd_ce, apgd_dlr, apgd_t, fab, fab_t, square, autoattack, autoattack_plus; the official
hyphenated spellings are accepted and reported in the underscore spelling). Budgets follow ε and the
norm given to `evaluate`; α and steps are each attack's own (PGD α = ε/4; CW 30 steps; APGD 100
iterations, the official runner's budgets for the AutoAttack names).

Own attacks work in any input box (`bounds`, None = unbounded); the official code clamps to [0,1],
so its names need bounds=(0, 1).
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import nullcontext

import torch

from ..attacks import AUTOATTACK_NAMES, ThreatModel, canonical, create_attack, is_official, names_help
from ..device import exact_fp32, precision_flags
from ..models.modes import eval_mode
from ..validation import check_choice, check_int, check_number
from .metrics import correct_mask, mean_nrr
from .progress import Progress

NORMS = ("Linf", "L2", "L1")
UNIT_BOX = (0.0, 1.0)


def check_attacks(attacks, bounds=UNIT_BOX) -> list[str]:
    """The canonical spelling of each attack; one-line errors for unknown names, duplicates, and
    official names on unbounded inputs."""
    if isinstance(attacks, str):
        raise ValueError(f"attacks={attacks!r} must be a list of attack names; allowed: {names_help()}")
    names = [canonical(a) for a in attacks]
    dup = sorted({a for a in names if names.count(a) > 1})
    if dup:
        raise ValueError(f"attacks={list(attacks)!r} names {', '.join(dup)} twice; allowed: each attack once")
    for a in names:
        if is_official(a) and (bounds is None or tuple(map(float, bounds)) != UNIT_BOX):
            raise ValueError(f"attack '{a}' is the official AutoAttack code, which clamps to [0,1]; bounds={bounds!r} "
                             f"is not allowed with it (allowed: (0.0, 1.0))")
    return names


def _settings(atk) -> dict:
    """The hyper-parameters an attack ran with (its repr's fields), for the result's provenance."""
    keep = ("norm", "eps", "alpha", "steps", "restarts", "random_start", "loss", "kappa", "iterations", "samples",
            "decay", "version", "attacks", "n_target_classes")
    return {k: v for k, v in vars(atk).items() if k in keep}


def evaluate(model, x, y, attacks=("pgd20",), *, eps: float | Sequence[float] = 8 / 255, norm: str = "Linf",
             seed: int = 0, batch_size: int = 500, bounds=UNIT_BOX, log=None, data: str | None = None,
             split: str | None = None, exact: bool = True) -> dict:
    """Clean accuracy and robust accuracy per attack for any model mapping inputs in `bounds` to logits.

    bounds: the input box, (0, 1) by default; None for unbounded inputs (e.g. synthetic Gaussian data),
    where only robustfront's own attacks are allowed (ValueError for the official names).
    Runs in fp32 (exact=True: TF32 off on GPUs) with every module in eval mode (each module's own flag
    is restored afterwards). Returns {clean_acc, robust_acc: {name: acc}, worst_case_acc (per-sample
    worst case over the attacks), mean, nrr, ra_source, n, eps, norm, seed, bounds, time_s: {name: s},
    autoattack_log: {name: {attack: acc}}, autoattack_warnings: ["name: message"], autoattack_skipped:
    {name: {attack: why}}, attack_settings: {name: {...}}, and the provenance data, split, model,
    batch_size, precision}. Mean = (SA + RA)/2 and NRR = 2·SA·RA/(SA + RA) use RA = AutoAttack's
    accuracy when an AutoAttack cascade is in `attacks`, else the worst case; `ra_source` names which.

    A list of ε (a sweep) returns {"eps": [...], "sweep": [one such dict per ε], n, norm, seed, ...}.
    `log(line)` receives progress lines (per ε and attack, with timings).
    """
    check_choice("norm", norm, NORMS)
    check_int("batch_size", batch_size, 1)
    names = check_attacks(attacks, bounds)
    meta = {"data": data, "split": split, "model": getattr(model, "rf_config", {}).get("name"),
            "batch_size": batch_size, "precision": {"exact_fp32": exact, **precision_flags()}}
    if isinstance(eps, Sequence) and not isinstance(eps, str):
        values = [check_number("eps", e, 0.0) for e in eps]
        if len(set(values)) != len(values):
            raise ValueError(f"eps={list(eps)!r} repeats a value; allowed: distinct budgets")
        sweep = [evaluate(model, x, y, names, eps=e, norm=norm, seed=seed, batch_size=batch_size, bounds=bounds,
                          log=log, data=data, split=split, exact=exact) for e in values]
        return {"eps": values, "sweep": sweep, "n": len(y), "norm": norm, "seed": seed, **meta}
    eps = check_number("eps", eps, 0.0)
    threat = ThreatModel(norm=norm, eps=eps, bounds=bounds)
    built = {name: create_attack(name, threat) for name in names}
    with eval_mode(model), (exact_fp32() if exact else nullcontext()):
        x, y = x.float(), y.long()
        clean = correct_mask(model, x, y, None, batch_size)
        worst = clean.clone()
        res = {"clean_acc": clean.float().mean().item(), "robust_acc": {}, "n": len(y), "eps": eps, "norm": norm,
               "seed": seed, "bounds": None if bounds is None else list(map(float, bounds)), "time_s": {},
               "autoattack_log": {}, "autoattack_warnings": [], "autoattack_skipped": {},
               "attack_settings": {n: _settings(a) for n, a in built.items()}, **meta}
        if log:
            log(f"eps={eps:.5g} clean: {100 * res['clean_acc']:.2f}%")
        for name, atk in built.items():
            t0 = time.perf_counter()
            torch.manual_seed(seed)
            bar = Progress(name, len(y), label=f"  eps={eps:.4g}", every=5.0, write=log)
            ok, info = atk.robust_mask(model, x, y, batch_size=batch_size, seed=seed, progress=bar)
            worst &= ok
            res["robust_acc"][name] = ok.float().mean().item()
            res["time_s"][name] = time.perf_counter() - t0
            if info.get("after"):
                res["autoattack_log"][name] = info["after"]
            res["autoattack_warnings"] += [f"{name}: {w}" for w in info.get("warnings", [])]
            if info.get("skipped"):
                res["autoattack_skipped"][name] = info["skipped"]
            if log:
                log(f"eps={eps:.5g} {name}: {100 * res['robust_acc'][name]:.2f}% ({res['time_s'][name]:.1f}s)")
        res["worst_case_acc"] = worst.float().mean().item()
        cascades = [a for a in AUTOATTACK_NAMES if a in res["robust_acc"]]
        res["ra_source"] = cascades[-1] if cascades else "worst_case"
        ra = res["robust_acc"][cascades[-1]] if cascades else res["worst_case_acc"]
        res["mean"], res["nrr"] = mean_nrr(res["clean_acc"], ra)
        return res


__all__ = ["NORMS", "UNIT_BOX", "check_attacks", "evaluate"]

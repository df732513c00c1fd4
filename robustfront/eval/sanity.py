"""The six gradient-masking checks of docs/EVALUATION.md, each PASS or WARN with its numbers.

    sanity_check(model, x, y, eps=8/255, norm="Linf") -> {"passed": bool, "checks": [{name, passed, detail}]}

"Noise" is max(3 points, 3 images): the attacks run on the same images, so their accuracies
differ by far less than two independent samples would.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..attacks import PGD, create_attack
from .autoattack import autoattack
from .metrics import correct_mask
from .spsa import SPSA

# ε at which an attack can reach (nearly) any image in [0,1]^d, so accuracy must be ≈ 0
LARGE = {"Linf": lambda d: 0.5, "L2": lambda d: 0.5 * math.sqrt(d), "L1": lambda d: 0.5 * d}
NEAR_ZERO = 0.1          # "≈ 0" at the large ε (chance is 1/K; a PGD-20 that cannot go below 10 % is stuck)
AGREE = 0.05             # check 5: APGD-CE vs PGD-20, "within a few points"
ZERO_GRAD_FRAC = 0.01    # check 6: more than 1 % of images with an all-zero input gradient
SQUARE_QUERIES = 1000   # check 3: official Square, fewer queries than AutoAttack's 5000
SANITY_SPSA = {"iterations": 40, "samples": 64, "lr": 0.01, "delta": 0.01}


def input_gradient_stats(model, x, y, batch_size: int = 500) -> dict:
    """Per-sample CE input gradients: how many are all zero, how many hold NaN/Inf."""
    zero = bad = 0
    for i in range(0, len(y), batch_size):
        xb = x[i:i + batch_size].detach().float().requires_grad_(True)
        with torch.enable_grad():
            loss = F.cross_entropy(model(xb).float(), y[i:i + batch_size], reduction="sum")
            g, = torch.autograd.grad(loss, xb)
        g = g.flatten(1)
        finite = torch.isfinite(g).all(1)
        bad += int((~finite).sum())
        zero += int(((g == 0).all(1) & finite).sum())
    return {"zero": zero, "nonfinite": bad, "n": len(y)}


def _square(model, x, y, eps, norm, seed, batch_size, n_queries: int = SQUARE_QUERIES) -> float:
    """Accuracy under the official Square attack with a reduced query budget (the sanity check is a smoke test)."""
    from pyautoattack.square import SquareAttack
    if norm == "L1":  # the official Square has no L1 version
        return float("nan")
    sq = SquareAttack(model, norm=norm, n_queries=n_queries, eps=float(eps), seed=seed, device=x.device)
    torch.manual_seed(seed)
    with torch.no_grad():
        ok = [model(sq.perturb(x[i:i + batch_size], y[i:i + batch_size])).argmax(1) == y[i:i + batch_size]
              for i in range(0, len(y), batch_size)]
    return torch.cat(ok).float().mean().item()


def sanity_check(model, x, y, *, eps: float = 8 / 255, norm: str = "Linf", seed: int = 0, batch_size: int = 500,
                 log=None) -> dict:
    """Run the six checks on (x, y) at budget `eps`; returns {"passed", "checks", "acc"}.

    1 monotone in ε (PGD-20 at 0, ε/4, ε/2, ε, 2ε, large) and ≈ 0 at a large ε (L∞ 0.5, L2 0.5·√d,
      L1 0.5·d: the whole box is reachable);
    2 PGD-100 × 2 restarts not above PGD-20 + noise;
    3 gradient-free (official Square with 1000 queries, SPSA 40 iterations × 64 samples) not below the best gradient
      attack − noise;
    4 FGSM ≥ PGD-20 ≥ APGD-CE+APGD-T (official, per-sample worst case), each up to noise (FGSM: L∞ only);
    5 |APGD-CE − PGD-20| ≤ 5 points (or noise if larger);
    6 no NaN/Inf input gradient and ≤ 1 % of images with an all-zero CE input gradient.
    """
    was_training = model.training
    model.eval()
    x, y = x.float(), y.long()
    n = len(y)
    noise = max(0.03, 3 / n)
    acc: dict[str, float] = {}

    def run(name, atk):
        torch.manual_seed(seed)
        acc[name] = correct_mask(model, x, y, atk, batch_size).float().mean().item()
        if log:
            log(f"sanity {name}: {100 * acc[name]:.2f}%")
        return acc[name]

    checks = []

    def add(name, ok, detail):
        checks.append({"name": name, "passed": bool(ok), "detail": detail})
        if log:
            log(f"{'PASS' if ok else 'WARN'} {name}: {detail}")

    try:
        # 6 first: it is the cheapest and explains the rest when it fails
        g = input_gradient_stats(model, x, y, batch_size)
        ok6 = g["nonfinite"] == 0 and g["zero"] <= ZERO_GRAD_FRAC * n
        add("input_gradients", ok6, f"{g['zero']}/{n} images with all-zero input gradient, "
                                    f"{g['nonfinite']} with NaN/Inf (allowed: 0 NaN/Inf, <= 1% zero)")
        acc["grad_zero_frac"] = g["zero"] / n

        # 1 ε grid
        d = x[0].numel()
        grid = [0.0, eps / 4, eps / 2, eps, 2 * eps, max(LARGE[norm](d), 2 * eps)]
        accs = [run("clean", None)] + [run(f"pgd20@{e:.4g}", PGD(e, alpha=e / 4, steps=20, norm=norm))
                                        for e in grid[1:]]
        rises = [(grid[i], grid[i + 1]) for i in range(len(grid) - 1) if accs[i + 1] > accs[i] + noise]
        ok1 = not rises and accs[-1] <= NEAR_ZERO
        add("monotone_in_eps", ok1, "PGD-20 acc over eps " + ", ".join(f"{e:.4g}:{100 * a:.1f}%" for e, a in
                                                                      zip(grid, accs))
            + (f"; rises at {rises}" if rises else "") + f"; need <= {100 * NEAR_ZERO:.0f}% at eps={grid[-1]:.4g}")

        # 2 more steps and restarts
        pgd20 = accs[3]
        acc["pgd20"] = pgd20
        pgd100 = run("pgd100x2", PGD(eps, alpha=eps / 4, steps=100, restarts=2, norm=norm))
        add("more_steps_not_weaker", pgd100 <= pgd20 + noise,
            f"PGD-100x2 {100 * pgd100:.1f}% vs PGD-20 {100 * pgd20:.1f}% (noise {100 * noise:.0f} pts)")

        # official APGD-CE and APGD-T (needed by 3, 4, 5)
        torch.manual_seed(seed)
        if eps > 0:
            ok_aa, log_aa = autoattack(model, x, y, eps=eps, norm=norm, attacks=["apgd-ce", "apgd-t"], seed=seed,
                                       batch_size=batch_size)
            acc["apgd-ce"] = log_aa.get("apgd-ce", ok_aa.float().mean().item())
            acc["apgd-ce+apgd-t"] = ok_aa.float().mean().item()
        else:
            acc["apgd-ce"] = acc["apgd-ce+apgd-t"] = accs[0]

        # 3 gradient-free
        spsa = run("spsa", SPSA(eps, norm=norm, **SANITY_SPSA)) if eps > 0 else accs[0]
        if eps > 0:
            acc["square"] = _square(model, x, y, eps, norm, seed, batch_size)
        else:
            acc["square"] = accs[0]
        grad_best = min(pgd20, pgd100, acc["apgd-ce+apgd-t"])
        free = min(v for v in (spsa, acc["square"]) if not math.isnan(v))
        add("gradient_free_not_stronger", free >= grad_best - noise,
            f"Square {100 * acc['square']:.1f}%, SPSA {100 * spsa:.1f}% vs best gradient attack "
            f"{100 * grad_best:.1f}%")

        # 4 FGSM >= PGD >= AutoAttack
        aa = acc["apgd-ce+apgd-t"]
        if norm == "Linf":
            fgsm = run("fgsm", create_attack("fgsm", eps=eps))
            ok4 = fgsm >= pgd20 - noise and pgd20 >= aa - noise
            detail = f"FGSM {100 * fgsm:.1f}% >= PGD-20 {100 * pgd20:.1f}% >= APGD-CE+T {100 * aa:.1f}%"
        else:
            ok4 = pgd20 >= aa - noise
            detail = f"PGD-20 {100 * pgd20:.1f}% >= APGD-CE+T {100 * aa:.1f}% (FGSM is L-inf only)"
        add("fgsm_pgd_autoattack_order", ok4, detail)

        # 5 APGD-CE vs PGD
        tol5 = max(AGREE, noise)
        gap = acc["apgd-ce"] - pgd20
        add("apgd_agrees_with_pgd", abs(gap) <= tol5,
            f"APGD-CE {100 * acc['apgd-ce']:.1f}% vs PGD-20 {100 * pgd20:.1f}% (allowed gap {100 * tol5:.0f} pts)")
    finally:
        model.train(was_training)
    order = ["monotone_in_eps", "more_steps_not_weaker", "gradient_free_not_stronger", "fgsm_pgd_autoattack_order",
             "apgd_agrees_with_pgd", "input_gradients"]
    checks.sort(key=lambda c: order.index(c["name"]))
    return {"passed": all(c["passed"] for c in checks), "checks": checks, "acc": acc, "eps": eps, "norm": norm,
            "n": n, "seed": seed}


def format_sanity(s: dict) -> list[str]:
    return [f"{'PASS' if c['passed'] else 'WARN'} {i}. {c['name']}: {c['detail']}"
            for i, c in enumerate(s["checks"], 1)]

"""The six gradient-masking checks of docs/EVALUATION.md, each PASS or WARN with its numbers.

    sanity_check(model, x, y, eps=8/255, norm="Linf") -> {"passed": bool, "checks": [{name, passed, detail}]}

"Noise" is max(3 points, 3 images): the attacks run on the same images, so their accuracies
differ by far less than two independent samples would.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..attacks import FGSM, PGD
from ..models.modes import eval_mode
from .autoattack import autoattack, too_few_classes
from .metrics import correct_mask
from .spsa import SPSA
from .suite import UNIT_BOX

# ε at which an attack can reach (nearly) any image in [0,1]^d, so accuracy must be ≈ 0
LARGE = {"Linf": lambda d: 0.5, "L2": lambda d: 0.5 * math.sqrt(d), "L1": lambda d: 0.5 * d}
NEAR_ZERO = 0.1          # "≈ 0" at the large ε (chance is 1/K; a PGD-20 that cannot go below 10 % is stuck)
AGREE = 0.05             # check 5: APGD-CE vs PGD-20, "within a few points"
PGD_APGD_GAP = 0.08      # check 5: PGD-20 above APGD-CE+APGD-T by more flags masking (the CA-AT release: 11 points)
ZERO_GRAD_FRAC = 0.01    # check 6: more than 1 % of images with an all-zero input gradient
SQUARE_QUERIES = 1000    # check 3: official Square, fewer queries than AutoAttack's 5000
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


def monotone_violations(grid, accs, noise: float) -> list[float]:
    """The ε of the grid where accuracy exceeds its minimum at smaller ε by more than noise.

    Against the running minimum, not the neighbour: a steady rise in steps below noise is caught too.
    """
    return [grid[j] for j in range(1, len(accs)) if accs[j] > min(accs[:j]) + noise]


def _square(model, x, y, eps, norm, seed, batch_size, n_queries: int = SQUARE_QUERIES) -> float:
    """Accuracy under the official Square attack (L∞, L2 or L1) with a reduced query budget (a smoke test)."""
    from pyautoattack.square import SquareAttack
    sq = SquareAttack(model, norm=norm, n_queries=n_queries, eps=float(eps), seed=seed, device=x.device)
    torch.manual_seed(seed)
    with torch.no_grad():
        ok = [model(sq.perturb(x[i:i + batch_size], y[i:i + batch_size])).argmax(1) == y[i:i + batch_size]
              for i in range(0, len(y), batch_size)]
    return torch.cat(ok).float().mean().item()


def sanity_check(model, x, y, *, eps: float = 8 / 255, norm: str = "Linf", seed: int = 0, batch_size: int = 500,
                 bounds=UNIT_BOX, log=None) -> dict:
    """Run the six checks on (x, y) at budget `eps`; returns {"passed", "checks", "acc", "autoattack_warnings", ...}.

    1 PGD-20 accuracy over ε (0, ε/4, ε/2, ε, 2ε, large) never above its minimum at a smaller ε + noise,
      and ≈ 0 at a large ε (L∞ 0.5, L2 0.5·√d, L1 0.5·d: the whole box is reachable);
    2 PGD-100 × 2 restarts not above PGD-20 + noise;
    3 gradient-free (official Square with 1000 queries, SPSA 40 iterations × 64 samples) not below PGD-20 − noise
      (hence not below the best gradient attack − noise either: a model whose CE gradients are masked fails);
    4 FGSM ≥ PGD-20 ≥ APGD-CE+APGD-T (official, per-sample worst case), each up to noise (FGSM: L∞ only);
    5 |APGD-CE − PGD-20| ≤ 5 points (or noise if larger) and PGD-20 − APGD-CE+APGD-T ≤ 8 points (or noise);
    6 no NaN/Inf input gradient, ≤ 1 % of images with an all-zero CE input gradient, and no zero-gradient
      warning from AutoAttack's own checks (all its warnings are counted and returned).

    APGD-T needs >= 4 classes: with fewer it is left out (recorded under "autoattack_skipped").
    bounds: only (0, 1) is allowed (ValueError otherwise): the official attacks clamp to [0,1] and
    check 1's large ε assumes that box.
    """
    if bounds is None or tuple(map(float, bounds)) != UNIT_BOX:
        raise ValueError(f"bounds={bounds!r} is not allowed in sanity_check; allowed: (0.0, 1.0) (the official "
                         f"AutoAttack code clamps to [0,1]); for other inputs use evaluate() with own attacks")
    x, y = x.float(), y.long()
    with eval_mode(model):
        return _checks(model, x, y, eps, norm, seed, batch_size, log)


def _checks(model, x, y, eps, norm, seed, batch_size, log) -> dict:
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

    # input gradients first: the cheapest numbers, and they explain the rest when bad (check 6 is added
    # once AutoAttack's own warnings are in)
    g = input_gradient_stats(model, x, y, batch_size)
    acc["grad_zero_frac"] = g["zero"] / n

    # 1 ε grid
    d = x[0].numel()
    grid = [0.0, eps / 4, eps / 2, eps, 2 * eps, max(LARGE[norm](d), 2 * eps)]
    accs = [run("clean", None)] + [run(f"pgd20@{e:.4g}", PGD(e, alpha=e / 4, steps=20, norm=norm, bounds=UNIT_BOX))
                                    for e in grid[1:]]
    rises = monotone_violations(grid, accs, noise)
    ok1 = not rises and accs[-1] <= NEAR_ZERO
    add("monotone_in_eps", ok1, "PGD-20 acc over eps " + ", ".join(f"{e:.4g}:{100 * a:.1f}%" for e, a in
                                                                  zip(grid, accs))
        + (f"; above an earlier minimum + noise at eps {', '.join(f'{e:.4g}' for e in rises)}" if rises else "")
        + f"; need <= {100 * NEAR_ZERO:.0f}% at eps={grid[-1]:.4g}")

    # 2 more steps and restarts
    pgd20 = accs[3]
    acc["pgd20"] = pgd20
    pgd100 = run("pgd100x2", PGD(eps, alpha=eps / 4, steps=100, restarts=2, norm=norm, bounds=UNIT_BOX))
    add("more_steps_not_weaker", pgd100 <= pgd20 + noise,
        f"PGD-100x2 {100 * pgd100:.1f}% vs PGD-20 {100 * pgd20:.1f}% (noise {100 * noise:.0f} pts)")

    # official APGD-CE and APGD-T (needed by 3, 4, 5, 6)
    with torch.no_grad():
        n_classes = model(x[:1]).shape[1]
    skipped = too_few_classes(["apgd-t"], n_classes)
    official = [a for a in ("apgd-ce", "apgd-t") if a not in skipped]
    aa_label = "+".join(a.upper() for a in official)
    aa_warnings: list[str] = []
    torch.manual_seed(seed)
    if eps > 0:
        ok_aa, info = autoattack(model, x, y, eps=eps, norm=norm, attacks=official, seed=seed, batch_size=batch_size)
        acc["apgd-ce"] = info["after"].get("apgd-ce", ok_aa.float().mean().item())
        acc["apgd-ce+apgd-t"] = ok_aa.float().mean().item()
        aa_warnings = info["warnings"]
    else:
        acc["apgd-ce"] = acc["apgd-ce+apgd-t"] = accs[0]
    aa = acc["apgd-ce+apgd-t"]

    # 3 gradient-free
    spsa = run("spsa", SPSA(eps, norm=norm, bounds=UNIT_BOX, **SANITY_SPSA)) if eps > 0 else accs[0]
    acc["square"] = _square(model, x, y, eps, norm, seed, batch_size) if eps > 0 else accs[0]
    grad_best = min(pgd20, pgd100, aa)
    free = min(spsa, acc["square"])
    # against PGD-20, not only the best gradient attack: with masked CE gradients APGD-T (scale-free
    # DLR loss) is as strong as the gradient-free attacks and would hide the gap (grad_best <= pgd20)
    add("gradient_free_not_stronger", free >= pgd20 - noise,
        f"Square {100 * acc['square']:.1f}%, SPSA {100 * spsa:.1f}% vs PGD-20 {100 * pgd20:.1f}% and best "
        f"gradient attack {100 * grad_best:.1f}% (noise {100 * noise:.0f} pts)")

    # 4 FGSM >= PGD >= AutoAttack
    if norm == "Linf":
        fgsm = run("fgsm", FGSM(eps, bounds=UNIT_BOX))
        ok4 = fgsm >= pgd20 - noise and pgd20 >= aa - noise
        detail = f"FGSM {100 * fgsm:.1f}% >= PGD-20 {100 * pgd20:.1f}% >= {aa_label} {100 * aa:.1f}%"
    else:
        ok4 = pgd20 >= aa - noise
        detail = f"PGD-20 {100 * pgd20:.1f}% >= {aa_label} {100 * aa:.1f}% (FGSM is L-inf only)"
    add("fgsm_pgd_autoattack_order", ok4, detail)

    # 5 APGD vs PGD
    tol5, tol_gap = max(AGREE, noise), max(PGD_APGD_GAP, noise)
    ok5 = abs(acc["apgd-ce"] - pgd20) <= tol5 and pgd20 - aa <= tol_gap
    add("apgd_agrees_with_pgd", ok5,
        f"APGD-CE {100 * acc['apgd-ce']:.1f}% vs PGD-20 {100 * pgd20:.1f}% (allowed gap {100 * tol5:.0f} pts); "
        f"PGD-20 - {aa_label} {100 * (pgd20 - aa):.1f} pts (allowed {100 * tol_gap:.0f})")

    # 6 input gradients, ours and AutoAttack's own check (APGD-T's zero-gradient warning)
    zero_warn = sum("zero gradient" in w for w in aa_warnings)
    ok6 = g["nonfinite"] == 0 and g["zero"] <= ZERO_GRAD_FRAC * n and zero_warn == 0
    add("input_gradients", ok6, f"{g['zero']}/{n} images with all-zero input gradient, {g['nonfinite']} with NaN/Inf "
                                f"(allowed: 0 NaN/Inf, <= 1% zero); AutoAttack's checks: {len(aa_warnings)} "
                                f"warning(s), {zero_warn} about zero gradients (allowed: 0)")

    order = ["monotone_in_eps", "more_steps_not_weaker", "gradient_free_not_stronger", "fgsm_pgd_autoattack_order",
             "apgd_agrees_with_pgd", "input_gradients"]
    checks.sort(key=lambda c: order.index(c["name"]))
    return {"passed": all(c["passed"] for c in checks), "checks": checks, "acc": acc, "eps": eps, "norm": norm,
            "n": n, "seed": seed, "autoattack_warnings": aa_warnings, "autoattack_skipped": skipped}


def format_sanity(s: dict) -> list[str]:
    return [f"{'PASS' if c['passed'] else 'WARN'} {i}. {c['name']}: {c['detail']}"
            for i, c in enumerate(s["checks"], 1)]

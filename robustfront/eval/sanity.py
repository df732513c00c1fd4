"""The six gradient-masking checks of docs/EVALUATION.md, each PASS or WARN with its numbers.

    sanity_check(model, x, y, eps=8/255, norm="Linf") -> {"passed": bool, "checks": [{name, passed, detail}]}

Each check is one function of a shared `_Measure`, which runs every attack once, on first use:

1 monotone_in_eps             PGD-20 accuracy over ε (0, ε/4, ε/2, ε, 2ε, large) never above its minimum at
                              a smaller ε + noise, and ≈ 0 at a large ε (the whole box is reachable);
2 more_steps_not_weaker       PGD-100 × 2 restarts not above PGD-20 + noise;
3 gradient_free_not_stronger  official Square (1000 queries) and SPSA (40 × 64) not below PGD-20 − noise;
4 fgsm_pgd_autoattack_order   FGSM ≥ PGD-20 ≥ APGD-CE+APGD-T (official, per-sample worst case), up to noise;
5 apgd_agrees_with_pgd        |APGD-CE − PGD-20| ≤ 5 points and PGD-20 − APGD-CE+APGD-T ≤ 8 points (or noise);
6 input_gradients             no NaN/Inf input gradient, ≤ 1 % all-zero CE input gradients, and no
                              zero-gradient warning from AutoAttack's own checks.

"Noise" is max(3 points, 3 images): the attacks run on the same images, so their accuracies differ by
far less than two independent samples would.
"""
from __future__ import annotations

import math
from functools import cached_property
from pathlib import Path

import torch
import torch.nn.functional as F

from ..attacks import ThreatModel, create_attack, run_official
from ..attacks import official
from ..attacks.official import check_unit_box, too_few_classes
from ..device import exact_fp32, precision_flags
from ..models.modes import eval_mode
from ..checkpoint import write_json_atomic
from .cascade_state import read_state_json
from .metrics import correct_mask
from .progress import Progress
from .suite import UNIT_BOX

# ε at which an attack can reach (nearly) any image in [0,1]^d, so accuracy must be ≈ 0
LARGE = {"Linf": lambda d: 0.5, "L2": lambda d: 0.5 * math.sqrt(d), "L1": lambda d: 0.5 * d}
NEAR_ZERO = 0.1          # "≈ 0" at the large ε (chance is 1/K; a PGD-20 that cannot go below 10 % is stuck)
AGREE = 0.05             # check 5: APGD-CE vs PGD-20, "within a few points"
PGD_APGD_GAP = 0.08      # check 5: PGD-20 above APGD-CE+APGD-T by more flags masking (the CA-AT release: 11 points)
ZERO_GRAD_FRAC = 0.01    # check 6: more than 1 % of images with an all-zero input gradient
SQUARE_QUERIES = 1000    # check 3: official Square, fewer queries than AutoAttack's 5000
SANITY_SPSA = {"iterations": 40, "samples": 64, "lr": 0.01, "delta": 0.01}
SANITY_FILE = "sanity.json"   # in the evaluation's state folder: the measurements done so far
CHECKS = ("monotone_in_eps", "more_steps_not_weaker", "gradient_free_not_stronger", "fgsm_pgd_autoattack_order",
          "apgd_agrees_with_pgd", "input_gradients")


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
    sq = official.square_object(model, norm=norm, n_queries=n_queries, eps=float(eps), seed=seed, device=x.device)
    torch.manual_seed(seed)
    with torch.no_grad():
        ok = [model(sq.perturb(x[i:i + batch_size], y[i:i + batch_size])).argmax(1) == y[i:i + batch_size]
              for i in range(0, len(y), batch_size)]
    return torch.cat(ok).float().mean().item()


class _Measure:
    """Every accuracy the checks compare, each computed once on first use (same images, same seed)."""

    def __init__(self, model, x, y, eps, norm, seed, batch_size, log, state=None):
        self.model, self.x, self.y, self.eps, self.norm = model, x, y, eps, norm
        self.seed, self.batch_size, self.log = seed, batch_size, log
        self.n = len(y)
        self.noise = max(0.03, 3 / self.n)
        self.acc: dict[str, float] = {}
        self.aa_warnings: list[str] = []
        self.grad: dict | None = None
        # each measurement is kept in the evaluation's state folder as it ends: a killed check resumes
        self.file = None if state is None else Path(state) / SANITY_FILE
        self.key = {"eps": float(eps), "norm": norm, "seed": int(seed), "n": self.n}
        old = (read_state_json(self.file, "sanity state", "robustfront eval --sanity")
               if self.file is not None and self.file.is_file() else None)
        if old and old.get("key") == self.key:
            self.acc, self.aa_warnings, self.grad = dict(old["acc"]), list(old["aa_warnings"]), old.get("gradients")
            if self.log and self.acc:
                self.log(f"sanity: {len(self.acc)} measurement(s) read back from {self.file}")

    def _save(self) -> None:
        if self.file is not None:
            write_json_atomic(self.file, {"key": self.key, "acc": self.acc, "aa_warnings": self.aa_warnings,
                                          "gradients": self.grad})

    def measure(self, name: str, fn) -> float:
        """acc[name] = fn() unless read back, with a start line, lines from inside its batches, a result line."""
        if name not in self.acc:
            bar = Progress(name, self.n, label="sanity", write=self.log or None)
            bar.begin()
            with bar.watch(self.model):
                self.acc[name] = float(fn())
            if self.log:
                self.log(f"sanity {name}: {100 * self.acc[name]:.2f}%")
            self._save()
        return self.acc[name]

    def run(self, name: str, spec: str | None, eps: float | None = None, **kw) -> float:
        def fn():
            atk = None if spec is None else create_attack(
                spec, ThreatModel(norm=self.norm, eps=self.eps if eps is None else eps), **kw)
            torch.manual_seed(self.seed)
            return correct_mask(self.model, self.x, self.y, atk, self.batch_size).float().mean().item()
        return self.measure(name, fn)

    @cached_property
    def grid(self) -> list[float]:
        return [0.0, self.eps / 4, self.eps / 2, self.eps, 2 * self.eps,
                max(LARGE[self.norm](self.x[0].numel()), 2 * self.eps)]

    @cached_property
    def grid_accs(self) -> list[float]:
        return [self.run("clean", None)] + [self.run(f"pgd20@{e:.4g}", "pgd20", e) for e in self.grid[1:]]

    @property
    def pgd20(self) -> float:
        self.acc["pgd20"] = self.grid_accs[3]
        return self.acc["pgd20"]

    @cached_property
    def skipped(self) -> dict:
        with torch.no_grad():
            return too_few_classes(["apgd_t"], self.model(self.x[:1]).shape[1])

    @cached_property
    def official(self) -> list[str]:
        return [a for a in ("apgd_ce", "apgd_t") if a not in self.skipped]

    @property
    def aa_label(self) -> str:
        return "+".join(a.upper().replace("_", "-") for a in self.official)

    @cached_property
    def aa(self) -> float:
        """APGD-CE then APGD-T (official runner, per-sample worst case); also records APGD-CE alone."""
        if self.eps == 0:
            self.acc["apgd_ce"] = self.acc["apgd_ce+apgd_t"] = self.grid_accs[0]

        def official():
            torch.manual_seed(self.seed)
            ok, info = run_official(self.model, self.x, self.y, eps=self.eps, norm=self.norm, attacks=self.official,
                                    seed=self.seed, batch_size=self.batch_size)
            self.acc["apgd_ce"] = info["after"].get("apgd_ce", ok.float().mean().item())
            self.aa_warnings = info["warnings"]
            return ok.float().mean().item()
        return self.measure("apgd_ce+apgd_t", official)

    @property
    def gradients(self) -> dict:
        if self.grad is None:
            self.grad = input_gradient_stats(self.model, self.x, self.y, self.batch_size)
            self.acc["grad_zero_frac"] = self.grad["zero"] / self.n
            self._save()
        return self.grad


def monotone_in_eps(m: _Measure) -> tuple[bool, str]:
    accs, grid = m.grid_accs, m.grid
    rises = monotone_violations(grid, accs, m.noise)
    detail = "PGD-20 acc over eps " + ", ".join(f"{e:.4g}:{100 * a:.1f}%" for e, a in zip(grid, accs))
    if rises:
        detail += f"; above an earlier minimum + noise at eps {', '.join(f'{e:.4g}' for e in rises)}"
    return not rises and accs[-1] <= NEAR_ZERO, detail + f"; need <= {100 * NEAR_ZERO:.0f}% at eps={grid[-1]:.4g}"


def more_steps_not_weaker(m: _Measure) -> tuple[bool, str]:
    pgd100 = m.run("pgd100x2", "pgd100x2")
    return pgd100 <= m.pgd20 + m.noise, (f"PGD-100x2 {100 * pgd100:.1f}% vs PGD-20 {100 * m.pgd20:.1f}% "
                                         f"(noise {100 * m.noise:.0f} pts)")


def gradient_free_not_stronger(m: _Measure) -> tuple[bool, str]:
    spsa = m.run("spsa", "spsa", **SANITY_SPSA) if m.eps > 0 else m.grid_accs[0]
    if "square" not in m.acc and m.eps == 0:
        m.acc["square"] = m.grid_accs[0]
    m.measure("square", lambda: _square(m.model, m.x, m.y, m.eps, m.norm, m.seed, m.batch_size))
    grad_best = min(m.pgd20, m.run("pgd100x2", "pgd100x2"), m.aa)
    free = min(spsa, m.acc["square"])
    # against PGD-20, not only the best gradient attack: with masked CE gradients APGD-T (scale-free
    # DLR loss) is as strong as the gradient-free attacks and would hide the gap (grad_best <= pgd20)
    return free >= m.pgd20 - m.noise, (f"Square {100 * m.acc['square']:.1f}%, SPSA {100 * spsa:.1f}% vs PGD-20 "
                                       f"{100 * m.pgd20:.1f}% and best gradient attack {100 * grad_best:.1f}% "
                                       f"(noise {100 * m.noise:.0f} pts)")


def fgsm_pgd_autoattack_order(m: _Measure) -> tuple[bool, str]:
    if m.norm != "Linf":
        return m.pgd20 >= m.aa - m.noise, (f"PGD-20 {100 * m.pgd20:.1f}% >= {m.aa_label} {100 * m.aa:.1f}% "
                                           f"(FGSM is L-inf only)")
    fgsm = m.run("fgsm", "fgsm")
    return (fgsm >= m.pgd20 - m.noise and m.pgd20 >= m.aa - m.noise,
            f"FGSM {100 * fgsm:.1f}% >= PGD-20 {100 * m.pgd20:.1f}% >= {m.aa_label} {100 * m.aa:.1f}%")


def apgd_agrees_with_pgd(m: _Measure) -> tuple[bool, str]:
    aa, ce = m.aa, m.acc["apgd_ce"]
    tol5, tol_gap = max(AGREE, m.noise), max(PGD_APGD_GAP, m.noise)
    return (abs(ce - m.pgd20) <= tol5 and m.pgd20 - aa <= tol_gap,
            f"APGD-CE {100 * ce:.1f}% vs PGD-20 {100 * m.pgd20:.1f}% (allowed gap {100 * tol5:.0f} pts); "
            f"PGD-20 - {m.aa_label} {100 * (m.pgd20 - aa):.1f} pts (allowed {100 * tol_gap:.0f})")


def input_gradients(m: _Measure) -> tuple[bool, str]:
    g = m.gradients
    m.aa  # AutoAttack's own checks run with the official attacks
    zero_warn = sum("zero gradient" in w for w in m.aa_warnings)
    ok = g["nonfinite"] == 0 and g["zero"] <= ZERO_GRAD_FRAC * m.n and zero_warn == 0
    return ok, (f"{g['zero']}/{m.n} images with all-zero input gradient, {g['nonfinite']} with NaN/Inf "
                f"(allowed: 0 NaN/Inf, <= 1% zero); AutoAttack's checks: {len(m.aa_warnings)} warning(s), "
                f"{zero_warn} about zero gradients (allowed: 0)")


def sanity_check(model, x, y, *, eps: float = 8 / 255, norm: str = "Linf", seed: int = 0, batch_size: int = 500,
                 bounds=UNIT_BOX, log=None, state=None) -> dict:
    """Run the six checks on (x, y) at budget `eps`; returns {"passed", "checks", "acc", "autoattack_warnings", ...}.

    APGD-T needs >= 4 classes: with fewer it is left out (recorded under "autoattack_skipped").
    bounds: only (0, 1) is allowed (ValueError otherwise): the official attacks clamp to [0,1] and
    check 1's large ε assumes that box. log: each check's start and result line, and each measurement's.
    state: a folder (the evaluation's) keeping each measurement as it ends, so that a re-run resumes.
    """
    check_unit_box(bounds, "sanity_check (for other inputs use evaluate() with own attacks)")
    m = _Measure(model, x.float(), y.long(), eps, norm, seed, batch_size, log, state)
    checks = []
    with eval_mode(model), exact_fp32():  # TF32 off, as in evaluate()
        precision = precision_flags()
        m.gradients  # the cheapest numbers first: they explain the rest when bad
        for i, fn in enumerate((monotone_in_eps, more_steps_not_weaker, gradient_free_not_stronger,
                                fgsm_pgd_autoattack_order, apgd_agrees_with_pgd, input_gradients), 1):
            if log:
                log(f"sanity check {i}/{len(CHECKS)} {fn.__name__}: starting")
            ok, detail = fn(m)
            checks.append({"name": fn.__name__, "passed": bool(ok), "detail": detail})
            if log:
                log(f"{'PASS' if ok else 'WARN'} {fn.__name__}: {detail}")
    return {"passed": all(c["passed"] for c in checks), "checks": checks, "acc": m.acc, "eps": eps, "norm": norm,
            "n": m.n, "seed": seed, "autoattack_warnings": m.aa_warnings, "autoattack_skipped": m.skipped,
            "precision": precision}


def format_sanity(s: dict) -> list[str]:
    return [f"{'PASS' if c['passed'] else 'WARN'} {i}. {c['name']}: {c['detail']}"
            for i, c in enumerate(s["checks"], 1)]

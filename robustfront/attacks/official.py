"""The one adapter for the official AutoAttack code (the `pyautoattack` package).

Everything robustfront asks of that package goes through here: the one table of its attacks keyed
by robustfront's names (`apgd_ce`, `fab_t`, ...) with the one map to the package's own spellings
(`apgd-ce`, `fab-t`; used only towards the package and in the cascade's state files, which keep
them), the one "[0,1] only" check, the one warning collector (the package's logger is replaced by a
`Collector`), and the one constructor of official attack objects (`build`). `autoattack.run_official`
(the official runner) and robustfront's cascade (eval/cascade.py, one attack and one batch at a
time instead of `run_standard_evaluation`) both build their attacks with it. Evaluation runs every
official name through the cascade: a version's cascade, or a cascade of one attack (`single`).

The attack objects come from a real `pyautoattack.AutoAttack(model, version=...)`, so budgets,
restarts, `n_target_classes`, EOT and seeds are the official ones (read off the object and recorded);
`perturb` sets the same per-attack switches the runner sets before each of its batches (loss, targeted,
FAB-T's single restart, the seed). Every `perturb` of the official attacks starts with
`torch.manual_seed(seed)`, so a batch's result depends only on the batch: this is what makes a resumed
or sharded cascade give the same numbers.

The runner's checks are the official functions (pyautoattack.checks): randomised model, probability
outputs, dynamic (gradient-computing) forward, too many target classes, zero input gradients (inside
APGD) and Square stronger than the white-box attacks (after the cascade). Their warnings are kept.
"""
from __future__ import annotations

import re
import sys

VERSIONS = ("standard", "plus", "rand")
NAME = {"standard": "autoattack", "plus": "autoattack-plus", "rand": "autoattack-rand"}  # the cascade's state files
# robustfront name -> the package's name
OFFICIAL = {"apgd_ce": "apgd-ce", "apgd_dlr": "apgd-dlr", "apgd_t": "apgd-t", "fab": "fab", "fab_t": "fab-t",
            "square": "square"}
OURS = {v: k for k, v in OFFICIAL.items()}
# DLR divides by z_(1) - z_(3), targeted DLR by z_(1) - (z_(3) + z_(4))/2; FAB-T needs one target class
MIN_CLASSES = {"apgd_ce": 2, "apgd_dlr": 3, "apgd_t": 4, "fab": 2, "fab_t": 2, "square": 2}
UNIT_BOX = (0.0, 1.0)
_AFTER = re.compile(r"robust accuracy after ([A-Z-]+): ([0-9.]+)%")
# flag -> a phrase of the official warning that raises it
FLAGS = {"randomized": "randomized defense", "probabilities": "probability distribution",
         "dynamic": "dynamic defense", "zero_gradients": "zero gradient",
         "square_stronger": "Square Attack has decreased", "target_classes": "target classes"}
BUDGET_KEYS = ("n_iter", "n_queries")


def ours(name: str) -> str:
    """robustfront's name of an official attack named either way ("apgd-t" -> "apgd_t")."""
    return OURS.get(name, name)


def unit_box(bounds) -> bool:
    """The official code clamps to [0,1]: is `bounds` that box?"""
    return bounds is not None and tuple(map(float, bounds)) == UNIT_BOX


def check_unit_box(bounds, what: str = "the official AutoAttack code") -> None:
    """The one "[0,1] only" check: one line naming the bounds and what refuses them."""
    if not unit_box(bounds):
        raise ValueError(f"bounds={bounds!r} is not supported by {what} (the official AutoAttack code clamps to "
                         f"[0,1]); allowed: (0.0, 1.0)")


def square_object(model, **kw):
    """An official Square attack object on `model` (a reduced-budget smoke test of its own)."""
    from pyautoattack.square import SquareAttack
    return SquareAttack(model, **kw)


def package_version() -> str:
    import pyautoattack
    return pyautoattack.__version__


def apgd_object(predict, *, targeted: bool, loss: str, **kw):
    """An official APGD attack object (APGDAttack, or APGDAttack_targeted for APGD-T) on `predict`."""
    from pyautoattack.autopgd_base import APGDAttack, APGDAttack_targeted
    return APGDAttack_targeted(predict, **kw) if targeted else APGDAttack(predict, loss=loss, **kw)


def too_few_classes(attacks, n_classes: int) -> dict[str, str]:
    """{attack: reason} for the official attacks (either spelling) that cannot run with n_classes outputs."""
    return {a: f"needs >= {MIN_CLASSES[ours(a)]} classes" for a in attacks if n_classes < MIN_CLASSES[ours(a)]}


def single(attacks, n_classes: int) -> list[str]:
    """The package's names of single official attacks asked for by robustfront's names (instead of a
    version's cascade); one that cannot run on n_classes outputs is refused in one line."""
    bad = [a for a in attacks if a not in OFFICIAL]
    if bad:
        raise ValueError(f"unknown AutoAttack attack(s) {bad}; allowed: {', '.join(OFFICIAL)}")
    for a, why in too_few_classes(attacks, n_classes).items():
        raise ValueError(f"AutoAttack attack {a!r} cannot run on a model with K={n_classes} classes; it {why}")
    return [OFFICIAL[a] for a in attacks]


# the reduced budget (aa_budget's key) each single official attack takes; APGD's iterations are its steps
APGD_ITERS = 100  # the standard version's APGD iterations
BUDGET_KEY = {"apgd_ce": "n_iter", "apgd_dlr": "n_iter", "apgd_t": "n_iter", "fab": "n_iter", "fab_t": "n_iter",
              "square": "n_queries"}


class Collector:
    """Stands in for the "auto-attack" logger: keeps the official warnings (one line each) and prints
    them, and the accuracy the official runner logs after each attack of its cascade (`after`,
    robustfront's names)."""

    def __init__(self, echo: bool = True):
        self.messages: list[str] = []
        self.after: dict[str, float] = {}
        self.echo = echo
        self._taken = 0

    def warning(self, msg, *args, **kw):
        msg = " ".join(str(msg).split())
        self.messages.append(msg)
        if self.echo:
            print(f"autoattack warning: {msg}", file=sys.stderr, flush=True)

    def debug(self, msg, *args, **kw):
        m = _AFTER.search(str(msg))
        if m:
            self.after[ours(m.group(1).lower())] = float(m.group(2)) / 100

    info = debug

    def take(self) -> list[str]:
        """The warnings since the last take()."""
        new, self._taken = self.messages[self._taken:], len(self.messages)
        return new


def set_iters(apgd, n_iter: int) -> None:
    # APGD derives its checkpoint schedule from n_iter at construction (p_1 = 0.22, step 0.03 of the
    # paper's schedule, minimum 0.06 of the iterations): keep them consistent with a new budget
    apgd.n_iter = apgd.n_iter_orig = n_iter
    apgd.n_iter_2 = max(int(0.22 * n_iter), 1)
    apgd.n_iter_min = max(int(0.06 * n_iter), 1)
    apgd.size_decr = max(int(0.03 * n_iter), 1)


def apply_budgets(aa, budgets: dict | None) -> None:
    """Reduced budgets for quick looks and tests: {"n_iter": APGD/FAB iterations, "n_queries": Square's
    queries}. Not AutoAttack any more: results carry official_budgets=False."""
    if not budgets:
        return
    from ..validation import check_int, invalid
    for k in budgets:
        if k not in BUDGET_KEYS:
            raise invalid("budget", k, ", ".join(BUDGET_KEYS), "unknown")
    if "n_iter" in budgets:
        n = check_int("n_iter", budgets["n_iter"], 1)
        set_iters(aa.apgd, n)
        set_iters(aa.apgd_targeted, n)
        aa.fab.n_iter = n
    if "n_queries" in budgets:
        aa.square.n_queries = check_int("n_queries", budgets["n_queries"], 1)


def build(model, *, eps: float, norm: str, version: str, seed: int, device, n_classes: int,
          budgets: dict | None = None, echo: bool = True):
    """(AutoAttack object, attacks to run, {skipped attack: reason}, Collector) for a K-class model; the
    attacks in the package's spellings (the cascade's state files keep them).

    With K < 10 the official default of 9 target classes would index past the logits: it becomes
    K - 1, and attacks that need more classes than K (APGD-T needs 4) are left out."""
    from pyautoattack import AutoAttack

    aa = AutoAttack(model, device=device, eps=float(eps), norm=norm, seed=seed, version=version)
    log = Collector(echo)
    aa.logger = aa.apgd.logger = aa.apgd_targeted.logger = log
    aa.verbose = False
    targets = min(9, n_classes - 1)
    aa.apgd_targeted.n_target_classes = min(aa.apgd_targeted.n_target_classes, targets)
    aa.fab.n_target_classes = min(aa.fab.n_target_classes, targets)
    skipped = too_few_classes(aa.attacks_to_run, n_classes)
    attacks = [a for a in aa.attacks_to_run if a not in skipped]
    apply_budgets(aa, budgets)
    return aa, attacks, skipped, log


def budgets_of(aa, attacks) -> dict:
    """The budgets each attack runs with, read off the official objects."""
    apgd, apgd_t, fab, sq = aa.apgd, aa.apgd_targeted, aa.fab, aa.square
    table = {
        "apgd-ce": {"n_iter": apgd.n_iter, "n_restarts": apgd.n_restarts, "eot_iter": apgd.eot_iter,
                    "rho": apgd.thr_decr, "largereps": apgd.use_largereps},
        "apgd-t": {"n_iter": apgd_t.n_iter, "n_restarts": apgd_t.n_restarts, "eot_iter": apgd_t.eot_iter,
                   "n_target_classes": apgd_t.n_target_classes, "largereps": apgd_t.use_largereps},
        "fab": {"n_iter": fab.n_iter, "n_restarts": fab.n_restarts},  # perturb restores it after FAB-T
        "fab-t": {"n_iter": fab.n_iter, "n_restarts": 1, "n_target_classes": fab.n_target_classes},
        "square": {"n_queries": sq.n_queries, "n_restarts": sq.n_restarts, "p_init": sq.p_init},
    }
    table["apgd-dlr"] = dict(table["apgd-ce"])
    return {a: table[a] for a in attacks}


def perturb(aa, attack: str, x, y):
    """One official attack on one batch, with the switches the official runner sets before it."""
    if attack in ("apgd-ce", "apgd-dlr"):
        aa.apgd.loss = "ce" if attack == "apgd-ce" else "dlr"
        aa.apgd.seed = aa.get_seed()
        return aa.apgd.perturb(x, y)
    if attack == "apgd-t":
        aa.apgd_targeted.seed = aa.get_seed()
        return aa.apgd_targeted.perturb(x, y)
    if attack in ("fab", "fab-t"):
        # FAB-T runs one restart, as the official runner sets; the untargeted FAB's own count is put
        # back after it, so aa.fab.n_restarts always holds the untargeted budget
        restarts = aa.fab.n_restarts
        aa.fab.targeted = attack == "fab-t"
        aa.fab.n_restarts = 1 if attack == "fab-t" else restarts
        aa.fab.seed = aa.get_seed()
        try:
            return aa.fab.perturb(x, y)
        finally:
            aa.fab.n_restarts = restarts
    if attack == "square":
        aa.square.seed = aa.get_seed()
        return aa.square.perturb(x, y)
    raise ValueError(f"attack={attack!r} is unknown; allowed: {', '.join(OURS)}")


def run_checks(aa, version: str, attacks, x, y) -> None:
    """The official runner's checks on one batch (x, y already on the attack device); warnings go to aa.logger."""
    from pyautoattack import checks
    if version != "rand":
        checks.check_randomized(aa.get_logits, x, y, bs=len(y), logger=aa.logger)
    n_cls = checks.check_range_output(aa.get_logits, x, logger=aa.logger)
    checks.check_dynamic(aa.model, x, False, logger=aa.logger)
    checks.check_n_classes(n_cls, attacks, aa.apgd_targeted.n_target_classes, aa.fab.n_target_classes,
                           logger=aa.logger)


def square_check(after: dict, clean_acc: float, echo: bool = False) -> list[str]:
    """The official "Square stronger than the white-box attacks" check on a cascade's accuracies."""
    from pyautoattack import checks
    log = Collector(echo)
    checks.check_square_sr({"clean": clean_acc, **after}, logger=log)
    return log.messages


def flags_from(warnings: list[str]) -> dict[str, bool]:
    return {flag: any(phrase in w for w in warnings) for flag, phrase in FLAGS.items()}


__all__ = ["APGD_ITERS", "BUDGET_KEY", "Collector", "FLAGS", "MIN_CLASSES", "NAME", "OFFICIAL", "OURS", "UNIT_BOX", "VERSIONS",
           "apply_budgets", "apgd_object", "budgets_of", "build", "check_unit_box", "flags_from", "ours",
           "package_version", "perturb", "run_checks", "set_iters", "single", "square_check", "square_object",
           "too_few_classes", "unit_box"]

"""One attack vocabulary for training and evaluation, and the factory that reads it.

    create_attack("pgd20", ThreatModel(eps=8/255))          # PGD-20, α = ε/4, random start
    create_attack("apgd_ce", threat)                          # APGD-CE with the threat's steps (or 100)

Spec grammar (one underscore spelling per name; hyphenated official names such as `apgd-ce`,
`fab-t`, `autoattack-plus` are accepted aliases):

    pgd, pgdK, pgdKxR   PGD on cross-entropy; K steps (default: the threat's steps, else 10), R restarts
    pgd_normal          PGD from x + 0.001·N(0,1) (MART's training attack)
    fgsm                one L∞ step of size ε
    mifgsm              MI-FGSM, μ = 1, α = ε/steps (default 10 steps)
    cw, cw0             CW∞: PGD on the CW margin loss min(margin, κ), κ = 50 / 0 (default 30 steps)
    trades_kl           the TRADES inner maximisation (KL(p(x)||p(x')))
    spsa                SPSA, gradient-free (default 100 iterations, 128 samples)
    apgd_ce, apgd_dlr, apgd_t
                        APGD (the official implementation) with the threat's steps (default 100, as
                        AutoAttack); evaluation runs them through the official runner
    fab, fab_t, square  single official AutoAttack attacks at the standard version's budgets
    autoattack, autoattack_plus, autoattack_rand
                        the official AutoAttack cascade, version "standard", "plus" or "rand" (APGD-CE
                        and APGD-DLR averaging 20 gradient samples: for randomised defences); evaluation
                        runs them through robustfront's self-driven cascade (eval/cascade.py)

Budgets come from the threat model: ε and norm always; α and steps where the spec gives none
(None in the threat model: each attack's own default). Extra keyword arguments go to the attack.
"""
from __future__ import annotations

import re

from .apgd import APGD
from .autoattack import AutoAttack
from .base import ATTACKS, Attack
from .fgsm import FGSM
from .mifgsm import MIFGSM
from .official import OFFICIAL
from .pgd import PGD
from .spsa import SPSA
from .threat import ThreatModel
from .trades_kl import TradesKL

_PGD = re.compile(r"pgd([1-9][0-9]*)(?:x([1-9][0-9]*))?")
CW_STEPS, CW_KAPPA = 30, {"cw": 50.0, "cw0": 0.0}
SPSA_SETTINGS = {"samples": 128, "lr": 0.01, "delta": 0.01}
AUTOATTACK_NAMES = ("autoattack", "autoattack_plus", "autoattack_rand")


def _steps(t: ThreatModel, default: int) -> int:
    return t.steps if t.steps is not None else default


@ATTACKS.register("pgd")
def _pgd(t: ThreatModel, steps: int | None = None, **kw) -> PGD:
    return PGD(t.eps, alpha=t.alpha, steps=steps or _steps(t, 10), norm=t.norm, bounds=t.bounds, **kw)


@ATTACKS.register("pgd_normal")
def _pgd_normal(t: ThreatModel, **kw) -> PGD:
    return _pgd(t, random_start="normal", **kw)


@ATTACKS.register("fgsm")
def _fgsm(t: ThreatModel, **kw) -> FGSM:
    return FGSM(t.eps, norm=t.norm, bounds=t.bounds, **kw)


@ATTACKS.register("mifgsm")
def _mifgsm(t: ThreatModel, **kw) -> MIFGSM:
    kw.setdefault("decay", 1.0)
    return MIFGSM(t.eps, alpha=t.alpha, steps=_steps(t, 10), norm=t.norm, bounds=t.bounds, **kw)


def _cw(kappa: float):
    def build(t: ThreatModel, **kw) -> PGD:
        return PGD(t.eps, alpha=t.alpha, steps=_steps(t, CW_STEPS), norm=t.norm, loss="cw", kappa=kappa,
                   bounds=t.bounds, **kw)
    return build


for _name, _kappa in CW_KAPPA.items():
    ATTACKS.register(_name)(_cw(_kappa))


@ATTACKS.register("trades_kl")
def _trades_kl(t: ThreatModel, **kw) -> TradesKL:
    return TradesKL(t.eps, alpha=t.alpha, steps=_steps(t, 10), norm=t.norm, bounds=t.bounds, **kw)


@ATTACKS.register("spsa")
def _spsa(t: ThreatModel, **kw) -> SPSA:
    kw = {**SPSA_SETTINGS, **kw}
    kw.setdefault("iterations", _steps(t, 100))
    return SPSA(t.eps, norm=t.norm, bounds=t.bounds, **kw)


def _apgd(loss: str, targeted: bool):
    def build(t: ThreatModel, **kw) -> APGD:
        return APGD(t.eps, steps=_steps(t, 100), norm=t.norm, loss=loss, targeted=targeted, bounds=t.bounds, **kw)
    return build


ATTACKS.register("apgd_ce")(_apgd("ce", False))
ATTACKS.register("apgd_dlr")(_apgd("dlr", False))
ATTACKS.register("apgd_t")(_apgd("dlr", True))


def _official(version: str, attacks: list[str] | None):
    def build(t: ThreatModel, **kw) -> AutoAttack:
        return AutoAttack(t.eps, norm=t.norm, version=version, attacks=attacks, bounds=t.bounds, **kw)
    return build


ATTACKS.register("autoattack")(_official("standard", None))
ATTACKS.register("autoattack_plus")(_official("plus", None))
ATTACKS.register("autoattack_rand")(_official("rand", None))
for _name in ("fab", "fab_t", "square"):
    ATTACKS.register(_name)(_official("standard", [_name]))


def names_help() -> str:
    return "pgd, pgdK or pgdKxR (e.g. pgd10, pgd20, pgd20x5), " + ", ".join(n for n in ATTACKS.names() if n != "pgd")


def parse_spec(spec: str) -> tuple[str, dict]:
    """(registered name, keyword arguments) of an attack spec; ValueError listing the vocabulary."""
    if not isinstance(spec, str):
        raise ValueError(f"attack={spec!r} is not an attack name; allowed: {names_help()}")
    s = spec.strip().replace("-", "_")
    m = _PGD.fullmatch(s)
    if m:
        return "pgd", {"steps": int(m.group(1)), "restarts": int(m.group(2) or 1)}
    if s not in ATTACKS:
        raise ValueError(f"unknown attack '{spec}'; allowed: {names_help()}")
    return s, {}


def canonical(spec: str) -> str:
    """The underscore spelling of a valid spec ("apgd-ce" -> "apgd_ce", "pgd20" stays)."""
    parse_spec(spec)
    return spec.strip().replace("-", "_")


def create_attack(spec: str, threat: ThreatModel | None = None, **overrides) -> Attack:
    """The attack named by `spec` (see the module docstring) for `threat` (default: ThreatModel(),
    L∞ 8/255 on [0,1] images); `overrides` go to the attack's constructor."""
    name, kw = parse_spec(spec)
    threat = ThreatModel() if threat is None else threat
    if not isinstance(threat, ThreatModel):
        raise TypeError(f"threat must be a ThreatModel, got {type(threat).__name__}")
    return ATTACKS.get(name)(threat, **{**kw, **{k: v for k, v in overrides.items() if v is not None}})


def is_official(spec: str) -> bool:
    """Does `spec` name the official AutoAttack code (which needs inputs in [0,1])?"""
    name, _ = parse_spec(spec)
    return name in OFFICIAL or name in AUTOATTACK_NAMES


__all__ = ["AUTOATTACK_NAMES", "canonical", "create_attack", "is_official", "names_help", "parse_spec"]

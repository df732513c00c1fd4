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
(None in the threat model: each attack's own default). Every name is a `Spec` dataclass registered at
the class: its fields are the name's options (keyword arguments of `create_attack`, `--opt attack.KEY`),
typed, with the comment after each as help (`robustfront train --list-opts`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..registry import hyperparameters
from ..validation import invalid
from .apgd import APGD
from .autoattack import AutoAttack
from .base import ATTACKS, Attack, BNMode
from .fgsm import FGSM
from .mifgsm import MIFGSM
from .official import OFFICIAL
from .pgd import PGD, Loss, Start
from .spsa import SPSA
from .threat import ThreatModel
from .trades_kl import TradesKL

_PGD = re.compile(r"pgd([1-9][0-9]*)(?:x([1-9][0-9]*))?")
AUTOATTACK_NAMES = ("autoattack", "autoattack_plus", "autoattack_rand")


def _steps(t: ThreatModel, default: int) -> int:
    return t.steps if t.steps is not None else default


def _iterative(t: ThreatModel, bn_mode: str, steps: int = 10) -> dict:
    """The arguments every iterative gradient attack takes from the threat model (and its BN mode)."""
    return dict(alpha=t.alpha, steps=_steps(t, steps), norm=t.norm, bn_mode=bn_mode, bounds=t.bounds)


@dataclass
class Spec:
    """A registered attack name: its options are the fields (type, default, and the comment after
    each as help; budgets come from the threat model, not from options), `build` makes the attack."""

    def build(self, t: ThreatModel) -> Attack:
        raise NotImplementedError


@ATTACKS.register("pgd")
@dataclass
class PGDSpec(Spec):
    steps: int | None = None       # ascent steps per restart (none: the threat's steps, else 10; pgdK sets K)
    restarts: int = 1              # independent runs; per sample the strongest is kept (pgdKxR sets R)
    random_start: Start = True     # True/uniform: random point in the ball; normal: x + 0.001·N(0,1); False: x
    clamp_start: bool = True       # project the random start into the ball and box before the first gradient
    loss: Loss = "ce"              # ce: cross-entropy; cw: the CW margin min(max_j≠y z_j - z_y, kappa)
    kappa: float = float("inf")    # confidence cap κ of the CW margin loss
    l1_top: float = 0.05           # fraction of coordinates an L1 step moves (SLIDE)
    bn_mode: BNMode = "eval"       # BatchNorm mode of the model during the attack (train: batch statistics)
    default_steps = 10             # steps when neither the spec nor the threat model gives them

    def build(self, t: ThreatModel) -> PGD:
        return PGD(t.eps, alpha=t.alpha, steps=self.steps or _steps(t, self.default_steps), norm=t.norm,
                   random_start=self.random_start, restarts=self.restarts, loss=self.loss, kappa=self.kappa,
                   l1_top=self.l1_top, clamp_start=self.clamp_start, bn_mode=self.bn_mode, bounds=t.bounds)


@ATTACKS.register("pgd_normal")
@dataclass
class PGDNormalSpec(PGDSpec):
    """PGD from x + 0.001·N(0,1) (MART's training attack)."""
    random_start: Start = field(default="normal", init=False)   # fixed: the TRADES/MART start


@ATTACKS.register("cw")
@dataclass
class CWSpec(PGDSpec):
    """CW∞: PGD on the CW margin loss capped at κ = 50 (default 30 steps)."""
    loss: Loss = field(default="cw", init=False)    # fixed: the margin loss
    kappa: float = field(default=50.0, init=False)  # fixed: the cap of this name
    default_steps = 30


@ATTACKS.register("cw0")
@dataclass
class CW0Spec(CWSpec):
    """CW∞ with κ = 0: the margin loss stops growing once a sample is fooled."""
    kappa: float = field(default=0.0, init=False)   # fixed: the cap of this name


@ATTACKS.register("fgsm")
@dataclass
class FGSMSpec(Spec):
    loss: Loss = "ce"          # ce: cross-entropy; cw: the CW margin
    bn_mode: BNMode = "eval"   # BatchNorm mode of the model during the attack

    def build(self, t: ThreatModel) -> FGSM:
        return FGSM(t.eps, loss=self.loss, norm=t.norm, bn_mode=self.bn_mode, bounds=t.bounds)


@ATTACKS.register("mifgsm")
@dataclass
class MIFGSMSpec(Spec):
    """Momentum iterative FGSM (Dong et al., 2018): sign steps along accumulated normalised gradients."""
    decay: float = 1.0         # momentum μ of the normalised gradients
    bn_mode: BNMode = "eval"   # BatchNorm mode of the model during the attack

    def build(self, t: ThreatModel) -> MIFGSM:
        return MIFGSM(t.eps, decay=self.decay, **_iterative(t, self.bn_mode))


@ATTACKS.register("trades_kl")
@dataclass
class TradesKLSpec(Spec):
    """TRADES' inner maximisation (Zhang et al., 2019): ascend KL(p(x) ‖ p(x')) from x + 0.001·N(0, 1)."""
    clamp_start: bool = True   # clip the start x + 0.001·N(0,1) to the box before the first gradient
    bn_mode: BNMode = "eval"   # BatchNorm mode of the model during the attack

    def build(self, t: ThreatModel) -> TradesKL:
        return TradesKL(t.eps, clamp_start=self.clamp_start, **_iterative(t, self.bn_mode))


@ATTACKS.register("spsa")
@dataclass
class SPSASpec(Spec):
    iterations: int | None = None  # Adam steps (none: the threat's steps, else 100)
    samples: int = 128             # function evaluations per step and image (even: antithetic pairs)
    lr: float = 0.01               # Adam learning rate
    delta: float = 0.01            # finite-difference step of the gradient estimate
    max_batch: int = 8192          # largest forward batch, images × samples

    def build(self, t: ThreatModel) -> SPSA:
        return SPSA(t.eps, norm=t.norm, iterations=self.iterations or _steps(t, 100), samples=self.samples,
                    lr=self.lr, delta=self.delta, max_batch=self.max_batch, bounds=t.bounds)


@ATTACKS.register("apgd_ce")
@dataclass
class APGDSpec(Spec):
    n_target_classes: int | None = None  # target classes of APGD-T (none: AutoAttack's 9, L1: 5)
    rho: float = 0.75                    # the official step-size-halving threshold
    bn_mode: BNMode = "eval"             # BatchNorm mode of the model during the attack
    loss, targeted = "ce", False         # fixed by the name

    def build(self, t: ThreatModel) -> APGD:
        return APGD(t.eps, steps=_steps(t, 100), norm=t.norm, loss=self.loss, targeted=self.targeted,
                    n_target_classes=self.n_target_classes, rho=self.rho, bn_mode=self.bn_mode, bounds=t.bounds)


@ATTACKS.register("apgd_dlr")
class APGDDLRSpec(APGDSpec):
    loss = "dlr"


@ATTACKS.register("apgd_t")
class APGDTSpec(APGDSpec):
    loss, targeted = "dlr", True


@ATTACKS.register("autoattack")
@dataclass
class AutoAttackSpec(Spec):
    seed: int = 0                # the official runner's seed
    batch_size: int = 250        # the official runner's batch size
    n_iter: int | None = None    # APGD iterations instead of the official 100 (quick looks and tests only)
    version, attacks = "standard", None   # fixed by the name: the official version, or single attacks

    def build(self, t: ThreatModel) -> AutoAttack:
        return AutoAttack(t.eps, norm=t.norm, version=self.version,
                          attacks=None if self.attacks is None else list(self.attacks), seed=self.seed,
                          batch_size=self.batch_size, n_iter=self.n_iter, bounds=t.bounds)


@ATTACKS.register("autoattack_plus")
class AutoAttackPlusSpec(AutoAttackSpec):
    version = "plus"


@ATTACKS.register("autoattack_rand")
class AutoAttackRandSpec(AutoAttackSpec):
    version = "rand"


@ATTACKS.register("fab")
class FABSpec(AutoAttackSpec):
    attacks = ("fab",)


@ATTACKS.register("fab_t")
class FABTSpec(AutoAttackSpec):
    attacks = ("fab_t",)


@ATTACKS.register("square")
class SquareSpec(AutoAttackSpec):
    attacks = ("square",)


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
    options = {**kw, **{k: v for k, v in overrides.items() if v is not None}}
    declared = hyperparameters(ATTACKS.get(name))
    unknown = sorted(set(options) - set(declared))
    if unknown:
        raise invalid("attack options", sorted(options), f"options of attack '{name}': {', '.join(declared) or 'none'}",
                      f"not accepted ({', '.join(unknown)})")
    return ATTACKS.get(name)(**options).build(threat)


def attack_spec(spec: str) -> type[Spec]:
    """The declared class of an attack spec (its options: `registry.hyperparameters`)."""
    return ATTACKS.get(parse_spec(spec)[0])


def is_official(spec: str) -> bool:
    """Does `spec` name the official AutoAttack code (which needs inputs in [0,1])?"""
    name, _ = parse_spec(spec)
    return name in OFFICIAL or name in AUTOATTACK_NAMES


__all__ = ["AUTOATTACK_NAMES", "Spec", "attack_spec", "canonical", "create_attack", "is_official", "names_help",
           "parse_spec"]

"""Attacks with one call shape, `x_adv = attack(model, x, y)`, inputs in [0,1], built from one
vocabulary for training and evaluation:

    threat = ThreatModel(norm="Linf", eps=8/255, alpha=2/255, steps=10)
    x_adv = create_attack("pgd", threat)(model, x, y)
    create_attack("pgd20", threat), create_attack("apgd_ce", threat), create_attack("autoattack", threat)

See `attacks.spec` for the grammar; `ATTACKS.names()` lists the registered names.
"""
from .apgd import APGD
from .autoattack import AutoAttack, run_official
from .base import ATTACKS, Attack, AttackFn
from .fgsm import FGSM
from .lp import NORMS, lp_norm, project
from .mifgsm import MIFGSM
from .pgd import PGD, margin
from .spec import AUTOATTACK_NAMES, attack_spec, canonical, create_attack, is_official, names_help, parse_spec
from .spsa import SPSA
from .threat import DEFAULT_EPS, ThreatModel
from .trades_kl import TradesKL

__all__ = ["APGD", "ATTACKS", "AUTOATTACK_NAMES", "Attack", "AttackFn", "AutoAttack", "DEFAULT_EPS", "FGSM", "MIFGSM", "NORMS",
           "PGD", "SPSA", "ThreatModel", "TradesKL", "attack_spec", "canonical", "create_attack", "is_official", "lp_norm", "margin",
           "names_help", "parse_spec", "project", "run_official"]

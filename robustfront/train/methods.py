"""Named methods: a method from a paper is an (objective, combiner) pair with defaults."""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field

from ..attacks import ThreatModel, create_attack
from ..combiners import COMBINERS
from ..objectives import OBJECTIVES
from ..registry import Registry
from ..validation import check_like


@dataclass(frozen=True)
class Method:
    objective: str
    combiner: str = "sum"
    attack: str = "pgd"                      # training attack (see robustfront.attacks)
    objective_args: dict = field(default_factory=dict)
    combiner_args: dict = field(default_factory=dict)
    doc: str = ""


METHODS = Registry("method")


def register_method(name: str, **spec) -> Method:
    m = Method(**spec)
    METHODS.register(name)(m)
    return m


register_method("standard", objective="standard", attack="none", doc="Standard training on clean images.")
register_method("pgd_at", objective="pgd_at", doc="PGD-AT (Madry et al.): CE on PGD examples.")
register_method("vanilla", objective="vanilla", combiner="weighted", combiner_args={"lam": 0.5},
                doc="Weighted-average AT: λ·CE(x) + (1-λ)·CE(x'), λ=0.5 (CA-AT's baseline).")


def _params(cls) -> set[str]:
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {n for n, p in inspect.signature(cls.__init__).parameters.items()
            if n not in ("self", "attack") and p.kind in kinds}


def split_opts(method: Method, opts: dict) -> tuple[dict, dict]:
    """Route each `opts` key to the objective or the combiner by constructor signature."""
    obj_keys = _params(OBJECTIVES.get(method.objective))
    comb_keys = _params(COMBINERS.get(method.combiner))
    obj_args, comb_args = dict(method.objective_args), dict(method.combiner_args)
    for k, v in opts.items():
        if k in obj_keys and k in comb_keys:  # e.g. gamma of AWP and of CA-AT: never guess
            raise ValueError(f"option '{k}' is a hyper-parameter of both objective '{method.objective}' and "
                             f"combiner '{method.combiner}'; allowed: set it in Python with create_objective / "
                             f"create_combiner")
        if k in obj_keys:
            obj_args[k] = v
        elif k in comb_keys:
            comb_args[k] = v
        else:
            allowed = sorted(obj_keys | comb_keys)
            raise ValueError(f"option '{k}' is not a hyper-parameter of this method; allowed: "
                             f"{', '.join(allowed) if allowed else 'none'}")
    return obj_args, comb_args
register_method("ca_at", objective="vanilla", combiner="ca_at", combiner_args={"gamma": 0.8},
                doc="CA-AT (Xue et al.): g_a moved onto the cone of angle arccos γ around g_c when they conflict.")
register_method("agr", objective="vanilla", combiner="agr", combiner_args={"start_epoch": 150, "clip": 0.1},
                doc="AT + AGR (Tong et al.): per-tensor GOP / GICS reconstruction of g_a, clipped.")

# -- the trade-off baselines (METHODS.md's objectives table) ---------------------------------
register_method("trades", objective="trades", attack="trades_kl", doc="TRADES: CE(x) + β·KL(p(x)||p(x')), β=6.")
register_method("mart", objective="mart", attack="pgd_normal", doc="MART: BCE(x') + β·KL·(1-p_y(x)), β=6.")
register_method("clp", objective="clp", doc="Clean logit pairing: CE(x) + CE(x') + w·‖f(x)-f(x')‖², w=0.5.")
register_method("cons_at", objective="cons_at", doc="Cons-AT: CE on two attacked views + λ·JS at T=0.5.")
register_method("awp", objective="awp", doc="AWP around PGD-AT: adversarial weight perturbation, γ=0.01.")
register_method("raat", objective="raat", doc="RAAT: reduced examples for boundary samples + DICAR consistency.")
register_method("raat_pp", objective="raat_pp", doc="RAAT++: RAAT with MART's BCE and weighted KL.")

# -- CA-AT with other adversarial losses ---------------------------------------------------
register_method("ca_at_trades", objective="trades", attack="trades_kl", combiner="ca_at",
                combiner_args={"gamma": 0.8}, doc="CA-AT on g_c = ∇CE(x), g_a = ∇β·KL (TRADES loss).")
register_method("ca_at_clp", objective="clp", combiner="ca_at", combiner_args={"gamma": 0.8},
                doc="CA-AT on g_c = ∇CE(x), g_a = ∇(CE(x') + w·‖f(x)-f(x')‖²).")

# -- AGR with other objectives (reference code: g_a from the whole loss, g_c from clean CE) --
_AGR = {"start_epoch": 150, "clip": 0.1}
register_method("agr_trades", objective="trades", attack="trades_kl", objective_args={"surgery": True},
                combiner="agr", combiner_args=_AGR, doc="TRADES + AGR.")
register_method("agr_mart", objective="mart", attack="pgd_normal", objective_args={"with_clean": True},
                combiner="agr", combiner_args=_AGR, doc="MART + AGR.")
register_method("agr_awp", objective="awp_vanilla", combiner="agr", combiner_args=_AGR, doc="AWP + AGR.")


def training_attack(spec: str, threat: ThreatModel, bn_mode: str = "eval"):
    """The training attack of a method (None for "none", i.e. standard training)."""
    if spec == "none":
        return None
    return create_attack(spec, threat, bn_mode=bn_mode)


def build_method(cfg, threat: ThreatModel):
    """(objective, combiner) for a config: its method preset, the training attack built for `threat`,
    and `cfg.opts` routed to the objective or the combiner."""
    if cfg.objective or cfg.combiner or cfg.wrap:
        raise ValueError("objective/combiner/wrap overrides are not available yet; allowed: a named --method")
    method = METHODS.get(cfg.method)
    obj_args, comb_args = split_opts(method, cfg.opts)
    attack = training_attack(cfg.attack or method.attack, threat, cfg.attack_bn_mode)
    objective = _build(OBJECTIVES, method.objective, {**({"attack": attack} if attack else {}), **obj_args})
    combiner = _build(COMBINERS, method.combiner, comb_args)
    check_pairing(objective, combiner, method.objective, method.combiner)
    return objective, combiner


def _build(registry, name: str, args: dict):
    """registry.create(name, **args) with each user value checked against its default's type first,
    so that gamma=abc is one line naming gamma, not a TypeError from inside the rule."""
    params = inspect.signature(registry.get(name).__init__).parameters
    args = {k: v if k == "attack" or params[k].default is inspect.Parameter.empty else
            check_like(k, v, params[k].default) for k, v in args.items()}
    try:
        return registry.create(name, **args)
    except TypeError as e:
        raise ValueError(f"{registry.kind} '{name}' refused its options {sorted(args)} ({e}); allowed: the types "
                         f"of its defaults") from None


def check_pairing(objective, combiner, obj_name: str, comb_name: str) -> None:
    """An objective and a combiner fit when no term is lost and none is counted twice."""
    if combiner.separate and set(objective.terms) != set(combiner.terms):
        raise ValueError(f"combiner '{comb_name}' needs exactly the terms {list(combiner.terms)}; objective "
                         f"'{obj_name}' gives {list(objective.terms)}")
    if not combiner.separate and objective.terms_overlap:
        raise ValueError(f"objective '{obj_name}' with surgery=True / with_clean=True repeats the clean CE inside "
                         f"'adv'; allowed only with a gradient-surgery combiner (ca_at, agr), not '{comb_name}'")

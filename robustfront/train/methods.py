"""Named methods: a method from a paper is an (objective, combiner) pair with defaults."""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field

from ..combiners import COMBINERS
from ..objectives import OBJECTIVES
from ..registry import Registry


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

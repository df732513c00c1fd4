"""The two evaluation protocols of a reproduction, behind ONE function, `evaluate_protocol`.

(a) "paper": the attacks a paper reported, at its budgets (e.g. CA-AT's torchattacks-style PGD-10 with
    step 2/225 at every δ, and a 10-iteration APGD-CE), built from robustfront's own attacks and named
    after what they are (`pgd10_a2/225`, `apgd_ce10`), never "AutoAttack" unless it is the official one.
(b) "standard": robustfront's own: official AutoAttack (standard), PGD-20 and CW∞ on the full test set
    in exact fp32 (`STANDARD`).

Every evaluation of `robustfront reproduce` goes through `evaluate_protocol`, and it through the one
driver `eval.run(EvalConfig, [checkpoint])`, one request per protocol attack: a paper's step size and
iteration count are the request's `alpha` and `steps` (the rest of the attack's threat model), so a
paper's PGD-10 at step 2/225 runs exactly as `robustfront eval --attacks pgd10 --alpha 2/225` does.
"""
from __future__ import annotations

import time

from ..validation import invalid, parse_number

# robustfront's standard protocol (b): eps None = each run's training budget and norm
STANDARD = {"name": "standard", "label": "robustfront standard: official AutoAttack (standard), PGD-20, CW-inf; "
            "full test set, exact fp32",
            "attacks": [{"key": "autoattack", "attack": "autoattack"}, {"key": "pgd20", "attack": "pgd20"},
                        {"key": "cw", "attack": "cw"}]}
ATTACK_KEYS = ("key", "attack", "alpha", "steps", "eps", "norm", "note")
TINY_STEPS = 2                                  # --scale tiny: every attack capped at this many iterations
TINY_AA_BUDGETS = {"n_iter": 2, "n_queries": 5}


def check_protocol(p: dict, where: str) -> dict:
    """A protocol mapping {name, label, attacks: [{key, attack, alpha?, steps?, eps?, norm?, note?}]}; one line
    per problem (note: where a budget comes from, or `unverified`)."""
    from ..eval import check_attacks
    if not isinstance(p, dict) or not isinstance(p.get("attacks"), list) or not p["attacks"] \
            or not isinstance(p.get("name"), str) or p["name"] == "standard":
        raise invalid(where, p, "a mapping with a name (not 'standard'), a label and a non-empty attacks list")
    keys = set()
    for a in p["attacks"]:
        if not isinstance(a, dict) or "key" not in a or "attack" not in a:
            raise invalid(f"{where}.attacks", a, "a mapping with key and attack (and alpha, steps, eps, norm)")
        for k in a:
            if k not in ATTACK_KEYS:
                raise invalid(f"{where}.attacks key", k, ", ".join(ATTACK_KEYS), "unknown")
        check_attacks([a["attack"]])   # the one attack vocabulary (EvalConfig's rule)
        for e in _eps_list(a.get("eps")):
            parse_number(e, f"{where}.attacks.eps")
        if a.get("alpha") is not None:
            parse_number(a["alpha"], f"{where}.attacks.alpha")
        if a["key"] in keys:
            raise invalid(f"{where}.attacks key", a["key"], "each key once", "repeated")
        keys.add(a["key"])
    return p


def _eps_list(eps) -> list:
    return [] if eps is None else list(eps) if isinstance(eps, list) else [eps]


def metric_keys(protocol: dict, train_eps) -> list[str]:
    """The names the protocol's numbers carry: KEY, or KEY@EPS for attacks evaluated at several budgets."""
    out = []
    for a in protocol["attacks"]:
        eps = _eps_list(a.get("eps"))
        out += [f"{a['key']}@{e}" for e in eps] if len(eps) > 1 else [a["key"]]
    return out


def _request(a: dict, *, n, seed: int, device: str, tiny: bool):
    """The EvalConfig of one protocol attack: its eps list and norm (None: the run's training ones), its
    step size and iterations (alpha/steps, which the official cascades do not take), the tiny caps."""
    from ..eval import EvalConfig
    cascade = a["attack"].replace("-", "_").startswith("autoattack")
    steps = a.get("steps")
    if tiny and not cascade:
        steps = min(steps or TINY_STEPS, TINY_STEPS)   # a count in the name (pgd20) still wins, as ever
    return EvalConfig(attacks=[a["attack"]], eps=_eps_list(a.get("eps")) or None, norm=a.get("norm"),
                      alpha=a.get("alpha"), steps=steps, n=n, seed=seed, device=device,
                      aa_budget=TINY_AA_BUDGETS if tiny and cascade else None)


def evaluate_protocol(checkpoint, protocol: dict, *, n: int | None = None, seed: int = 0, device: str = "auto",
                      tiny: bool = False, log=None) -> dict:
    """Clean and robust accuracy (fractions) of CHECKPOINT's model on its test split under PROTOCOL,
    one `eval.run` per protocol attack (its state folder inside the run makes a long one resumable).

    n: a seeded subset of the test split (None: all of it). tiny: every attack capped at TINY_STEPS
    iterations and AutoAttack at TINY_AA_BUDGETS (the CPU smoke scale; never a number to report).
    Returns {"protocol", "clean", "robust": {metric key: acc}, "n", "checkpoint_epoch", "settings", "time_s"}.
    """
    from ..checkpoint import load
    from ..eval import run

    t0 = time.perf_counter()
    clean, n_points, robust, settings = None, None, {}, {}
    for a in protocol["attacks"]:
        cfg = _request(a, n=n, seed=seed, device=device, tiny=tiny)
        res = run(cfg, [checkpoint])
        name = cfg.attacks[0]
        eps_list = _eps_list(a.get("eps")) or res.eps_str
        for e in eps_list:
            key = f"{a['key']}@{e}" if len(eps_list) > 1 else a["key"]
            point = next(p for p in res.points if abs(p.eps - parse_number(e, "eps")) <= 1e-12)
            robust[key] = point.robust[name].mean
            clean = point.clean.mean if clean is None else clean
            settings[key] = {"attack": a["attack"], "eps": e, "norm": res.norm, "alpha": a.get("alpha"),
                             "steps": cfg.steps, "attack_settings": _attack_settings(res.raw, e, name)}
            if log:
                log(f"[reproduce] {protocol['name']} {key}: {100 * robust[key]:.2f}%")
        n_points = res.n
    return {"protocol": protocol["name"], "clean": float(clean), "robust": robust, "n": int(n_points),
            "checkpoint_epoch": load(checkpoint).get("epoch"), "settings": settings, "tiny": tiny,
            "time_s": time.perf_counter() - t0}


def _attack_settings(raw: dict, e, name: str) -> dict | None:
    """What the attack ran with at ε = e (its step size and iterations), from the evaluation's result."""
    for part in raw.get("sweep") or [raw]:
        if abs(float(part["eps"]) - parse_number(e, "eps")) <= 1e-12:
            return (part.get("attack_settings") or {}).get(name)
    return None


__all__ = ["STANDARD", "check_protocol", "evaluate_protocol", "metric_keys"]

"""The two evaluation protocols of a reproduction, behind ONE function, `evaluate_protocol`.

(a) "paper": the attacks a paper reported, at its budgets (e.g. CA-AT's torchattacks-style PGD-10 with
    step 2/225 at every δ, and a 10-iteration APGD-CE), built from robustfront's own attacks and named
    after what they are (`pgd10_a2/225`, `apgd_ce10`), never "AutoAttack" unless it is the official one.
(b) "standard": robustfront's own: official AutoAttack (standard), PGD-20 and CW∞ on the full test set
    in exact fp32 (`STANDARD`).

Every evaluation of `robustfront reproduce` goes through `evaluate_protocol`, so that switching to
the coming `eval.run(EvalConfig, sources)` is a change of this one function. Today it uses the public
API: `eval.load_for_eval` for the checkpoint and its test images, `eval.evaluate` for attacks at
their own budgets (the AutoAttack cascade included), and `attacks.create_attack(...).robust_mask`
for attacks with a paper's step size or iteration count.
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


def evaluate_protocol(checkpoint, protocol: dict, *, n: int | None = None, seed: int = 0, device: str = "auto",
                      tiny: bool = False, log=None) -> dict:
    """Clean and robust accuracy (fractions) of CHECKPOINT's model on its test split under PROTOCOL.

    n: a seeded subset of the test split (None: all of it). tiny: every attack capped at TINY_STEPS
    iterations and AutoAttack at TINY_AA_BUDGETS (the CPU smoke scale; never a number to report).
    Returns {"protocol", "clean", "robust": {metric key: acc}, "n", "checkpoint_epoch", "settings", "time_s"}.
    """
    import torch

    from ..attacks import ThreatModel, create_attack
    from ..checkpoint import load
    from ..device import exact_fp32
    from ..eval import evaluate, load_for_eval
    from ..models import eval_mode

    t0 = time.perf_counter()
    inp = load_for_eval(checkpoint, split="test", n=n, seed=seed, device=device)
    cfg = inp.config or {}
    train_eps, train_norm = str(cfg.get("eps", "8/255")), cfg.get("norm", "Linf")
    clean, robust, settings = None, {}, {}
    for a in protocol["attacks"]:
        eps_list = _eps_list(a.get("eps")) or [train_eps]
        norm = a.get("norm") or train_norm
        steps = a.get("steps")
        if tiny:
            steps = min(steps or TINY_STEPS, TINY_STEPS)
        plain = a.get("alpha") is None and steps is None
        for e in eps_list:
            key = f"{a['key']}@{e}" if len(eps_list) > 1 else a["key"]
            eps = parse_number(e, "eps")
            if plain or a["attack"].startswith("autoattack"):   # the suite, at each attack's own budgets
                res = evaluate(inp.model, inp.x, inp.y, [a["attack"]], eps=eps, norm=norm, seed=seed,
                               bounds=inp.dataset.bounds, data=inp.data, split="test",
                               budgets=TINY_AA_BUDGETS if tiny and a["attack"].startswith("autoattack") else None)
                robust[key] = res["robust_acc"][a["attack"].replace("-", "_")]
                clean = res["clean_acc"] if clean is None else clean
            else:                                                # the paper's step size / iterations
                alpha = None if a.get("alpha") is None else parse_number(a["alpha"], "alpha")
                atk = create_attack(a["attack"], ThreatModel(norm=norm, eps=eps, alpha=alpha, steps=steps,
                                                             bounds=inp.dataset.bounds))
                torch.manual_seed(seed)
                with eval_mode(inp.model), exact_fp32():   # as the suite evaluates: eval mode, no TF32
                    ok, _ = atk.robust_mask(inp.model, inp.x, inp.y, batch_size=256, seed=seed)
                robust[key] = float(ok.float().mean())
            settings[key] = {"attack": a["attack"], "eps": e, "norm": norm, "alpha": a.get("alpha"), "steps": steps}
            if log:
                log(f"[reproduce] {protocol['name']} {key}: {100 * robust[key]:.2f}%")
    if clean is None:
        from ..eval import accuracy
        clean = accuracy(inp.model, inp.x, inp.y)
    state = load(checkpoint)
    return {"protocol": protocol["name"], "clean": float(clean), "robust": robust, "n": int(len(inp.y)),
            "checkpoint_epoch": state.get("epoch"), "settings": settings, "tiny": tiny,
            "time_s": time.perf_counter() - t0}


__all__ = ["STANDARD", "check_protocol", "evaluate_protocol", "metric_keys"]

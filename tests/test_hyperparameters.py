"""Hyper-parameters are declared, not discovered: every objective, wrapper, combiner and attack spec
declares its options once (typed dataclass fields, the comment after each is its help), the CLI
lists them, and --opt values are converted by the declared type."""
from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from robustfront.attacks import ATTACKS, AttackFn, ThreatModel, attack_spec, create_attack
from robustfront.combiners import COMBINERS
from robustfront.objectives import OBJECTIVES, WRAPPERS, Slots
from robustfront.objectives.awp import AWP
from robustfront.objectives.trades import TRADES
from robustfront.objectives.vanilla import Vanilla
from robustfront.registry import EMPTY, hyperparameters
from robustfront.train.methods import build_method, option_rows

ROOT = Path(__file__).resolve().parents[1]
THREAT = ThreatModel(norm="Linf", eps=8 / 255, alpha=2 / 255, steps=2, bounds=(0.0, 1.0))

REGISTRIES = {"objective": OBJECTIVES, "wrapper": WRAPPERS, "combiner": COMBINERS, "attack": ATTACKS}
ENTRIES = [(kind, name) for kind, reg in REGISTRIES.items() for name in reg.names()]


def build(kind: str, name: str, **options):
    """The registered thing `name` built with its defaults (and `options`)."""
    if kind == "wrapper":
        return WRAPPERS.get(name)(Vanilla(), **options)
    if kind == "attack":
        return create_attack(name, THREAT, **options)
    return REGISTRIES[kind].create(name, **options)


def cfg(method, **kw):
    base = dict(method=method, objective=None, combiner=None, wrap=None, opts={}, attack=None,
                attack_bn_mode=None, ema=None)
    return SimpleNamespace(**{**base, **kw})


def test_the_registries_hold_every_name_they_held_before():
    assert OBJECTIVES.names() == ["avmixup", "clp", "cons_at", "mart", "pgd_at", "raat", "raat_pp", "standard",
                                  "trades", "vanilla"]
    assert WRAPPERS.names() == ["awp"] and COMBINERS.names() == ["agr", "ca_at", "sum", "weighted"]
    assert ATTACKS.names() == ["apgd_ce", "apgd_dlr", "apgd_t", "autoattack", "autoattack_plus", "autoattack_rand",
                               "cw", "cw0", "fab", "fab_t", "fgsm", "mifgsm", "pgd", "pgd_normal", "spsa", "square",
                               "trades_kl"]


@pytest.mark.parametrize("kind,name", ENTRIES)
def test_every_hyperparameter_is_declared_with_a_type_a_default_and_help(kind, name):
    cls = REGISTRIES[kind].get(name)
    assert dataclasses.is_dataclass(cls), f"{kind} {name} is not declared as a dataclass"
    for o in hyperparameters(cls).values():
        assert o.type_name and o.type is not None, (name, o.name)
        assert o.default is not EMPTY, (name, o.name)   # so that the defaults alone build it
        assert len(o.help.split()) >= 3, f"{kind} {name}: option {o.name} has no help text ({o.help!r})"
    parts = {f.name for f in dataclasses.fields(cls) if f.metadata.get("part")}
    assert not parts & set(hyperparameters(cls))          # the attack / wrapped objective are no options


@pytest.mark.parametrize("kind,name", ENTRIES)
def test_defaults_build_and_the_built_object_uses_the_declared_defaults(kind, name):
    built = build(kind, name)
    for o in hyperparameters(REGISTRIES[kind].get(name)).values():
        if o.default is None:   # None means "derived" (the threat's steps, 0.5 for Weighted's lam, ...)
            continue
        assert getattr(built, o.name) == o.default, f"{kind} {name}: {o.name}"


def test_derived_defaults_say_what_they_become():
    w = COMBINERS.create("weighted")
    assert (w.lam, w.clean_weight) == (0.5, 0.5)
    assert create_attack("pgd", THREAT).steps == 2 and create_attack("pgd", ThreatModel(eps=0.1)).steps == 10
    assert create_attack("spsa", ThreatModel(eps=0.1)).iterations == 100


@pytest.mark.parametrize("kind,name", [e for e in ENTRIES if e[0] != "attack"])
def test_a_changed_option_reaches_the_built_object(kind, name):
    """Each number option set to another valid value is what the built object holds."""
    for o in hyperparameters(REGISTRIES[kind].get(name)).values():
        if o.type is float and isinstance(o.default, float) and 0 < o.default < 1:
            value = o.default / 2
        elif o.type is int and isinstance(o.default, int):
            value = o.default + 1
        else:
            continue
        assert getattr(build(kind, name, **{o.name: value}), o.name) == value, (name, o.name)


def test_a_float_option_given_as_text_is_converted_and_a_wrong_type_is_one_line():
    _, comb = build_method(cfg("ca_at", opts={"gamma": "0.9"}), THREAT)
    assert comb.gamma == 0.9 and type(comb.gamma) is float
    obj, _ = build_method(cfg("trades", opts={"objective.beta": "3/2"}), THREAT)
    assert obj.beta == 1.5
    with pytest.raises(ValueError) as e:
        build_method(cfg("ca_at", opts={"gamma": "abc"}), THREAT)
    msg = str(e.value)
    assert "\n" not in msg and "gamma='abc'" in msg and "float" in msg
    with pytest.raises(ValueError, match=r"start_epoch=2\.5 is invalid; allowed: an integer"):
        build_method(cfg("agr", opts={"start_epoch": 2.5}), THREAT)
    with pytest.raises(ValueError, match=r"mix='maxx' is unknown; allowed: plain, max"):
        build_method(cfg("raat", opts={"mix": "maxx"}), THREAT)
    with pytest.raises(ValueError, match=r"clamp_start='no' is invalid; allowed: true or false"):
        build_method(cfg("trades", opts={"attack.clamp_start": "no"}), THREAT)
    opt = hyperparameters(AWP)["perturb_terms"]
    assert opt.coerce("clean, adv") == ("clean", "adv") and opt.coerce(None) is None


def test_attack_options_are_declared_and_unknown_ones_refused():
    assert create_attack("pgd", THREAT, restarts=3).restarts == 3
    assert "kappa" not in hyperparameters(attack_spec("cw"))          # fixed by the name
    assert "random_start" not in hyperparameters(attack_spec("pgd_normal"))
    with pytest.raises(ValueError, match=r"attack options=\['kappa'\] is not accepted \(kappa\); allowed: options "
                                         r"of attack 'cw0': steps, restarts"):
        create_attack("cw0", THREAT, kappa=3.0)


def test_option_rows_show_the_values_the_method_uses():
    rows = {k: (t, v) for k, t, v, _ in option_rows(cfg("agr_awp", opts={"awp.gamma": "0.02"}))}
    assert rows["awp.gamma"] == ("float", 0.02) and rows["awp.at_w"] == ("list of str", ("clean",))
    assert rows["combiner.start_epoch"] == ("int", 150) and rows["attack.bn_mode"][1] == "eval"
    assert rows["objective.clean_first"] == ("bool", False)
    awp = {k: v for k, _, v, _ in option_rows(cfg("awp"))}
    assert awp["attack.bn_mode"] == "train"   # the preset's --attack-bn-mode


def _cli(*args):
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "robustfront", "train", *args], capture_output=True, text=True,
                          env=env, timeout=300)


def test_the_cli_lists_types_values_and_help_and_refuses_a_bad_value_in_one_line():
    r = _cli("--method", "trades", "--opt", "beta=5", "--list-opts")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("method trades: objective trades, combiner sum, attack trades_kl")
    beta = next(line for line in lines if line.strip().startswith("objective.beta"))
    assert beta.split()[1:3] == ["float", "5.0"] and beta.endswith(hyperparameters(TRADES)["beta"].help)
    assert any(line.split()[:3] == ["attack.clamp_start", "bool", "false"] for line in lines)
    bad = _cli("--method", "trades", "--opt", "beta=abc", "--list-opts")
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.strip().count("\n") == 0 and "beta='abc'" in bad.stderr and "float" in bad.stderr
    unknown = _cli("--method", "trades", "--opt", "objective.gama=1", "--list-opts")
    assert unknown.returncode == 2 and "allowed: beta, clean_first" in unknown.stderr


def test_wrappers_forward_the_declared_attacks_and_their_replacement():
    atk = AttackFn(lambda m, x, y: x)
    inner = TRADES(atk)
    obj = Slots(AWP(inner), TRADES.slots)
    assert obj.attacks() == (atk,) and obj.attack is atk
    obj.replace_attacks(lambda a: AttackFn(a, bn_mode="train"))
    assert inner.attack.fn is atk and obj.attacks() == (inner.attack,) and inner.attack.bn_mode == "train"
    assert OBJECTIVES.create("standard").attacks() == ()


def test_objectives_read_bn_mode_and_bounds_as_declared():
    for f in ("objectives/cons_at.py", "objectives/avmixup.py"):
        assert "getattr(" not in (ROOT / "robustfront" / f).read_text(), f
    build_py = (ROOT / "robustfront" / "train" / "build.py").read_text()
    assert "vars(" not in build_py and "isinstance(e, Objective)" not in build_py
    # AVmixup's vertex is clipped to the attack's declared bounds
    av = OBJECTIVES.create("avmixup", attack=AttackFn(lambda m, x, y: x + 1.0, bounds=(0.0, 2.0)))
    x = torch.full((2, 3), 0.5)
    mixed = av.mixed(x, x + 1.0, torch.zeros(2))   # a = 0: the vertex itself, x + γ·δ = 2.5 clipped to 2
    assert torch.equal(mixed, torch.full((2, 3), 2.0))

"""Methods as compositions: objective × wrappers × combiner, presets, opts routing, slot mappings,
pairing refusals (issue 9, item 3)."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustfront.attacks import ThreatModel, PGD, TradesKL
from robustfront.combiners import CAAT, AGR, Sum, Weighted
from robustfront.objectives import AWP, Slots, create_objective
from robustfront.objectives.trades import TRADES
from robustfront.train import TrainConfig
from robustfront.train.methods import METHODS, build_method, compose, training_attack

THREAT = ThreatModel(norm="Linf", eps=8 / 255, alpha=2 / 255, steps=2, bounds=(0.0, 1.0))


def cfg(method="pgd_at", **kw):
    return TrainConfig(method=method, **kw)


def shift(model, x, y):
    return (x + 0.1).clamp(0, 1)


def tiny():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(4, 3)).train(), torch.rand(6, 4), torch.tensor([0, 1, 2, 0, 1, 2])


def test_the_named_methods_are_presets_of_parts():
    expected = {"standard", "pgd_at", "vanilla", "trades", "mart", "clp", "cons_at", "ca_at", "ca_at_trades",
                "ca_at_clp", "agr", "agr_trades", "agr_mart", "agr_awp", "raat", "raat_pp", "awp",
                "avmixup", "agr_avmixup", "raat_sharp"}
    assert expected == set(METHODS.names())
    p = METHODS.get("agr_awp")
    assert (p.objective, p.combiner, p.wrap) == ("vanilla", "agr", ("awp",)) and p.doc
    obj, comb = build_method(cfg("agr_awp"), THREAT)
    assert isinstance(obj, Slots) and isinstance(obj.objective, AWP) and isinstance(comb, AGR)
    assert obj.objective.at_w == ("clean",) and obj.objective.perturb_terms == ("adv",)


def test_parts_are_chosen_independently_and_opts_are_routed():
    obj, comb = build_method(cfg(objective="trades", combiner="ca_at", wrap=["awp"],
                                 opts={"combiner.gamma": 0.9, "objective.beta": 3, "awp.gamma": 0.02}), THREAT)
    assert isinstance(comb, CAAT) and comb.gamma == 0.9
    awp = obj.objective
    assert isinstance(awp, AWP) and awp.gamma == 0.02 and isinstance(awp.objective, TRADES)
    assert awp.objective.beta == 3.0
    assert isinstance(obj.attack, TradesKL) and obj.attack.clamp_start is False  # TRADES' own attack
    assert obj.mapping == {"clean": ("clean",), "adv": ("kl",)}                  # TRADES' default slots
    # bare keys where only one part has them
    obj, comb = build_method(cfg("ca_at_trades", opts={"beta": 6, "gamma": 0.7}), THREAT)
    assert obj.objective.beta == 6.0 and comb.gamma == 0.7
    # nested, as YAML may write it
    obj, comb = build_method(cfg("ca_at_trades", opts={"combiner": {"gamma": 0.75}, "objective": {"beta": 2}}), THREAT)
    assert obj.objective.beta == 2.0 and comb.gamma == 0.75
    # the attack's options and slots by prefix
    obj, _ = build_method(cfg("agr_trades", opts={"attack.steps": 3, "slots.adv": "kl"}), THREAT)
    assert obj.attack.steps == 3 and obj.mapping["adv"] == ("kl",)


@pytest.mark.parametrize("kw,match", [
    (dict(method="awp", combiner="ca_at", opts={"gamma": 0.9}),
     r"option 'gamma' is a hyper-parameter of both combiner 'ca_at' and wrapper 'awp'; allowed: combiner.gamma or awp.gamma"),
    (dict(method="pgd_at", opts={"beta": 6}), "option 'beta' is not a hyper-parameter of this method; allowed: label_smoothing"),
    (dict(method="trades", opts={"objective.gama": 6}),
     r"option 'objective.gama' is not a hyper-parameter of objective 'trades'; allowed: beta, clean_first"),
    (dict(method="trades", opts={"awp.gamma": 0.1}), r"opt='awp.gamma' is for the unknown part 'awp'"),
    (dict(method="pgd_at", combiner="ca_at"),
     r"combiner 'ca_at' needs the gradient slots clean, adv; objective 'pgd_at' has no clean side; allowed objectives: "),
    (dict(method="cons_at", combiner="agr"), r"objective 'cons_at' has no clean side"),
    (dict(method="standard", combiner="weighted"), r"objective 'standard' has no clean side"),
    (dict(method="trades", opts={"slots.adv": "kl"}), r"slots=\{'adv': \['kl'\]\} is given; allowed: nothing"),
    (dict(method="agr_trades", opts={"slots.adv": "ce"}), r"slots.adv=\['ce'\] is invalid; allowed: a non-empty list of terms"),
    (dict(method="nope"), r"unknown method 'nope'; allowed: "),
    (dict(method="pgd_at", wrap=["sam"]), r"unknown wrapper 'sam'; allowed: awp"),
    (dict(method="pgd_at", objective="bogus"), r"unknown objective 'bogus'"),
    (dict(method="pgd_at", opts={"attack.bogus": 1}), r"attack options=\['bogus'\] is .*bogus"),
])
def test_bad_compositions_are_refused_with_one_line(kw, match):
    with pytest.raises(ValueError, match=match) as e:
        build_method(cfg(**kw), THREAT)
    assert "\n" not in str(e.value)


def test_only_really_undefined_pairings_are_refused():
    # RAAT has clean forwards: CA-AT/AGR on it are defined (clean CE vs the whole RAAT loss, DICAR included)
    obj, comb = build_method(cfg("raat", combiner="ca_at"), THREAT)
    assert obj.mapping == {"clean": ("clean",), "adv": ("adv", "dicar")} and obj.objective.wanted == ("clean",)
    # a surgery combiner with no clean side is refused (above); summing combiners take anything
    obj, comb = build_method(cfg("cons_at"), THREAT)
    assert isinstance(comb, Sum) and not isinstance(obj, Slots)


def test_slots_feed_the_combiner_exactly_its_terms_and_report_the_loss_once():
    model, x, y = tiny()
    obj = create_objective("trades", shift, slots={"clean": ("clean",), "adv": ("clean", "kl")})
    losses, _ = obj(model, x, y)
    assert set(losses) == set(AGR.terms)
    logits, logits_adv = model(x), model(shift(None, x, y))
    ce = F.cross_entropy(logits, y)
    kl = 6.0 * F.kl_div(F.log_softmax(logits_adv, 1), F.softmax(logits, 1), reduction="batchmean")
    torch.testing.assert_close(losses["clean"], ce)
    torch.testing.assert_close(losses["adv"], ce + kl)
    torch.testing.assert_close(obj.reported_loss(losses), (ce + kl).detach())  # not 2·CE + KL


def test_weighted_preset_lambda_is_the_adversarial_weight():
    model, x, y = tiny()
    for lam in (0.0, 0.3, 1.0):
        obj, comb = build_method(cfg("vanilla", opts={"lam": lam}), THREAT)
        obj.attack = shift
        total = comb.total_loss(obj(model, x, y)[0])
        ref = (1 - lam) * F.cross_entropy(model(x), y) + lam * F.cross_entropy(model(shift(None, x, y)), y)
        torch.testing.assert_close(total, ref)
    obj, comb = build_method(cfg("vanilla", opts={"clean_weight": 0.3}), THREAT)
    assert isinstance(comb, Weighted) and comb.lam == pytest.approx(0.7) and comb.clean_weight == pytest.approx(0.3)
    with pytest.raises(ValueError, match="clean_weight=0.3 is given together with lam"):
        Weighted(lam=0.5, clean_weight=0.3)


def test_replacing_the_objective_drops_the_presets_objective_parts():
    c = compose(cfg("ca_at_clp", objective="vanilla"))
    assert c.objective_args == {} and c.attack == "pgd" and c.attack_args == {}
    assert c.combiner_args == {"gamma": 0.8}                      # the combiner is the preset's
    c = compose(cfg("agr_awp", objective="trades"))               # AWP's term names belong to the objective
    assert c.wrap == ("awp",) and not c.wrap_args.get("awp") and c.slots == {"clean": ("clean",), "adv": ("kl",)}
    c = compose(cfg("trades", attack="pgd"))                      # AGR's reference attack for TRADES
    assert c.attack == "pgd" and c.attack_args == {}
    c = compose(cfg("awp", attack_bn_mode="eval"))
    assert c.attack_bn_mode == "eval" and compose(cfg("awp")).attack_bn_mode == "train"


def test_training_attack_is_built_in_one_place_with_the_threat_model():
    a = training_attack("pgd", ThreatModel(norm="L2", eps=0.5, alpha=None, steps=3, bounds=None), bn_mode="train")
    assert isinstance(a, PGD) and (a.norm, a.eps, a.alpha, a.steps, a.bounds, a.bn_mode) == ("L2", 0.5, 0.125, 3, None, "train")
    t = training_attack("trades_kl", ThreatModel(norm="L2", eps=0.5, alpha=0.1, steps=3, bounds=(0.0, 1.0)))
    assert isinstance(t, TradesKL) and t.norm == "L2"                                    # TRADES under L2
    assert training_attack("none", THREAT) is None
    with pytest.raises(ValueError, match="norm='L2' is not supported; allowed: Linf for attack FGSM"):
        training_attack("fgsm", ThreatModel(norm="L2", eps=0.5, alpha=None, steps=1, bounds=(0.0, 1.0)))


def test_raat_sharp_needs_weight_averaging():
    with pytest.raises(ValueError, match=r"ema=None is not set; allowed: a decay in \(0, 1\): method 'raat_sharp'"):
        build_method(cfg("raat_sharp", ema=None), THREAT)
    obj, _ = build_method(cfg("raat_sharp", ema=0.999), THREAT)
    assert obj.needs_averaged and not build_method(cfg("raat", ema=None), THREAT)[0].needs_averaged
    wrapped, _ = build_method(cfg("raat_sharp", ema=0.999, wrap=["awp"], combiner="ca_at"), THREAT)
    assert wrapped.needs_averaged  # seen through AWP and Slots


def test_a_preset_option_set_to_none_reaches_the_objective():
    # RAAT#'s preset says dicar_start=None (DICAR from the averaging start); dropping the None as "not given"
    # would silently start DICAR at epoch 0, the plain default
    objective, _ = build_method(cfg("raat_sharp", ema=0.999, ema_start=1), ThreatModel(eps=8 / 255, alpha=2 / 255, steps=2))
    inner = objective
    while not hasattr(inner, "dicar_start"):  # through the Slots/wrapper layers to the RAAT objective
        inner = inner.objective
    assert inner.dicar_start is None and inner.needs_averaged
    plain, _ = build_method(cfg("raat"), ThreatModel(eps=8 / 255, alpha=2 / 255, steps=2))
    while not hasattr(plain, "dicar_start"):
        plain = plain.objective
    assert plain.dicar_start == 0


def test_a_combiner_option_set_to_none_is_kept():
    # AGR's clip=None means no clipping; read as "not given" it would silently clip at the default 0.1
    _, combiner = build_method(cfg("agr", opts={"combiner.clip": None}), ThreatModel(eps=8 / 255, alpha=2 / 255, steps=2))
    assert combiner.clip is None
    _, default = build_method(cfg("agr"), ThreatModel(eps=8 / 255, alpha=2 / 255, steps=2))
    assert default.clip == 0.1

"""Objectives (TRADES, MART, CLP, Cons-AT, RAAT/RAAT++, AWP) and the APGD training attacks.

Most cases use tiny hand-computable models (an identity "model" whose inputs are the logits, a
fixed linear map) and deterministic stand-in attacks; the rest a small CNN trained for about a
second on 8x8 digits.
"""
import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustfront.attacks import PGD, AttackFn, TradesKL
from robustfront.attacks.apgd import APGD
from robustfront.models import create_model
from robustfront.objectives.awp import AWP, AWPAT, AWPVanilla
from robustfront.objectives.clp import CLP
from robustfront.objectives.cons_at import ConsAT, js_from_logits
from robustfront.objectives.mart import MART
from robustfront.objectives.pgd_at import PGDAT
from robustfront.objectives.raat import RAAT, RAATPP
from robustfront.objectives.slots import Slots
from robustfront.objectives.trades import TRADES, kl_from_logits
from robustfront.objectives.avmixup import AVmixup
from robustfront.objectives.vanilla import Vanilla

# AGR's reference split of TRADES: g_c from the clean CE, g_a from the whole TRADES loss
WHOLE_TRADES = {"clean": ("clean",), "adv": ("clean", "kl")}


# ---------------------------------------------------------------- stand-ins

@AttackFn  # declares what objectives read of an attack (bn_mode, bounds)
def identity_attack(model, x, y):
    return x.clone()


class Shift:
    """x' = x + d (d broadcast against x; a per-sample d is repeated for a concatenation of views,
    the joint attack call); counts its calls."""
    bn_mode, bounds = "eval", (0.0, 1.0)   # what objectives read of an attack (attacks.Attack declares them)

    def __init__(self, d):
        self.d, self.calls = d, 0

    def __call__(self, model, x, y):
        self.calls += 1
        d = self.d
        if torch.is_tensor(d) and d.dim() == x.dim() and d.shape[0] != x.shape[0]:
            d = d.repeat(x.shape[0] // d.shape[0], *[1] * (d.dim() - 1))
        return x + d


def linear(seed=0, d_in=4, k=3):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(d_in, k)).train()


def ce_list(logits, y):
    """Per-sample CE computed in plain Python."""
    out = []
    for z, t in zip(logits.tolist(), y.tolist()):
        out.append(math.log(sum(math.exp(v) for v in z)) - z[t])
    return out


def softmax_list(z):
    e = [math.exp(v - max(z)) for v in z]
    return [v / sum(e) for v in e]


@pytest.fixture(scope="module")
def digits(digits_model):
    """(model in eval mode, x, y): small CNN trained about a second on digits; 128 test images."""
    model, x, y = digits_model
    return model, x[:128], y[:128]


def accuracy(model, x, y):
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


# ---------------------------------------------------------------- TRADES

def test_trades_identity_attack_gives_zero_kl_and_clean_ce():
    model, x, y = linear(), torch.randn(6, 4), torch.tensor([0, 1, 2, 0, 1, 2])
    losses, stats = TRADES(identity_attack)(model, x, y)
    assert set(losses) == {"clean", "kl"} and losses["kl"].item() == 0.0
    torch.testing.assert_close(losses["clean"], F.cross_entropy(model(x), y))
    assert stats["clean_correct"].item() == stats["adv_correct"].item() == (model(x).argmax(1) == y).sum().item()


def test_trades_matches_reference_formula_and_beta_zero():
    model, x, y = linear(), torch.randn(6, 4), torch.tensor([0, 1, 2, 0, 1, 2])
    atk = Shift(0.3)
    losses, _ = TRADES(atk, beta=6.0)(model, x, y)
    ref_kl = F.kl_div(F.log_softmax(model(x + 0.3), 1), F.softmax(model(x), 1), reduction="batchmean")
    torch.testing.assert_close(losses["kl"], 6.0 * ref_kl)
    assert ref_kl.item() > 0
    # beta = 0: only the CE remains
    l0, _ = TRADES(atk, beta=0.0)(model, x, y)
    assert l0["kl"].item() == 0.0
    ls, _ = Slots(TRADES(atk, beta=0.0), WHOLE_TRADES)(model, x, y)
    torch.testing.assert_close(ls["adv"], ls["clean"])
    # AGR's slots: adv is the whole TRADES loss, and the loss is reported once
    obj = Slots(TRADES(atk, beta=6.0), WHOLE_TRADES)
    ls, _ = obj(model, x, y)
    torch.testing.assert_close(ls["adv"], losses["clean"] + losses["kl"])
    torch.testing.assert_close(obj.reported_loss(ls), (losses["clean"] + losses["kl"]).detach())


def test_kl_gradient_is_finite_when_probabilities_underflow():
    z = torch.tensor([[0.0, 200.0, -300.0]], requires_grad=True)
    a = torch.tensor([[0.0, 1.0, 2.0]], requires_grad=True)
    kl = kl_from_logits(z, a).sum()
    ref = F.kl_div(F.log_softmax(a, 1), F.softmax(z, 1), reduction="sum")
    torch.testing.assert_close(kl, ref)
    kl.backward()
    assert torch.isfinite(z.grad).all() and torch.isfinite(a.grad).all()


# ---------------------------------------------------------------- MART

def test_mart_equals_hand_formula_on_two_samples():
    # the "model" is the identity: inputs are logits, the attack returns fixed adversarial logits
    z = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.3, 1.2]])
    z_adv = torch.tensor([[0.2, 1.5, -0.5], [1.0, -0.2, 0.4]])
    y = torch.tensor([0, 2])
    beta = 6.0
    losses, stats = MART(lambda m, x, t: z_adv.clone(), beta=beta)(nn.Identity(), z, y)
    assert set(losses) == {"bce", "kl"}
    hand, plain = 0.0, 0.0
    for zi, zai, t in zip(z.tolist(), z_adv.tolist(), y.tolist()):
        p, q = softmax_list(zi), softmax_list(zai)
        ce = -math.log(q[t])
        q_other = max(v for k, v in enumerate(q) if k != t)
        kl = sum(pk * math.log(pk / (qk + 1e-12)) for pk, qk in zip(p, q))
        hand += ce - math.log(1.0001 - q_other + 1e-12) + beta * kl * (1.0000001 - p[t])
        kl0 = sum(pk * math.log(pk / qk) for pk, qk in zip(p, q))
        plain += ce - math.log(1 - q_other) + beta * kl0 * (1 - p[t])
    total = (losses["bce"] + losses["kl"]).item()
    assert total == pytest.approx(hand / 2, rel=1e-6)
    assert total == pytest.approx(plain / 2, rel=1e-3)  # the safe constants barely matter
    assert stats["clean_correct"].item() == 2 and stats["adv_correct"].item() == 0


def test_mart_clean_aux_term_is_the_clean_ce_and_leaves_the_loss_alone():
    model, x, y = linear(), torch.randn(5, 4), torch.tensor([0, 1, 2, 0, 1])
    obj = MART(Shift(0.2))
    obj.request(["clean"])
    losses, _ = obj(model, x, y)
    assert obj.terms == ("bce", "kl") and obj.outputs == ("bce", "kl", "clean") and MART(None).outputs == ("bce", "kl")
    torch.testing.assert_close(losses["clean"], F.cross_entropy(model(x), y))
    plain, _ = MART(Shift(0.2))(model, x, y)
    assert set(plain) == {"bce", "kl"}
    for k in ("bce", "kl"):
        torch.testing.assert_close(losses[k], plain[k])
    torch.testing.assert_close(obj.reported_loss(losses), (plain["bce"] + plain["kl"]).detach())  # aux not counted
    # AGR + MART: g_c from the clean CE, g_a from the whole MART loss
    slotted, _ = Slots(MART(Shift(0.2)), MART.slots)(model, x, y)
    torch.testing.assert_close(slotted["adv"], plain["bce"] + plain["kl"])


# ---------------------------------------------------------------- CLP

def test_clp_pairing_term():
    z, y = torch.tensor([[1.0, 0.0, -1.0], [0.5, 0.2, 0.1]]), torch.tensor([0, 2])
    losses, _ = CLP(identity_attack, weight=0.5)(nn.Identity(), z, y)
    torch.testing.assert_close(losses["adv"], F.cross_entropy(z, y))   # x' = x: no pairing penalty
    torch.testing.assert_close(losses["clean"], F.cross_entropy(z, y))
    d = torch.tensor([1.0, -2.0, 0.0])                                  # ‖Δ‖² = 5 for every sample
    losses, _ = CLP(Shift(d), weight=0.5)(nn.Identity(), z, y)
    assert losses["adv"].item() == pytest.approx(sum(ce_list(z + d, y)) / 2 + 0.5 * 5.0, rel=1e-6)


# ---------------------------------------------------------------- Cons-AT

def test_js_reference_values():
    a, b = torch.randn(7, 5), torch.randn(7, 5)
    js = js_from_logits(a, b, 0.5)
    pa, pb = F.softmax(a / 0.5, 1), F.softmax(b / 0.5, 1)
    m = (0.5 * (pa + pb)).clamp(min=1e-8).log()  # the Cons-AT reference's form
    ref = 0.5 * (F.kl_div(m, pa, reduction="none").sum(1) + F.kl_div(m, pb, reduction="none").sum(1))
    torch.testing.assert_close(js, ref)
    torch.testing.assert_close(js, js_from_logits(b, a, 0.5))
    assert (js > 0).all() and (js <= math.log(2) + 1e-6).all()
    assert js_from_logits(a, a, 0.5).abs().max().item() < 1e-6


def test_cons_at_views():
    model, x, y = linear(), torch.randn(6, 4), torch.tensor([0, 1, 2, 0, 1, 2])
    obj = ConsAT(Shift(0.1), lam=1.0, temperature=0.5)
    assert obj.views == 2
    same, stats = obj(model, (x, x.clone()), y)
    torch.testing.assert_close(same["adv"], F.cross_entropy(model(x + 0.1), y), atol=1e-6, rtol=1e-6)
    assert stats["adv_correct"].item() == (model(x + 0.1).argmax(1) == y).sum().item()
    x2 = x + 0.5 * torch.randn_like(x)
    l12, _ = obj(model, (x, x2), y)
    l21, _ = obj(model, (x2, x), y)
    ce = 0.5 * (F.cross_entropy(model(x + 0.1), y) + F.cross_entropy(model(x2 + 0.1), y))
    assert l12["adv"].item() > ce.item() + 1e-6          # the JS term is positive
    torch.testing.assert_close(l12["adv"], l21["adv"])    # and symmetric
    with pytest.raises(ValueError, match="views=2"):
        obj(model, x, y)


# ---------------------------------------------------------------- RAAT

def raat_case():
    """Linear 2-class model, logits (x0, -x0), all labels 0 (class 0 iff x0 > 0); attack x0 += s.

    A: x0=1,    s=-2 -> x'=-1 wrong, x''=0.8 right  -> non-boundary
    B: x0=0.05, s=-2 -> x'=-1.95,    x''=-0.15 wrong -> boundary
    C: x0=-0.5                                       -> misclassified
    D: x0=1,    s=+1 -> x'=2 right                   -> non-boundary
    """
    model = nn.Sequential(nn.Flatten(), nn.Linear(2, 2, bias=False))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[1.0, 0.0], [-1.0, 0.0]]))
    x = torch.tensor([[1.0, 0.0], [0.05, 0.0], [-0.5, 0.0], [1.0, 0.0]])
    shift = torch.tensor([[-2.0, 0.0], [-2.0, 0.0], [-2.0, 0.0], [1.0, 0.0]])
    return model.train(), x, torch.zeros(4, dtype=torch.long), Shift(shift)


def softplus_ce(a):
    """CE of logits (a, -a) with label 0."""
    return math.log1p(math.exp(-2 * a))


def test_raat_boundary_split_and_supervised_term():
    model, x, y, atk = raat_case()
    obj = RAAT(atk, eta=0.1)
    losses, stats = obj(model, (x, x.clone()), y)
    assert {k: v.item() for k, v in stats.items()} == {
        "boundary": 1.0, "misclassified": 1.0, "adv_correct": 1.0, "clean_correct": 3.0, "dicar_selected": 3.0}
    x_in = [-1.0, -0.15, -2.5, 2.0]  # x' except for the boundary sample B, which gets x''
    assert losses["adv"].item() == pytest.approx(sum(map(softplus_ce, x_in)) / 4, rel=1e-5)
    # an eval-mode attack is per sample: on CPU the views are attacked one by one (faster there)
    assert atk.calls == 2 and model.training
    train_mode = Shift(atk.d)
    train_mode.bn_mode = "train"                # a train-mode attack depends on its batch: one call on the pair
    RAAT(train_mode, eta=0.1)(model, (x, x.clone()), y)
    assert train_mode.calls == 1
    separate = Shift(atk.d)
    losses_sep, stats_sep = RAAT(separate, eta=0.1, joint=False)(model, (x, x.clone()), y)
    assert separate.calls == 2   # no BatchNorm here: the same values
    assert {k: v.item() for k, v in stats_sep.items()} == {k: v.item() for k, v in stats.items()}
    torch.testing.assert_close(losses_sep["adv"], losses["adv"])
    # a second view where B is far from the boundary: counts are averaged over the views
    x2 = x.clone()
    x2[1, 0] = 0.5  # x''=0.3 right
    _, stats = obj(model, (x, x2), y)
    assert stats["boundary"].item() == 0.5 and stats["misclassified"].item() == 1.0


def test_raat_eta_one_is_ce_on_x_adv():
    model, x, y, atk = raat_case()
    losses, stats = RAAT(atk, eta=1.0)(model, (x, x.clone()), y)
    x_adv = [-1.0, -1.95, -2.5, 2.0]
    assert losses["adv"].item() == pytest.approx(sum(map(softplus_ce, x_adv)) / 4, rel=1e-6)
    assert stats["boundary"].item() == 2.0  # clean right and x' wrong: A and B


def test_raat_reference_boundary_rule_needs_x_adv_wrong():
    class Ring(nn.Module):  # class 0 iff |x0| > 1: not convex, so x'' can be wrong while x' is right
        def forward(self, x):
            return torch.stack([x[:, 0] ** 2 - 1, torch.zeros_like(x[:, 0])], 1)

    x, y, atk = torch.tensor([[2.0, 0.0]]), torch.zeros(1, dtype=torch.long), Shift(torch.tensor([-4.0, 0.0]))
    paper = RAAT(atk, eta=0.5).split(Ring(), x, atk(None, x, y), y)
    code = RAAT(atk, eta=0.5, require_adv_wrong=True).split(Ring(), x, atk(None, x, y), y)
    assert paper["boundary"].tolist() == [True] and code["boundary"].tolist() == [False]


def test_raatpp_bce_on_the_reduced_inputs_kl_on_the_full_adversarial_examples():
    """Paper Table 4 / reference `mart_loss_bd`: only MART's BCE moves to x'' for boundary samples;
    β·KL(p(x)‖p(·))·(1-p_y(x)) is evaluated on the full x' of every sample."""
    model, x, y, atk = raat_case()
    losses, _ = RAATPP(atk, eta=0.1, beta=6.0)(model, (x, x.clone()), y)
    assert set(losses) == {"adv", "kl", "dicar"}
    clean = [1.0, 0.05, -0.5, 1.0]
    x_in = [-1.0, -0.15, -2.5, 2.0]     # x'' for the boundary sample B (0.05 - 0.2), x' for the others
    x_full = [-1.0, -1.95, -2.5, 2.0]   # x' for every sample
    bce = kl = 0.0
    for a, a_in, a_full in zip(clean, x_in, x_full):
        q_in = softmax_list([a_in, -a_in])
        bce += -math.log(q_in[0]) - math.log(1.0001 - q_in[1] + 1e-12)
        p, q = softmax_list([a, -a]), softmax_list([a_full, -a_full])
        kl += sum(pk * math.log(pk / (qk + 1e-12)) for pk, qk in zip(p, q)) * (1.0000001 - p[0])
    assert losses["adv"].item() == pytest.approx(bce / 4, rel=1e-5)
    assert losses["kl"].item() == pytest.approx(6.0 * kl / 4, rel=1e-5)
    # the old (wrong) form, KL on x'' for the boundary sample, differs: the test can tell them apart
    p, q_red = softmax_list([0.05, -0.05]), softmax_list([-0.15, 0.15])
    wrong_b = sum(pk * math.log(pk / qk) for pk, qk in zip(p, q_red)) * (1 - p[0])
    q_full = softmax_list([-1.95, 1.95])
    right_b = sum(pk * math.log(pk / qk) for pk, qk in zip(p, q_full)) * (1 - p[0])
    assert abs(right_b - wrong_b) * 6.0 / 4 > 1e-2
    # the KL weight: the paper's λ = 1 by default (the reference code's β = 6 is beta=6)
    default, _ = RAATPP(Shift(atk.d), eta=0.1)(model, (x, x.clone()), y)
    assert default["kl"].item() == pytest.approx(kl / 4, rel=1e-5)


def test_dicar_values(monkeypatch):
    model, x, y, atk = raat_case()
    # identical views and x' = x: the mix of the inputs is x, the target f(x): JS = 0 for any m
    losses, _ = RAAT(identity_attack)(model, (x, x.clone()), y)
    assert losses["dicar"].item() == pytest.approx(0.0, abs=1e-7)
    # a fixed m on different views: hand-computed mean JS over the selected images
    obj = RAAT(atk, lam=2.0, temperature=0.5)
    monkeypatch.setattr(obj, "draw_mix", lambda device: torch.tensor(0.3))
    x2 = x.clone()
    x2[0, 0] = 0.6  # A's second view (right); C's second view stays wrong: C is not selected
    losses, stats = obj(model, (x, x2), y)
    assert stats["dicar_selected"].item() == 3
    xa1, xa2 = atk.d + x, atk.d + x2
    hand = 0.0
    for i in (0, 1, 3):
        mix_in = 0.3 * xa1[i, 0].item() + 0.7 * xa2[i, 0].item()
        tgt = 0.3 * x[i, 0].item() + 0.7 * x2[i, 0].item()  # logits are linear in x0
        p, q = softmax_list([mix_in / 0.5, -mix_in / 0.5]), softmax_list([tgt / 0.5, -tgt / 0.5])
        mm = [(a + b) / 2 for a, b in zip(p, q)]
        hand += 0.5 * sum(a * math.log(a / c) for a, c in zip(p, mm))
        hand += 0.5 * sum(b * math.log(b / c) for b, c in zip(q, mm))
    assert losses["dicar"].item() == pytest.approx(2.0 * hand / 3, rel=1e-5)
    # m = 1: input x1', target f(x1)
    monkeypatch.setattr(obj, "draw_mix", lambda device: torch.tensor(1.0))
    losses, _ = obj(model, (x, x2), y)
    js = js_from_logits(model(xa1), model(x), 0.5)
    assert losses["dicar"].item() == pytest.approx(2.0 * (js[0] + js[1] + js[3]).item() / 3, rel=1e-5)


def test_dicar_no_nan_when_nothing_is_selected():
    model, x, y, atk = raat_case()
    x = -x.abs() - 0.1  # every clean view wrong
    obj = RAAT(atk)
    losses, stats = obj(model, (x, x.clone()), y)
    assert losses["dicar"].item() == 0.0 and stats["dicar_selected"].item() == 0
    assert stats["misclassified"].item() == 4 and stats["boundary"].item() == 0
    total = losses["adv"] + losses["dicar"]
    g, = torch.autograd.grad(total, [model[1].weight])
    assert torch.isfinite(g).all()


def test_draw_mix():
    torch.manual_seed(0)
    ms = torch.stack([RAAT(identity_attack, mix="max").draw_mix("cpu") for _ in range(200)])
    assert ((ms >= 0.5) & (ms <= 1)).all()
    mp = torch.stack([RAAT(identity_attack, mix="plain").draw_mix("cpu") for _ in range(200)])
    assert (mp < 0.5).any() and (mp > 0.5).any() and ((mp >= 0) & (mp <= 1)).all()
    assert abs(mp.mean().item() - 0.5) < 0.1


# ---------------------------------------------------------------- AWP

def test_awp_perturbation_size_direction_and_exact_restore():
    torch.manual_seed(1)
    model = create_model("small_cnn", 3, in_channels=1, input_size=8, width=4).train()
    x, y = torch.rand(8, 1, 8, 8), torch.randint(0, 3, (8,))
    atk = Shift(0.05)
    awp = AWPAT(atk, gamma=0.01)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    bufs = {n: b.clone() for n, b in model.named_buffers()}
    # the gradient direction the perturbation should follow, and BN statistics after one pass
    ref = copy.deepcopy(model)
    loss = PGDAT(Shift(0.05))(ref, x, y)[0]["adv"]
    grads = dict(zip([n for n, _ in ref.named_parameters()], torch.autograd.grad(loss, list(ref.parameters()))))
    losses, _ = awp(model, x, y)
    assert atk.calls == 1  # the adversarial examples are reused in the second pass
    for n, p in model.named_parameters():
        v = (p.detach() - before[n]).flatten()
        if p.dim() > 1:
            assert v.norm().item() == pytest.approx(0.01 * before[n].norm().item(), rel=1e-4)
            assert F.cosine_similarity(v, grads[n].flatten(), dim=0).item() == pytest.approx(1.0, abs=1e-4)
        else:
            assert torch.equal(p.detach(), before[n])
    for n, b in model.named_buffers():  # running statistics updated once (by the second pass)
        if "running" in n:
            assert not torch.equal(b, bufs[n])
    assert dict(model.named_buffers())["features.0.1.num_batches_tracked"].item() == 1
    # the returned loss is the wrapped objective's loss at the perturbed weights
    pert = copy.deepcopy(model)
    torch.testing.assert_close(losses["adv"], F.cross_entropy(pert(x + 0.05), y))
    losses["adv"].backward()
    awp.after_backward(model)
    for n, p in model.named_parameters():
        assert torch.equal(p.detach(), before[n])
        assert p.grad is not None


def test_awp_warmup_leftover_and_terms():
    torch.manual_seed(2)
    model, x, y = linear(d_in=4, k=3), torch.randn(6, 4), torch.tensor([0, 1, 2, 0, 1, 2])
    w0 = model[1].weight.detach().clone()
    awp = AWPAT(Shift(0.1), gamma=0.05, warmup_epochs=1)
    awp(model, x, y)
    assert torch.equal(model[1].weight, w0)  # epoch 0 < warmup
    awp.on_epoch(1)
    awp(model, x, y)
    assert not torch.equal(model[1].weight, w0)
    awp(model, x, y)  # the previous perturbation was never removed: it is removed first
    awp.after_backward(model)
    assert torch.equal(model[1].weight, w0)
    assert AWPVanilla(Shift(0.1)).terms == ("clean", "adv") and AWPAT(Shift(0.1)).terms == ("adv",)
    assert AWP(RAAT(Shift(0.1))).views == 2
    with pytest.raises(ValueError, match="perturb_terms"):
        AWP(PGDAT(Shift(0.1)), perturb_terms=("clean",))


def test_awp_vanilla_direction_from_adv_only():
    torch.manual_seed(3)
    model, x, y = linear(d_in=4, k=3), torch.randn(6, 4), torch.tensor([0, 1, 2, 0, 1, 2])
    w0 = model[1].weight.detach().clone()
    g, = torch.autograd.grad(F.cross_entropy(model(x + 0.1), y), [model[1].weight])
    AWPVanilla(Shift(0.1), gamma=0.02)(model, x, y)
    v = (model[1].weight.detach() - w0).flatten()
    assert F.cosine_similarity(v, g.flatten(), dim=0).item() == pytest.approx(1.0, abs=1e-5)


# ---------------------------------------------------------------- APGD

@pytest.mark.parametrize("kw,norm,eps", [
    (dict(loss="ce"), "Linf", 0.1), (dict(loss="dlr"), "Linf", 0.1),
    (dict(loss="dlr", targeted=True, n_target_classes=2), "Linf", 0.1), (dict(loss="ce"), "L2", 1.0)])
def test_apgd_stays_in_ball_and_lowers_accuracy(digits, kw, norm, eps):
    model, x, y = digits
    model = copy.deepcopy(model).train()
    atk = APGD(eps, steps=10, norm=norm, **kw)
    x_adv = atk(model, x, y)
    assert model.training and all(p.grad is None for p in model.parameters())
    d = (x_adv - x).flatten(1)
    size = d.abs().amax(1) if norm == "Linf" else d.norm(dim=1)
    assert (size <= eps * (1 + 1e-5) + 1e-6).all() and x_adv.min() >= 0 and x_adv.max() <= 1
    model.eval()
    clean, robust = accuracy(model, x, y), accuracy(model, x_adv, y)
    assert clean > 0.8 and robust < clean - 0.2
    x_adv2 = atk(model, x, y)
    assert not torch.equal(x_adv, x_adv2)  # the global RNG is not reseeded: fresh random starts


def test_apgd_arguments():
    with pytest.raises(ValueError, match="targeted"):
        APGD(0.1, loss="ce", targeted=True)
    with pytest.raises(ValueError, match="norm"):
        APGD(0.1, norm="L0")
    model = linear(d_in=4, k=2)
    with pytest.raises(ValueError, match="at least 3 classes"):
        APGD(0.1, loss="dlr")(model, torch.rand(2, 4), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="targeted APGD-DLR needs at least 4 classes; the model has 3"):
        APGD(0.1, loss="dlr", targeted=True)(linear(d_in=4, k=3), torch.rand(2, 4), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"bounds=None is not supported by APGD"):
        APGD(0.1, bounds=None)


# ---------------------------------------------------------------- every objective on a real model

def objectives(attack, device="cpu"):
    """Every objective form (RAAT's DICAR both on the selected images, the default, and on all);
    RAAT#'s averaged model on `device`, beside the trained one."""
    def averaged(obj):
        obj.bind(create_model("small_cnn", 10, in_channels=1, input_size=8, width=4).to(device).eval(), 0)
        return obj
    return {
        "trades": TRADES(attack), "trades_whole": Slots(TRADES(attack), WHOLE_TRADES),
        "mart": Slots(MART(attack), MART.slots), "clp": CLP(attack), "clp_prob": CLP(attack, pairing="prob", adv_ce=False),
        "cons_at": ConsAT(attack), "cons_at_separate": ConsAT(attack, joint=False),
        "raat": RAAT(attack), "raat_all": RAAT(attack, dicar_inputs="all"), "raat_pp": RAATPP(attack),
        "raat_probs_attack_x2": RAAT(attack, target="probs", reduced="attack", joint=False),
        "raat_sharp": averaged(RAAT(attack, decide_with="averaged", dicar_start=None, supervise="first", joint=False)),
        "avmixup": AVmixup(attack), "avmixup_slots": Slots(AVmixup(attack), AVmixup.slots),
        "awp": AWPAT(attack), "awp_trades": AWP(TRADES(attack)), "agr_awp": Slots(AWPVanilla(attack), Vanilla.slots),
    }


@pytest.mark.parametrize("name", list(objectives(None)))
def test_stats_are_counts_and_every_term_has_gradients(digits, name):
    model, x, y = digits
    model = copy.deepcopy(model).train()
    x, y = x[:32], y[:32]
    obj = objectives(PGD(0.1, steps=2))[name]
    inputs = (x, x.flip(3)) if getattr(obj, "views", 1) == 2 else x
    losses, stats = obj(model, inputs, y)
    assert set(losses) == set(obj.terms)
    params = [p for p in model.parameters()]
    for term, loss in losses.items():
        assert loss.dim() == 0 and torch.isfinite(loss)
        g = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
        assert any(gi is not None and gi.abs().sum() > 0 for gi in g), term
        assert all(gi is None or torch.isfinite(gi).all() for gi in g), term
    scale = 2 if getattr(obj, "views", 1) == 2 else 1  # two-view stats are averaged over the views
    for k, v in stats.items():
        v = v.item() * scale
        assert v == int(v) and 0 <= v <= scale * len(y), k
    if name.startswith("raat") and name != "raat_sharp":
        assert stats["dicar_selected"].item() > 0
    if hasattr(obj, "after_backward"):
        obj.after_backward(model)


_SYNCING = ("item", "tolist", "__bool__", "__float__", "__int__", "__index__", "cpu", "numpy", "nonzero")


def test_objectives_read_nothing_on_the_host(monkeypatch):
    """CPU stand-in for a CUDA sync check: any read of a tensor value on the host raises."""
    torch.manual_seed(0)
    model = create_model("small_cnn", 10, in_channels=1, input_size=8, width=4).train()
    x, y = torch.rand(8, 1, 8, 8), torch.randint(0, 10, (8,))
    objs = objectives(PGD(0.1, steps=1))
    objs["tradeskl"] = TRADES(TradesKL(0.1, 0.05, 1))

    def boom(*a, **k):
        raise AssertionError("host read of a tensor inside an objective")

    with monkeypatch.context() as m:
        for name in _SYNCING:
            m.setattr(torch.Tensor, name, boom)
        for obj in objs.values():
            obj(model, (x, x.flip(3)) if getattr(obj, "views", 1) == 2 else x, y)
            if hasattr(obj, "after_backward"):
                obj.after_backward(model)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_objectives_do_not_sync_on_cuda():
    torch.manual_seed(0)
    model = create_model("small_cnn", 10, in_channels=1, input_size=8, width=4).cuda().train()
    x, y = torch.rand(8, 1, 8, 8, device="cuda"), torch.randint(0, 10, (8,), device="cuda")
    objs = objectives(PGD(0.1, steps=1), device="cuda")
    for obj in objs.values():  # warm-up (first calls may allocate / initialise)
        obj(model, (x, x.flip(3)) if getattr(obj, "views", 1) == 2 else x, y)
        if hasattr(obj, "after_backward"):
            obj.after_backward(model)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for obj in objs.values():
            obj(model, (x, x.flip(3)) if getattr(obj, "views", 1) == 2 else x, y)
            if hasattr(obj, "after_backward"):
                obj.after_backward(model)
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_raat_dicar_reads_nothing_on_the_host(monkeypatch):
    """DICAR with the reference's batch statistics (the selected images) masks instead of compacting:
    no nonzero, no count read on the host, for either choice of DICAR inputs."""
    torch.manual_seed(0)
    model = create_model("small_cnn", 10, in_channels=1, input_size=8, width=4).train()
    x, y = torch.rand(8, 1, 8, 8), torch.randint(0, 10, (8,))
    with torch.no_grad():
        y = model.eval()(x).argmax(1)  # every clean view right: DICAR has work to do
    model.train()
    reads = []
    orig = torch.Tensor.nonzero
    monkeypatch.setattr(torch.Tensor, "nonzero", lambda self, *a, **k: reads.append(1) or orig(self, *a, **k))
    for kw in ({"dicar_inputs": "all"}, {}):
        losses, stats = RAAT(identity_attack, **kw)(model, (x, x.flip(3)), y)
        assert losses["dicar"].item() > 0 and stats["dicar_selected"].item() == 8
    assert reads == []

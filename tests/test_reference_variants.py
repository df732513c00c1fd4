"""Published variants of CA-AT, AGR, AWP, TRADES/MART, each reproducing its reference's value on a
fixed tiny batch; the reference formula is written out independently here (issue 9, item 2)."""
import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustfront.attacks import ThreatModel, PGD, TradesKL
from robustfront.combiners import AGR
from robustfront.train import TrainConfig
from robustfront.train.methods import build_method
from robustfront.train.schedule import Schedule

THREAT = ThreatModel(norm="Linf", eps=8 / 255, alpha=2 / 255, steps=2, bounds=(0.0, 1.0))


def cfg(method, **kw):
    return TrainConfig(method=method, **kw)


def shift(model, x, y):
    return (x + 0.05 * torch.sign(torch.sin(17 * x + 1))).clamp(0, 1)  # fixed, per-sample, in the box


def mlp(seed=0, bn=False):
    torch.manual_seed(seed)
    layers = [nn.Flatten(), nn.Linear(6, 8)] + ([nn.BatchNorm1d(8)] if bn else []) + [nn.ReLU(), nn.Linear(8, 3)]
    return nn.Sequential(*layers).train()


def batch(seed=1, n=8):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 6, generator=g) * 0.8 + 0.1, torch.randint(0, 3, (n,), generator=g)


# ---------------------------------------------------------------- CA-AT's reference

def test_ca_at_trades_is_the_bare_kl_of_ca_ats_code():
    model, (x, y) = mlp(), batch()
    obj, _ = build_method(cfg("ca_at_trades"), THREAT)
    obj.attack = shift
    losses, _ = obj(model, x, y)
    # CA-AT core/utils/trades.py: loss_robust = (1/B)·KLDivLoss(sum)(log_softmax(f(x')), softmax(f(x))), no β, no CE
    z, z_adv = model(x), model(shift(None, x, y))
    ref = (1.0 / len(y)) * F.kl_div(F.log_softmax(z_adv, 1), F.softmax(z, 1), reduction="sum")
    torch.testing.assert_close(losses["adv"], ref)
    torch.testing.assert_close(losses["clean"], F.cross_entropy(z, y))
    # the TRADES paper's β = 6 is one option away
    obj6, _ = build_method(cfg("ca_at_trades", opts={"beta": 6}), THREAT)
    obj6.attack = shift
    torch.testing.assert_close(obj6(model, x, y)[0]["adv"], 6 * ref)


def test_ca_at_clp_is_the_unsquared_probability_pairing_of_ca_ats_code():
    model, (x, y) = mlp(), batch()
    obj, _ = build_method(cfg("ca_at_clp"), THREAT)
    a = obj.attack
    assert isinstance(a, PGD) and a.random_start == "normal" and a.clamp_start is False and a.loss == "ce"
    obj.attack = shift
    losses, _ = obj(model, x, y)
    # CA-AT core/utils/alp.py: torch.norm(softmax(f(x')) - softmax(f(x)), p=2, dim=-1).mean(), no CE
    ref = torch.norm(F.softmax(model(shift(None, x, y)), 1) - F.softmax(model(x), 1), p=2, dim=-1).mean()
    torch.testing.assert_close(losses["adv"], ref)
    # the logit-pairing form is the plain `clp` preset: CE(x') + 0.5·mean‖f(x) - f(x')‖²
    obj, _ = build_method(cfg("clp"), THREAT)
    obj.attack = shift
    z, z_adv = model(x), model(shift(None, x, y))
    ref = F.cross_entropy(z_adv, y) + 0.5 * ((z - z_adv) ** 2).sum(1).mean()
    torch.testing.assert_close(obj(model, x, y)[0]["adv"], ref)


def test_ca_at_runs_the_clean_forward_before_the_attack():
    """CA-AT's Trainer.train: standard_loss (train-mode clean forward) first, then the attack, which
    (eval-mode BatchNorm) already sees running statistics updated by this batch."""
    x, y = batch()
    seen = {}

    def spy(model, xb, yb):
        seen["running_mean"] = model[2].running_mean.clone()
        return shift(model, xb, yb)

    for clean_first, method in ((True, "ca_at"), (False, "agr")):
        model = mlp(bn=True)
        start = model[2].running_mean.clone()
        ref = copy.deepcopy(model)
        ref(x)  # the reference order: one train-mode clean forward, then the attack
        obj, _ = build_method(cfg(method), THREAT)
        assert obj.objective.clean_first is clean_first
        obj.attack = spy
        obj(model, x, y)
        expected = ref[2].running_mean if clean_first else start
        torch.testing.assert_close(seen["running_mean"], expected)
        assert not torch.equal(ref[2].running_mean, start)


def _torch_free_onecycle(i, n, max_lr, pct, div, final):
    """OneCycleLR (two cosine phases) written from its definition."""
    lo, hi, end = max_lr / div, max_lr, max_lr / div / final
    peak = pct * n - 1
    if i <= peak:
        return hi + (lo - hi) * (1 + math.cos(math.pi * i / peak)) / 2
    return end + (hi - end) * (1 + math.cos(math.pi * (i - peak) / (n - 1 - peak))) / 2


def test_ca_at_schedule_onecycle_stepped_per_epoch():
    epochs, spe = 200, 3
    s = Schedule("onecycle_epoch", 0.4, total=epochs * spe, steps_per_epoch=spe, epochs=epochs, pct_start=0.025)
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.4)
    ref = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.4, pct_start=0.025, total_steps=epochs)
    for e in range(epochs):
        want = opt.param_groups[0]["lr"]
        assert [s.lr(e * spe + k) for k in range(spe)] == pytest.approx([want] * spe, rel=1e-12, abs=1e-15)
        assert s.lr(e * spe) == pytest.approx(_torch_free_onecycle(e, epochs, 0.4, 0.025, 25, 1e4), rel=1e-9)
        opt.step()
        if e + 1 < epochs:
            ref.step()
    assert s.lr(0) == pytest.approx(0.4 / 25) and s.lr(4 * spe) == pytest.approx(0.4)
    assert s.lr(epochs * spe - 1) == pytest.approx(0.4 / 25 / 1e4)
    with pytest.raises(ValueError, match="schedule='onecycle_epochs' is unknown"):
        Schedule("onecycle_epochs", 0.1, 10, 1)


# ---------------------------------------------------------------- attacks: starts and BatchNorm modes

class Recorder(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net, self.inputs = net, []

    def forward(self, x):
        self.inputs.append(x.detach().clone())
        return self.net(x)


@pytest.mark.parametrize("make,first", [
    (lambda c: PGD(8 / 255, 2 / 255, steps=1, random_start="normal", clamp_start=c), 0),
    (lambda c: TradesKL(8 / 255, 2 / 255, steps=1, clamp_start=c), 1),   # call 0 is p(x)
])
def test_trades_and_mart_start_is_not_clamped_before_the_first_gradient(make, first):
    x, y = torch.zeros(4, 6), torch.tensor([0, 1, 2, 0])   # on the box's lower edge
    for clamp in (False, True):
        rec = Recorder(mlp())
        torch.manual_seed(5)
        make(clamp)(rec, x, y)
        torch.manual_seed(5)
        ref = x + 0.001 * torch.randn_like(x)                   # the reference: x + 0.001·N, as is
        got = rec.inputs[first]
        if clamp:
            torch.testing.assert_close(got, ref.clamp(0, 1))
        else:
            torch.testing.assert_close(got, ref)
            assert got.min() < 0
    for name in ("trades", "mart", "raat_pp", "ca_at_trades"):
        assert build_method(cfg(name), THREAT)[0].attack.clamp_start is False, name


def test_awp_reference_attacks_with_train_mode_batchnorm():
    obj, _ = build_method(cfg("awp"), THREAT)
    assert obj.attack.bn_mode == "train"
    assert build_method(cfg("awp", attack_bn_mode="eval"), THREAT)[0].attack.bn_mode == "eval"
    assert build_method(cfg("agr_awp"), THREAT)[0].attack.bn_mode == "eval"   # AGR's PGD calls model.eval()
    x, y = batch()
    for mode, moves in (("train", True), ("eval", False)):
        model = mlp(bn=True)
        before = model[2].running_mean.clone()
        PGD(8 / 255, 2 / 255, steps=2, bn_mode=mode)(model, x, y)
        assert (not torch.equal(model[2].running_mean, before)) is moves and model.training


def test_agr_presets_attack_with_ce_pgd_from_a_uniform_start():
    for name in ("agr", "agr_trades", "agr_mart", "agr_awp", "agr_avmixup"):
        a = build_method(cfg(name), THREAT)[0].attack
        assert type(a) is PGD and a.random_start is True and a.loss == "ce" and a.clamp_start, name


def test_trades_attack_under_l2():
    """TRADES under L2 (RAAT Table 5, AGR Table 2): normalised-gradient KL ascent inside the L2 ball."""
    model, (x, y) = mlp(), batch()
    eps, alpha = 0.5, 0.3
    torch.manual_seed(3)
    x_adv = TradesKL(eps, alpha, steps=1, norm="L2", clamp_start=False)(model, x, y)
    torch.manual_seed(3)
    d0 = (0.001 * torch.randn_like(x)).requires_grad_(True)
    kl = F.kl_div(F.log_softmax(model(x + d0), 1), F.softmax(model(x), 1).detach(), reduction="sum")
    g, = torch.autograd.grad(kl, d0)
    d1 = d0.detach() + alpha * g / g.norm(dim=1, keepdim=True)
    d1 = d1 * (eps / d1.norm(dim=1, keepdim=True)).clamp(max=1)  # onto the ball; x stays inside the box here
    torch.testing.assert_close(x_adv, (x + d1).clamp(0, 1))
    assert ((x_adv - x).norm(dim=1) <= eps + 1e-6).all()
    obj, _ = build_method(cfg("trades"), ThreatModel(norm="L2", eps=eps, alpha=alpha, steps=3, bounds=(0.0, 1.0)))
    assert obj.attack.norm == "L2"


# ---------------------------------------------------------------- AGR's reference

def _pairs(seed):
    g = torch.Generator().manual_seed(seed)
    shapes = [(5, 4), (7,), (3, 3), (6,), (4, 2), (9,)]
    g_c = [torch.randn(s, generator=g) for s in shapes]
    g_a = [torch.randn(s, generator=g) * 0.3 + (0.6 if i % 2 else -0.6) * c for i, (s, c) in enumerate(zip(shapes, g_c))]
    return g_c, g_a


def _agr_reference(g_c, g_a, epoch, start, clip, *, gop_before, clip_gop, clip_gics, w=None, clip_gop_before=False):
    """AGR per tensor, written from the paper / train.py: cs <= 0 GOP, else GICS; clips as asked."""
    out = []
    for c, a in zip(g_c, g_a):
        c, a = c.double().reshape(-1), a.double().reshape(-1)
        cs = (a @ c / (a.norm() * c.norm())).item()
        started = epoch >= start
        if cs < 0 and (started or gop_before):
            G = a - (a @ c) / (c @ c) * c
            if clip_gop and (started or clip_gop_before):
                G = G * min(1.0, clip / G.norm().item())
        elif cs >= 0 and started:
            wt = cs if w is None else w
            G = wt * c + (1 - wt) * a
            if clip_gics:
                G = G * min(1.0, clip / G.norm().item())
        else:
            G = a
        out.append(G)
    return out


@pytest.mark.parametrize("clip_on,kw", [
    ("gics", dict(gop_before=True, clip_gop=False, clip_gics=True)),                       # the paper
    ("from_start", dict(gop_before=False, clip_gop=True, clip_gics=True)),                 # train.py
    ("reconstructed", dict(gop_before=True, clip_gop=True, clip_gics=True, clip_gop_before=True)),
])
def test_agr_clip_schedules(clip_on, kw):
    delay = clip_on == "from_start"  # the reference code also delays GOP (delay_gop=True)
    comb = AGR(start_epoch=2, clip=0.1, clip_on=clip_on, delay_gop=delay)
    for seed, epoch in ((0, 0), (1, 1), (2, 2), (3, 5)):
        g_c, g_a = _pairs(seed)
        comb.on_epoch(epoch)
        got = comb.combine({"clean": g_c, "adv": g_a})
        ref = _agr_reference(g_c, g_a, epoch, 2, 0.1, **kw)
        for G, R in zip(got, ref):
            torch.testing.assert_close(G.double().reshape(-1), R, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("interp,w", [("average", 0.5), ("fixed", 0.3)])
def test_agr_interpolation_ablations(interp, w):
    comb = AGR(start_epoch=0, clip=None, interp=interp, interp_scale=0.3)
    g_c, g_a = _pairs(7)
    got = comb.combine({"clean": g_c, "adv": g_a})
    ref = _agr_reference(g_c, g_a, 0, 0, 1.0, gop_before=True, clip_gop=False, clip_gics=False, w=w)
    for G, R in zip(got, ref):
        torch.testing.assert_close(G.double().reshape(-1), R, rtol=1e-5, atol=1e-6)


def test_agr_with_awp_takes_g_clean_at_the_unperturbed_weights():
    model, (x, y) = mlp(seed=2), batch(seed=3)
    obj, _ = build_method(cfg("agr_awp"), THREAT)
    obj.attack = shift
    w0 = copy.deepcopy(model)
    losses, _ = obj(model, x, y)
    params = list(model.parameters())
    g_clean = torch.autograd.grad(losses["clean"], params, retain_graph=True)
    g_adv = torch.autograd.grad(losses["adv"], params)
    obj.after_backward(model)
    # reference (AGR train.py + awp.py): v from the adversarial CE at w, layer-wise γ‖w‖·d/‖d‖ on weights
    x_adv = shift(None, x, y)
    ref_c = torch.autograd.grad(F.cross_entropy(w0(x), y), list(w0.parameters()))
    d = torch.autograd.grad(F.cross_entropy(w0(x_adv), y), list(w0.parameters()))
    pert = copy.deepcopy(w0)
    with torch.no_grad():
        for p, dp in zip(pert.parameters(), d):
            if p.dim() > 1:
                p.add_(0.01 * p.norm() / dp.norm() * dp)
    ref_a = torch.autograd.grad(F.cross_entropy(pert(x_adv), y), list(pert.parameters()))
    for g, r in zip(g_clean, ref_c):
        torch.testing.assert_close(g, r)
    for g, r in zip(g_adv, ref_a):
        torch.testing.assert_close(g, r)
    for p, q in zip(model.parameters(), w0.parameters()):
        assert torch.equal(p, q)  # weights restored exactly
    # the gradient at w differs from one at w + v: the test can tell where g_c was taken
    at_v = torch.autograd.grad(F.cross_entropy(pert(x), y), list(pert.parameters()))
    assert max((a - b).abs().max().item() for a, b in zip(at_v, ref_c)) > 1e-6

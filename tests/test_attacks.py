"""Attacks on a small CNN trained for about a second on 8x8 digits."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustfront.attacks import (ATTACKS, FGSM, PGD, ThreatModel, TradesKL, canonical, create_attack, is_official,
                                 lp_norm, project)
from robustfront.models import create_model

EPS = {"Linf": 0.1, "L2": 1.0, "L1": 2.0}  # budgets that fool part, not all, of the test digits


@pytest.fixture(scope="module")
def digits(digits_model):
    """(model in eval mode, x_test, y_test, clean accuracy)."""
    model, xt, yt = digits_model
    return model, xt, yt, accuracy(model, xt, yt)


def accuracy(model, x, y):
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def fooled(model, x_adv, y):
    with torch.no_grad():
        return model(x_adv).argmax(1) != y


ATTACK_CASES = {
    "fgsm": (lambda: FGSM(EPS["Linf"]), "Linf"),
    "pgd_linf": (lambda: PGD(EPS["Linf"], steps=10), "Linf"),
    "pgd_linf_cw": (lambda: PGD(EPS["Linf"], loss="cw", random_start="normal"), "Linf"),
    "pgd_l2": (lambda: PGD(EPS["L2"], norm="L2"), "L2"),
    "pgd_l1": (lambda: PGD(EPS["L1"], norm="L1"), "L1"),
    "trades_kl": (lambda: TradesKL(EPS["Linf"], EPS["Linf"] / 4), "Linf"),
}


@pytest.mark.parametrize("case", ATTACK_CASES)
def test_in_ball_in_box_and_effective(digits, case):
    model, x, y, clean = digits
    make, norm = ATTACK_CASES[case]
    torch.manual_seed(0)
    x_adv = make()(model, x, y)
    assert x_adv.dtype == torch.float32 and not x_adv.requires_grad and x_adv.shape == x.shape
    assert lp_norm(x_adv - x, norm).max() <= EPS[norm] * (1 + 1e-6) + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert accuracy(model, x_adv, y) < clean - 0.1


def test_pgd_beats_fgsm_and_restarts_never_hurt(digits):
    model, x, y, _ = digits
    torch.manual_seed(0)
    f_fgsm = fooled(model, FGSM(EPS["Linf"])(model, x, y), y)
    torch.manual_seed(1)
    f1 = fooled(model, PGD(EPS["Linf"], steps=10)(model, x, y), y)
    torch.manual_seed(1)  # same first restart, so per sample the 3-restart run must fool a superset
    x3 = PGD(EPS["Linf"], steps=10, restarts=3)(model, x, y)
    f3 = fooled(model, x3, y)
    assert f1.float().mean() >= f_fgsm.float().mean() - 0.01
    assert not (f1 & ~f3).any()
    assert lp_norm(x3 - x, "Linf").max() <= EPS["Linf"] + 1e-6


def test_matches_an_independent_pgd(digits):
    """Without random start PGD is deterministic: compare with the textbook loop in x-space."""
    model, x, y, _ = digits
    eps, alpha = 0.1, 0.02
    xr = x.clone()
    for _ in range(5):
        xr.requires_grad_(True)
        g, = torch.autograd.grad(F.cross_entropy(model(xr), y), xr)
        xr = torch.min(torch.max(xr.detach() + alpha * g.sign(), x - eps), x + eps).clamp(0, 1)
    ours = PGD(eps, alpha, steps=5, random_start=False)(model, x, y)
    assert (ours - xr).abs().max() < 1e-5


def test_l1_projection_matches_autoattack():
    """Exact projection onto the L1 ball ∩ [0,1] box, against the official AutoAttack routine."""
    L1_projection = pytest.importorskip("pyautoattack.autopgd_base").L1_projection
    torch.manual_seed(0)
    x = torch.rand(8, 1, 8, 8)
    x[:, :, :2], x[:, :, -2:] = 0.0, 1.0  # coordinates on both faces of the box
    v = torch.randn(8, 1, 8, 8) * 0.5
    for eps in (0.5, 4.0, 100.0):
        ours = project(v, x, eps, "L1", (0.0, 1.0))
        ref = v + L1_projection(x, v, eps).view_as(v)
        assert (ours - ref).abs().max() < 1e-5
        assert lp_norm(ours, "L1").max() <= eps * (1 + 1e-6)


@pytest.mark.parametrize("case", ["pgd_linf", "trades_kl", "fgsm"])
def test_parameter_grads_untouched(digits, case):
    model, x, y, _ = digits
    model.zero_grad(set_to_none=True)
    ATTACK_CASES[case][0]()(model, x[:32], y[:32])
    assert all(p.grad is None for p in model.parameters())
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    ATTACK_CASES[case][0]()(model, x[:32], y[:32])
    assert all(torch.equal(p.grad, torch.ones_like(p)) for p in model.parameters())
    model.zero_grad(set_to_none=True)


def test_mode_switched_and_restored(digits):
    model, x, y, _ = digits
    seen = []
    hook = model.register_forward_pre_hook(lambda m, inp: seen.append(m.training))
    bn = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    try:
        model.train()
        stats = [m.running_mean.clone() for m in bn]
        PGD(steps=2)(model, x[:16], y[:16])
        assert model.training and all(m.training for m in model.modules())
        assert not any(seen), "attack must run in eval mode by default"
        assert all(torch.equal(m.running_mean, s) for m, s in zip(bn, stats))  # BN statistics frozen
        seen.clear()
        model.eval()
        PGD(steps=2, bn_mode="train")(model, x[:16], y[:16])
        assert all(seen) and not any(m.training for m in model.modules())
        for m, s in zip(bn, stats):  # bn_mode="train" did update the running statistics; put them back
            m.running_mean.copy_(s)
        model.train()
        bn[0].eval()  # a mixed state (e.g. frozen BatchNorm) comes back exactly
        TradesKL(steps=1)(model, x[:16], y[:16])
        assert model.training and not bn[0].training and bn[1].training
    finally:
        hook.remove()
        model.eval()


def test_mode_restored_after_exception():
    class Broken(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 2)

        def forward(self, x):
            raise RuntimeError("boom")

    model = Broken().train()
    with pytest.raises(RuntimeError, match="boom"):
        PGD()(model, torch.rand(2, 4), torch.zeros(2, dtype=torch.long))
    assert model.training and model.lin.training


def test_autocast_keeps_delta_fp32(digits):
    model, x, y, clean = digits
    dtypes = []
    hook = model.register_forward_pre_hook(lambda m, inp: dtypes.append(inp[0].dtype))
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16), torch.no_grad():  # no_grad: callers in eval loops
            x_adv = PGD(EPS["Linf"], steps=5)(model, x, y)
            x_trades = TradesKL(EPS["Linf"], steps=3)(model, x, y)
    finally:
        hook.remove()
    assert set(dtypes) == {torch.float32}
    for xa in (x_adv, x_trades):
        assert xa.dtype == torch.float32
        assert lp_norm(xa - x, "Linf").max() <= EPS["Linf"] + 1e-6 and xa.min() >= 0 and xa.max() <= 1
    assert accuracy(model, x_adv, y) < clean - 0.1


def test_no_host_sync():
    """On the meta device any .item(), bool(tensor), nonzero or .tolist() raises: none may be used."""
    model = create_model("small_cnn", 10, in_channels=1, input_size=8, width=4).to("meta")
    x, y = torch.rand(4, 1, 8, 8, device="meta"), torch.zeros(4, dtype=torch.long, device="meta")
    for atk in (FGSM(), PGD(steps=2, restarts=2), PGD(norm="L2", steps=2, restarts=2),
                PGD(norm="L1", steps=2, restarts=2), PGD(loss="cw", random_start="normal"), TradesKL(steps=2)):
        assert atk(model, x, y).shape == x.shape


def test_unbounded_inputs_for_flat_data():
    """bounds=None: gaussian feature vectors outside [0,1] stay put, only the ball applies."""
    torch.manual_seed(0)
    model = create_model("mlp", 2, input_dim=6, hidden=[8])
    x, y = torch.randn(10, 6) * 3, torch.randint(0, 2, (10,))
    for norm in ("Linf", "L2", "L1"):
        x_adv = PGD(0.5, norm=norm, bounds=None)(model, x, y)
        assert lp_norm(x_adv - x, norm).max() <= 0.5 + 1e-5


VOCABULARY = ["apgd_ce", "apgd_dlr", "apgd_t", "autoattack", "autoattack_plus", "autoattack_rand", "cw", "cw0", "fab", "fab_t", "fgsm",
              "mifgsm", "pgd", "pgd_normal", "spsa", "square", "trades_kl"]


def test_registry_and_defaults():
    assert ATTACKS.names() == VOCABULARY
    assert create_attack("pgd_normal").random_start == "normal"          # MART's start
    assert create_attack("apgd_t").targeted and create_attack("apgd_dlr").loss == "dlr"
    # the threat model carries ε, norm and the box; bounds=None means unbounded inputs
    assert create_attack("fgsm", ThreatModel(eps=None)).eps == 8 / 255 and create_attack("fgsm").bounds == (0.0, 1.0)
    unbounded = ThreatModel(bounds=None)
    assert create_attack("trades_kl", unbounded).bounds is None and create_attack("pgd", unbounded).bounds is None
    pgd = create_attack("pgd", ThreatModel(norm="L2"))
    assert (pgd.eps, pgd.alpha, pgd.steps) == (128 / 255, 32 / 255, 10)
    pgd = create_attack("pgd")
    assert (pgd.eps, pgd.alpha, pgd.norm, pgd.restarts) == (8 / 255, 2 / 255, "Linf", 1)
    t = create_attack("trades_kl", ThreatModel(eps=8 / 255))
    assert (t.alpha, t.steps) == (2 / 255, 10)
    assert create_attack("fgsm").eps == 8 / 255
    assert "PGD(" in repr(pgd) and "eps=" in repr(pgd)
    with pytest.raises(ValueError, match="unknown attack .cwx.; allowed: pgd, pgdK or pgdKxR .*apgd_ce.*trades_kl"):
        create_attack("cwx")


def test_spec_grammar_threat_steps_and_aliases():
    threat = ThreatModel(eps=0.1, alpha=0.02, steps=7)
    assert create_attack("pgd", threat).steps == 7 and create_attack("apgd_ce", threat).steps == 7
    p = create_attack("pgd100x5", threat)
    assert (p.steps, p.restarts, p.alpha) == (100, 5, 0.02)
    # without steps in the threat model each attack keeps its own budget (AutoAttack's 100 for APGD, CW-30)
    assert create_attack("apgd_ce", ThreatModel()).steps == 100 and create_attack("cw", ThreatModel()).steps == 30
    assert (create_attack("cw0").kappa, create_attack("cw").kappa) == (0.0, 50.0)
    assert create_attack("spsa").iterations == 100 and create_attack("mifgsm").steps == 10
    # one underscore spelling; the official hyphenated names are aliases
    assert canonical("apgd-ce") == "apgd_ce" and canonical("autoattack-plus") == "autoattack_plus"
    assert canonical("fab-t") == "fab_t" and canonical("pgd20") == "pgd20"
    assert create_attack("fab-t").attacks == ["fab_t"] and create_attack("autoattack-plus").version == "plus"
    assert is_official("square") and is_official("apgd_t") and not is_official("pgd20")


@pytest.mark.parametrize("name,norms", [("fgsm", ("Linf",)), ("mifgsm", ("Linf",)), ("trades_kl", ("Linf", "L2"))])
def test_each_attack_declares_its_norms(name, norms):
    for norm in ("Linf", "L2", "L1"):
        if norm in norms:
            assert create_attack(name, ThreatModel(norm=norm)).norm == norm
        else:
            with pytest.raises(ValueError, match=f"norm='{norm}' is not supported; allowed: {', '.join(norms)}"):
                create_attack(name, ThreatModel(norm=norm))
    assert create_attack("pgd", ThreatModel(norm="L1")).norm == "L1"


@pytest.mark.parametrize("name", VOCABULARY)
def test_every_registered_attack_keeps_the_threat_model(digits, name):
    """For every name of the vocabulary: ‖δ‖ ≤ ε, inside [0,1], robust ≤ clean, parameter grads untouched.
    The official AutoAttack names run on 8 images at a budget that fools most of them at once (their later
    attacks then have little left to do), which keeps this walk cheap."""
    model, x, y, clean = digits
    official = is_official(name)
    n, eps = (8, 0.3) if official else (24, EPS["Linf"])
    x, y = x[:n], y[:n]
    # SPSA and the rand version (20 EOT samples per APGD step) at reduced budgets: the same code, cheaper
    kw = {"spsa": {"samples": 16, "iterations": 5}, "autoattack_rand": {"n_iter": 5}}.get(name, {})
    atk = create_attack(name, ThreatModel(eps=eps, steps=None if official else 5), **kw)
    for p in model.parameters():
        p.grad = None
    torch.manual_seed(0)
    x_adv = atk(model, x, y)
    assert x_adv.shape == x.shape and not x_adv.requires_grad
    assert lp_norm(x_adv - x, "Linf").max() <= eps * (1 + 1e-5) + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert accuracy(model, x_adv, y) <= accuracy(model, x, y) + 1e-9
    assert all(p.grad is None for p in model.parameters()), name
    if not official:  # the official ones answer robust_mask through the runner (tests/test_eval.py)
        mask, _ = atk.robust_mask(model, x, y, batch_size=10, seed=0)
        assert mask.shape == y.shape and mask.float().mean() <= accuracy(model, x, y) + 1e-9


@pytest.mark.parametrize("make, match", [
    (lambda: PGD(eps=-0.1), r"eps=-0.1 is invalid; allowed: a finite number >= 0"),
    (lambda: PGD(eps=math.nan), r"eps=nan"),
    (lambda: PGD(alpha=0), r"alpha=0 is invalid; allowed: a finite number > 0"),
    (lambda: PGD(steps=0), r"steps=0 is invalid; allowed: an integer >= 1"),
    (lambda: PGD(steps=2.5), r"steps=2.5"),
    (lambda: PGD(restarts=0), r"restarts=0"),
    (lambda: PGD(norm="L3"), r"norm='L3' is unknown; allowed: Linf, L2, L1"),
    (lambda: PGD(loss="mse"), r"loss='mse' is unknown; allowed: ce, cw"),
    (lambda: PGD(random_start="gauss"), r"random_start='gauss'"),
    (lambda: PGD(l1_top=1.5), r"l1_top=1.5"),
    (lambda: PGD(kappa=-1), r"kappa=-1"),
    (lambda: PGD(bn_mode="frozen"), r"bn_mode='frozen' is unknown; allowed: eval, train"),
    (lambda: PGD(bounds=(1, 0)), r"bounds=\(1, 0\) is invalid"),
    (lambda: FGSM(eps=-1), r"eps=-1"),
    (lambda: TradesKL(steps=0), r"steps=0"),
    (lambda: TradesKL(eps=-1), r"eps=-1"),
])
def test_bad_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_batch_mismatch():
    with pytest.raises(ValueError, match="x has 3 samples but y has 2"):
        FGSM()(nn.Linear(4, 2), torch.rand(3, 4), torch.zeros(2, dtype=torch.long))


def test_zero_eps_is_identity(digits):
    model, x, y, _ = digits
    for atk in (FGSM(0.0), PGD(0.0), PGD(0.0, alpha=0.1, norm="L1"), TradesKL(0.0, alpha=0)):
        assert torch.equal(atk(model, x[:8], y[:8]), x[:8])

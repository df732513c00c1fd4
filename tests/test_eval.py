"""Evaluation: our attacks against an independent implementation, the suite's ordering, the six
sanity checks (a gradient-masking model is flagged, an adversarially trained one passes), metrics,
ε sweeps, mean ± std, AutoAttack's warnings and class-count limits, unbounded inputs, per-module
modes, and the analysis helpers. Tiny CNNs trained here on 8x8 digits in seconds; linear models
on 8x8 blobs where the numbers do not matter."""
import logging
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustfront.attacks import FGSM, MIFGSM, PGD, SPSA, ThreatModel, create_attack, names_help
from robustfront.eval import aggregate, evaluate, mean_nrr, sanity_check
from robustfront.eval import sanity as sanity_mod
from robustfront.models import create_model

EPS = 32 / 255


def _train(x, y, adversarial: bool, epochs: int, seed: int = 0):
    torch.manual_seed(seed)
    model = create_model("small_cnn", 10, in_channels=1, input_size=8, width=8)
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    atk = PGD(EPS, alpha=EPS / 3, steps=5)
    for _ in range(epochs):
        perm = torch.randperm(len(y))
        for i in range(0, len(y), 64):
            xb, yb = x[perm[i:i + 64]], y[perm[i:i + 64]]
            if adversarial:
                xb = atk(model, xb, yb)
            model.train()
            opt.zero_grad()
            F.cross_entropy(model(xb), yb).backward()
            opt.step()
    model.eval().zero_grad(set_to_none=True)
    return model


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits
    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32)[:, None] / 16
    y = torch.tensor(d.target)
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(len(y), generator=g)
    tr, te = perm[:1400], perm[1400:]
    std = _train(x[tr], y[tr], False, 6)
    # 12 epochs: shorter PGD-AT leaves a rough loss surface on which APGD beats PGD-20 by 5-8 points
    adv = _train(x[tr], y[tr], True, 12)
    return {"std": std, "adv": adv, "x": x[te][:100], "y": y[te][:100]}


class Quantised(nn.Module):
    """x → floor(4x)/4 before the model: piecewise constant, so every input gradient is exactly 0."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(torch.floor(x * 4) / 4)


class Scaled(nn.Module):
    """Logits × `factor`: softmax saturates, so cross-entropy input gradients vanish (masking) while the
    decision, and the scale-free DLR loss of APGD-T, stay the same."""

    def __init__(self, model, factor: float):
        super().__init__()
        self.model, self.factor = model, factor

    def forward(self, x):
        return self.model(x) * self.factor


class Softmaxed(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x).softmax(1)


def blobs(k: int, n: int = 40, unbounded: bool = False):
    """n images 1x8x8 in k classes around random centres; in [0,1] unless `unbounded` (Gaussian data)."""
    g = torch.Generator().manual_seed(k)
    centres = 0.4 + 0.2 * torch.rand(k, 1, 8, 8, generator=g)
    y = torch.arange(n) % k
    x = centres[y] + 0.3 * torch.randn(n, 1, 8, 8, generator=g)
    return (x if unbounded else x.clamp(0, 1)), y


def linear(x, y, k: int):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(x[0].numel(), k))
    opt = torch.optim.Adam(model.parameters(), 0.05)
    for _ in range(100):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval().requires_grad_(False)


def acc(model, x, y):
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


# --- an independent reference: torchattacks if installed (pip install --no-deps torchattacks), else 15 lines here

def _reference(name, model, x, y, eps):
    try:
        import torchattacks
    except ImportError:
        torchattacks = None
    if torchattacks is not None:
        atk = {"fgsm": lambda: torchattacks.FGSM(model, eps=eps),
               "pgd": lambda: torchattacks.PGD(model, eps=eps, alpha=eps / 4, steps=20, random_start=True),
               "mifgsm": lambda: torchattacks.MIFGSM(model, eps=eps, alpha=eps / 10, steps=10, decay=1.0)}[name]()
        return atk(x, y)
    steps, alpha = {"fgsm": (1, eps), "pgd": (20, eps / 4), "mifgsm": (10, eps / 10)}[name]
    x_adv = x + torch.empty_like(x).uniform_(-eps, eps) if name == "pgd" else x.clone()
    x_adv, g = x_adv.clamp(0, 1), torch.zeros_like(x)
    for _ in range(steps):
        x_adv.requires_grad_(True)
        grad, = torch.autograd.grad(F.cross_entropy(model(x_adv), y), x_adv)
        if name == "mifgsm":
            g = g + grad / grad.abs().mean((1, 2, 3), keepdim=True)
            grad = g
        x_adv = torch.min(torch.max(x_adv.detach() + alpha * grad.sign(), x - eps), x + eps).clamp(0, 1)
    return x_adv.detach()


@pytest.mark.parametrize("name", ["fgsm", "pgd", "mifgsm"])
def test_our_attacks_match_an_independent_implementation(digits, name):
    model, x, y = digits["std"], digits["x"], digits["y"]
    ours = {"fgsm": FGSM(EPS), "pgd": PGD(EPS, alpha=EPS / 4, steps=20), "mifgsm": MIFGSM(EPS)}[name]
    torch.manual_seed(0)
    a_ours = acc(model, ours(model, x, y), y)
    torch.manual_seed(1)
    a_ref = acc(model, _reference(name, model, x, y, EPS), y)
    assert a_ours < acc(model, x, y) - 0.2  # the budget matters on this model
    tol = 0.011 if name != "pgd" else 0.05   # deterministic attacks: at most one image (float ties); PGD: random start
    assert abs(a_ours - a_ref) <= tol, (a_ours, a_ref)
    for p in model.parameters():
        assert p.grad is None  # input gradients only


def test_suite_order_autoattack_pgd_fgsm_and_metrics(digits):
    model, x, y = digits["adv"], digits["x"][:30], digits["y"][:30]
    res = evaluate(model, x, y, ["fgsm", "pgd20", "mifgsm", "cw", "autoattack"], eps=EPS, seed=0)
    ra = res["robust_acc"]
    assert ra["autoattack"] <= ra["pgd20"] + 1e-9 <= ra["fgsm"] + 1e-9 <= res["clean_acc"] + 1e-9
    assert res["worst_case_acc"] <= min(ra.values()) + 1e-9
    assert res["ra_source"] == "autoattack"
    sa, r = res["clean_acc"], ra["autoattack"]
    assert res["mean"] == pytest.approx((sa + r) / 2) and res["nrr"] == pytest.approx(2 * sa * r / (sa + r))
    assert {"clean_acc", "robust_acc", "worst_case_acc", "n", "eps", "norm", "seed", "time_s", "autoattack_log"} <= set(res)


def test_mean_nrr_formulas():
    assert mean_nrr(0.8, 0.4) == pytest.approx((0.6, 2 * 0.32 / 1.2))
    assert mean_nrr(0.0, 0.0) == (0.0, 0.0)
    assert mean_nrr(0.5, 0.5) == pytest.approx((0.5, 0.5))


def test_eps_sweep_shape_and_monotone(digits):
    model, x, y = digits["adv"], digits["x"][:50], digits["y"][:50]
    eps = [0.0, 8 / 255, 16 / 255, 32 / 255]
    res = evaluate(model, x, y, ["pgd10", "fgsm"], eps=eps)
    assert res["eps"] == eps and len(res["sweep"]) == 4
    assert [s["eps"] for s in res["sweep"]] == eps and all(set(s["robust_acc"]) == {"pgd10", "fgsm"} for s in res["sweep"])
    assert res["sweep"][0]["robust_acc"]["pgd10"] == res["sweep"][0]["clean_acc"]
    pgd = [s["robust_acc"]["pgd10"] for s in res["sweep"]]
    assert all(b <= a + 0.04 for a, b in zip(pgd, pgd[1:]))


def test_aggregate_mean_std():
    mk = lambda c, p: {"clean_acc": c, "robust_acc": {"pgd20": p}, "worst_case_acc": p, "eps": 0.1, "n": 10,
                       "mean": (c + p) / 2, "nrr": mean_nrr(c, p)[1], "ra_source": "worst_case"}
    a = aggregate([mk(0.9, 0.4), mk(0.8, 0.5), mk(0.7, 0.6)])
    assert a["clean_acc"]["mean"] == pytest.approx(0.8) and a["clean_acc"]["std"] == pytest.approx(0.1)
    assert a["robust_acc"]["pgd20"]["mean"] == pytest.approx(0.5) and a["n_checkpoints"] == 3
    sw = aggregate([{"eps": [0.1, 0.2], "sweep": [mk(0.9, 0.4), mk(0.9, 0.3)]}] * 2)
    assert len(sw["sweep"]) == 2 and sw["sweep"][1]["robust_acc"]["pgd20"]["std"] == 0


def test_spsa_is_gradient_free_and_beats_masking(digits):
    """SPSA fools the quantised model though every input gradient is zero (PGD-20 cannot)."""
    q, x, y = Quantised(digits["std"]), digits["x"][:50], digits["y"][:50]
    torch.manual_seed(0)
    a_pgd = acc(q, PGD(EPS, steps=20)(q, x, y), y)
    a_spsa = acc(q, SPSA(EPS, iterations=30, samples=32)(q, x, y), y)
    assert a_spsa < a_pgd - 0.1, (a_spsa, a_pgd)


def test_sanity_flags_gradient_masking_and_passes_adversarial_training(digits):
    x, y = digits["x"], digits["y"]  # 100 images: with 50, one image is 2 points and the checks get noisy
    good = sanity_check(digits["adv"], x, y, eps=EPS)
    assert good["passed"], good["checks"]
    assert [c["name"] for c in good["checks"]] == ["monotone_in_eps", "more_steps_not_weaker",
                                                   "gradient_free_not_stronger", "fgsm_pgd_autoattack_order",
                                                   "apgd_agrees_with_pgd", "input_gradients"]
    bad = sanity_check(Quantised(digits["adv"]), x, y, eps=EPS)
    assert not bad["passed"]
    failed = {c["name"] for c in bad["checks"] if not c["passed"]}
    assert "input_gradients" in failed and failed & {"monotone_in_eps", "gradient_free_not_stronger"}


def test_landscape_and_boundary(digits):
    from robustfront.analysis.boundary import boundary_distance
    from robustfront.analysis.landscape import loss_landscape_1d
    model, x, y = digits["std"], digits["x"][:20], digits["y"][:20]
    before = [p.clone() for p in model.parameters()]
    alphas, losses = loss_landscape_1d(model, x, y, alphas=[-0.5, 0.0, 0.5])
    assert alphas == [-0.5, 0.0, 0.5] and all(math.isfinite(v) for v in losses)
    assert losses[1] == pytest.approx(F.cross_entropy(model(x), y).item(), rel=1e-4)
    assert losses[1] <= max(losses[0], losses[2])  # a trained minimum
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    d = boundary_distance(model, x[:5], directions=50, max_steps=128)
    assert d["min"].shape == (5,) and (d["min"] > 0).all()
    assert ((d["min"] * 255).round() - d["min"] * 255).abs().max() < 1e-3 or torch.isinf(d["min"]).any()


# --- review fixes

def test_autoattack_warnings_are_returned_and_printed(capsys):
    x, y = blobs(10)
    model = linear(x, y, 10)
    res = evaluate(Softmaxed(model), x, y, ["apgd-ce"], eps=0.05)   # the official spelling is an alias
    assert any("probability distribution" in w for w in res["autoattack_warnings"]), res["autoattack_warnings"]
    assert all(w.startswith("apgd_ce: ") for w in res["autoattack_warnings"])
    assert "autoattack warning: it seems that the output is a probability distribution" in capsys.readouterr().err
    assert evaluate(model, x, y, ["apgd-ce"], eps=0.05)["autoattack_warnings"] == []
    logger = logging.getLogger("auto-attack")
    assert logger.handlers == [] and logger.propagate  # the adapter leaves the logger as it found it


def test_autoattack_with_few_classes(capsys):
    x, y = blobs(3)
    model = linear(x, y, 3)
    res = evaluate(model, x, y, ["autoattack", "autoattack_plus"], eps=0.05)
    assert res["autoattack_skipped"]["autoattack"] == {"apgd_t": "needs >= 4 classes"}
    assert set(res["autoattack_skipped"]["autoattack_plus"]) == {"apgd_t"}  # APGD-DLR runs on 3 classes
    assert "dropped apgd_t (needs >= 4 classes)" in capsys.readouterr().err
    assert res["robust_acc"]["autoattack"] <= res["clean_acc"]
    with pytest.raises(ValueError, match="'apgd_t'.*K=3.*needs >= 4 classes"):
        evaluate(model, x, y, ["apgd-t"], eps=0.05)
    x2, y2 = blobs(2)
    model2 = linear(x2, y2, 2)
    with pytest.raises(ValueError, match="'apgd_dlr'.*K=2.*needs >= 3 classes"):
        evaluate(model2, x2, y2, ["apgd-dlr"], eps=0.05)
    res2 = evaluate(model2, x2, y2, ["fab-t", "autoattack"], eps=0.05)  # FAB-T: one target class is enough
    assert set(res2["autoattack_skipped"]["autoattack"]) == {"apgd_t"}


def test_unbounded_inputs():
    x, y = blobs(3, unbounded=True)
    assert x.min() < 0 and x.max() > 1
    model = linear(x, y, 3)
    eps = 0.3
    res = evaluate(model, x, y, ["fgsm", "pgd10", "mifgsm", "cw0", "spsa"], eps=eps, bounds=None)
    assert res["bounds"] is None and all(0 <= a <= res["clean_acc"] for a in res["robust_acc"].values())
    for name in ("fgsm", "pgd10", "mifgsm", "spsa"):
        x_adv = create_attack(name, ThreatModel(eps=eps, bounds=None))(model, x, y)
        assert (x_adv - x).abs().max() <= eps + 1e-6, name
        assert x_adv.min() < 0 and x_adv.max() > 1, name  # not clamped to [0,1]
    with pytest.raises(ValueError, match="'autoattack'.*bounds=None"):
        evaluate(model, x, y, ["pgd10", "autoattack"], eps=eps, bounds=None)
    with pytest.raises(ValueError, match="bounds=None.*sanity_check"):
        sanity_check(model, x, y, eps=eps, bounds=None)


def test_sanity_square_runs_under_l1():
    x, y = blobs(10)
    model = linear(x, y, 10)
    a = sanity_mod._square(model, x, y, 8.0, "L1", 0, 500, n_queries=200)
    assert not math.isnan(a) and a < acc(model, x, y)


def test_monotone_check_uses_the_running_minimum():
    grid = [0, 1, 2, 3, 4, 5]
    assert sanity_mod.monotone_violations(grid, [0.5, 0.52, 0.54, 0.56, 0.58, 0.0], 0.03) == [2, 3, 4]
    assert sanity_mod.monotone_violations(grid, [0.5, 0.52, 0.49, 0.51, 0.2, 0.0], 0.03) == []


def test_sanity_flags_saturated_logits(digits):
    """Logits × 1e4 mask cross-entropy gradients: Square, SPSA and APGD-T beat PGD-20 by far."""
    s = sanity_check(Scaled(digits["adv"], 1e4), digits["x"], digits["y"], eps=EPS)
    failed = {c["name"] for c in s["checks"] if not c["passed"]}
    assert {"gradient_free_not_stronger", "apgd_agrees_with_pgd"} <= failed, s["checks"]


def test_sanity_fails_check_6_on_autoattack_zero_gradient_warnings(monkeypatch):
    x, y = blobs(10)
    q = Quantised(linear(x, y, 10))
    # hide our own zero-gradient count: check 6 must still fail on AutoAttack's own warning
    monkeypatch.setattr(sanity_mod, "input_gradient_stats", lambda *a: {"zero": 0, "nonfinite": 0, "n": len(y)})
    s = sanity_check(q, x, y, eps=0.05)
    c6 = next(c for c in s["checks"] if c["name"] == "input_gradients")
    assert not c6["passed"] and "about zero gradients" in c6["detail"], c6
    assert any("zero gradient" in w for w in s["autoattack_warnings"])


def test_cw0_is_cw_with_kappa_zero():
    assert create_attack("cw0", ThreatModel(eps=0.1)).kappa == 0.0
    assert create_attack("cw", ThreatModel(eps=0.1)).kappa == 50.0
    assert "cw0" in names_help()
    x, y = blobs(3)
    res = evaluate(linear(x, y, 3), x, y, ["cw", "cw0"], eps=0.05)
    assert set(res["robust_acc"]) == {"cw", "cw0"}


def test_evaluate_and_boundary_restore_each_modules_mode():
    from robustfront.analysis.boundary import boundary_distance
    x, y = blobs(3)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.Dropout(0.5), nn.Linear(16, 3))
    model.train()
    model[2].eval()  # e.g. a frozen part inside a model in train mode
    before = [m.training for m in model.modules()]
    evaluate(model, x, y, ["fgsm", "pgd10"], eps=0.05)
    assert [m.training for m in model.modules()] == before
    boundary_distance(model, x[:2], directions=10, max_steps=4)
    assert [m.training for m in model.modules()] == before


def test_a_papers_step_size_and_iterations_are_part_of_the_request(tmp_path):
    """alpha/steps (e.g. PGD-10 at step 2/225, a 10-iteration APGD-CE) run exactly those budgets: the same
    masks as the attack built by hand; the state folder refuses to resume under another step size."""
    from robustfront.eval import EvalConfig
    x, y = blobs(3, n=24)
    model = linear(x, y, 3)
    cfg = EvalConfig(attacks=["pgd10", "apgd_ce", "cw"], eps=["8/255"], norm="Linf", alpha="2/225", steps=3,
                     state=str(tmp_path / "s"))
    res = evaluate(model, x, y, cfg).raw
    for name, steps in (("pgd10", 10), ("apgd_ce", 3), ("cw", 3)):   # a count in the name wins over steps
        atk = create_attack(name, ThreatModel(eps=8 / 255, alpha=2 / 225, steps=3))
        torch.manual_seed(0)
        ok, _ = atk.robust_mask(model, x, y, batch_size=500, seed=0)
        assert res["robust_acc"][name] == ok.float().mean().item(), name
        assert res["attack_settings"][name]["steps"] == steps
    assert res["attack_settings"]["pgd10"]["alpha"] == pytest.approx(2 / 225)
    default = evaluate(model, x, y, cfg.replace(alpha=None, steps=None, state=None, no_state=True)).raw
    assert default["attack_settings"]["pgd10"]["alpha"] == pytest.approx(2 / 255)
    with pytest.raises(ValueError, match="written for alpha=.2/225"):
        evaluate(model, x, y, cfg.replace(alpha="1/255"))
    for bad, match in ((dict(alpha="0"), "alpha=0"), (dict(steps=0), "steps=0"),
                       (dict(attacks=["pgd10", "autoattack"], alpha="1/255"), "official AutoAttack")):
        with pytest.raises(ValueError, match=match):
            EvalConfig(**bad)

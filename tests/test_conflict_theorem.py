"""CA-AT Theorem 1: gradient conflict μ = O(δ²) (L2) and faster growth with d under L∞."""
import importlib.util
import json
import math
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustfront.analysis import (gradient_conflict, linear_worst_case, main_theorem1, plot_theorem1,
                                  theorem1_experiment)
from robustfront.combiners.ca_at import ca_at_diagnostics

BUDGETS = (0.0, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3)
FIT_MAX = 1e-2
HAS_MPL = importlib.util.find_spec("matplotlib") is not None


@pytest.fixture(scope="module")
def result():
    return theorem1_experiment(dims=(10, 100), budgets=BUDGETS, n=2000, seed=0, steps=20, fit_max=FIT_MAX)


def _series(result, norm, dim):
    return [r for r in result["rows"] if r["norm"] == norm and r["dim"] == dim]


def _mu(result, norm, dim, delta):
    return next(r["mu"] for r in _series(result, norm, dim) if r["delta"] == delta)


def test_result_is_plain_json(result):
    text = json.dumps(result)
    back = json.loads(text)
    assert set(back) >= {"rows", "fits", "settings", "d_dependence", "pgd_check"}
    assert set(back["rows"][0]) >= {"norm", "dim", "delta", "mu", "cos", "norm_clean", "norm_adv"}
    assert set(back["fits"][0]) >= {"norm", "dim", "slope", "intercept"}
    assert len(back["rows"]) == 2 * 2 * len(BUDGETS)


def test_fitted_slope_is_two(result):
    assert {(f["norm"], f["dim"]) for f in result["fits"]} == {(n, d) for n in ("L2", "Linf") for d in (10, 100)}
    for f in result["fits"]:
        assert f["n_points"] == 5 and f["delta_max"] == FIT_MAX
        assert 1.7 <= f["slope"] <= 2.3, f


def test_mu_nonnegative_and_zero_at_zero_budget(result):
    for r in result["rows"]:
        assert r["mu"] >= 0.0 and math.isfinite(r["mu"])
        if r["delta"] == 0.0:
            assert r["mu"] == 0.0 and r["cos"] == 1.0 and r["norm_adv"] == r["norm_clean"]


def test_mu_grows_monotonically_with_delta(result):
    for norm in ("L2", "Linf"):
        for dim in (10, 100):
            mus = [r["mu"] for r in sorted(_series(result, norm, dim), key=lambda r: r["delta"])]
            assert all(b > a for a, b in zip(mus, mus[1:])), (norm, dim, mus)


def test_linf_conflict_grows_with_d_faster_than_l2(result):
    for delta in (1e-4, 1e-3, 1e-2):
        growth_linf = _mu(result, "Linf", 100, delta) / _mu(result, "Linf", 10, delta)
        growth_l2 = _mu(result, "L2", 100, delta) / _mu(result, "L2", 10, delta)
        assert growth_linf > 3 * growth_l2, (delta, growth_linf, growth_l2)
        # and at equal δ the L∞ conflict exceeds the L2 one more in higher dimension
        ratio10 = _mu(result, "Linf", 10, delta) / _mu(result, "L2", 10, delta)
        ratio100 = _mu(result, "Linf", 100, delta) / _mu(result, "L2", 100, delta)
        assert ratio100 > 3 * ratio10 > 3
    dep = {e["norm"]: e["d_exponent"] for e in result["d_dependence"]}
    assert dep["Linf"] > dep["L2"] + 0.5
    assert dep["Linf/L2"] > 0.5


def test_exact_linear_worst_case_matches_pgd(result):
    pc = result["pgd_check"]
    assert pc["n_compared"] == 2 * 2 * (len(BUDGETS) - 1)
    assert abs(pc["max_rel_loss_gap"]) < 1e-2 and abs(pc["max_rel_mu_diff"]) < 1e-2
    for r in result["rows"]:
        if r["delta"] > 0:
            # the exact maximiser is never beaten (up to PGD's fp32 rounding of x')
            assert r["loss_adv_pgd"] <= r["loss_adv"] + 1e-6 * abs(r["loss_adv"])
            assert r["loss_adv"] > r["loss_clean"]


def test_linear_worst_case_geometry_and_optimality():
    torch.manual_seed(0)
    lin = nn.Linear(7, 2).double()
    x = torch.randn(64, 7, dtype=torch.float64)
    y = torch.randint(0, 2, (64,))
    for norm, delta in (("L2", 0.3), ("Linf", 0.05)):
        x_adv = linear_worst_case(lin, x, y, delta, norm)
        d = x_adv - x
        size = d.norm(dim=1) if norm == "L2" else d.abs().amax(1)
        torch.testing.assert_close(size, torch.full((64,), delta, dtype=torch.float64))
        worst = F.cross_entropy(lin(x_adv), y, reduction="none")
        for _ in range(20):  # no random feasible point of the ball does better, per sample
            r = torch.randn_like(x)
            r = r * delta / r.norm(dim=1, keepdim=True) if norm == "L2" else delta * r.sign()
            assert (F.cross_entropy(lin(x + r), y, reduction="none") <= worst + 1e-12).all()
    with pytest.raises(ValueError, match="allowed"):
        linear_worst_case(lin, x, y, 0.1, "L1")


def test_gradient_conflict_matches_ca_at_diagnostics():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3))
    x = torch.randn(32, 5)
    y = torch.randint(0, 3, (32,))
    x_adv = x + 0.3 * torch.randn_like(x)
    r = gradient_conflict(model, F.cross_entropy, x, y, x_adv)
    params = list(model.parameters())

    def flat(inp):
        return torch.cat([g.reshape(-1) for g in torch.autograd.grad(F.cross_entropy(model(inp), y), params)])

    ref = ca_at_diagnostics(flat(x), flat(x_adv), gamma=0.8)
    assert r["mu"] > 0
    for k in ("mu", "cos", "norm_clean", "norm_adv"):
        assert r[k] == pytest.approx(float(ref[k]), rel=1e-5), k
    assert all(p.grad is None for p in params)  # .grad untouched
    # x' = x: no conflict at all, exactly
    r0 = gradient_conflict(model, F.cross_entropy, x, y, x.clone())
    assert r0["mu"] == 0.0 and r0["cos"] == 1.0


def test_bad_arguments():
    for kw in ({"norms": ("L1",)}, {"budgets": (-0.1,)}, {"model": "mlp"}, {"dims": ()}, {"fit_max": 0}):
        with pytest.raises(ValueError, match="allowed|need"):
            theorem1_experiment(**kw)


def test_threads_restored():
    before = torch.get_num_threads()
    theorem1_experiment(dims=(3,), budgets=(0.0, 1e-3, 1e-2), n=200, steps=0, model="bayes", threads=1)
    assert torch.get_num_threads() == before


def test_main_writes_json_and_png(tmp_path, capsys):
    out = tmp_path / "theorem1"
    res = main_theorem1(out, dims=(5, 20), budgets=(0.0, 1e-3, 3e-3, 1e-2), n=500, steps=5)
    printed = capsys.readouterr().out
    assert "slope" in printed and "Linf" in printed and "L2" in printed
    data = json.loads((out / "theorem1.json").read_text())
    assert len(data["rows"]) == 2 * 2 * 4 and len(data["fits"]) == 4
    assert data["settings"]["dims"] == [5, 20]
    assert res["files"]["json"] == str(out / "theorem1.json")
    if HAS_MPL:
        png = out / "theorem1.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
        assert res["files"]["png"] == str(png)
    else:
        pytest.skip("matplotlib is not installed: PNG not checked")


def test_plot_without_matplotlib_says_how_to_fix(tmp_path, monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes any matplotlib import fail
    res = {"rows": [], "fits": [], "settings": {}}
    with pytest.raises(ImportError, match="pip install matplotlib"):
        plot_theorem1(res, tmp_path / "x.png")

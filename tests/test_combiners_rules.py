"""Property tests of the CA-AT and AGR gradient-combination rules (docs/methods/ca_at.md, agr.md).

Every expectation is computed independently here in float64 from the definitions.
"""
from __future__ import annotations

import math

import pytest
import torch

from robustfront.combiners.agr import AGR, agr_diagnostics, agr_update
from robustfront.combiners.ca_at import CAAT, ca_at_diagnostics, ca_at_update

TOL = 1e-5


def _at(combiner, epoch):
    """The combiner after the trainer's start-of-epoch hook for `epoch` (0-based)."""
    combiner.on_epoch(epoch)
    return combiner


def _cos64(u, v):
    u, v = u.double().reshape(-1), v.double().reshape(-1)
    return (u @ v / (u.norm() * v.norm())).item()


def _orth64(v, c):
    """v minus its projection on c, in float64."""
    v, c = v.double().reshape(-1), c.double().reshape(-1)
    return v - (v @ c) / (c @ c) * c


def _check_ca_at(g_c, g_a, gamma, g):
    """Assert the CA-AT contract for one pair and its output g."""
    assert g.shape == g_c.shape and g.dtype == g_c.dtype
    assert torch.isfinite(g).all()
    phi = _cos64(g_a, g_c)
    if phi >= gamma or gamma == 1.0:
        assert torch.equal(g, g_c)
        return
    na = g_a.double().norm().item()
    sin_phi = math.sqrt(max(0.0, 1 - phi * phi))
    expected_norm = na * sin_phi / math.sqrt(1 - gamma * gamma)
    assert g.double().norm().item() == pytest.approx(expected_norm, rel=TOL, abs=TOL * na)
    if sin_phi > 1e-3:  # otherwise g* ≈ 0 (g_a ∥ -g_c, e.g. one-element tensors) and its angle is noise
        assert _cos64(g, g_c) == pytest.approx(gamma, abs=TOL)
    # the component of g_a orthogonal to g_c is kept
    torch.testing.assert_close(_orth64(g, g_c), _orth64(g_a, g_c), rtol=0, atol=TOL * na / math.sqrt(g.numel()) * 10)


# ---------------------------------------------------------------- CA-AT: the pure rule

def test_ca_at_many_random_pairs():
    gen = torch.Generator().manual_seed(0)
    n_proj = n_keep = 0
    for _ in range(300):
        d = int(torch.randint(2, 2000, (), generator=gen))
        g_c = torch.randn(d, generator=gen) * 10 ** float(torch.empty(()).uniform_(-3, 3, generator=gen))
        lam = float(torch.empty(()).uniform_(-3, 3, generator=gen))
        noise = float(torch.empty(()).uniform_(0.01, 2, generator=gen))
        g_a = lam * g_c + noise * g_c.norm() / math.sqrt(d) * torch.randn(d, generator=gen)
        gamma = float(torch.empty(()).uniform_(0, 0.99, generator=gen))
        g = ca_at_update(g_c, g_a, gamma)
        _check_ca_at(g_c, g_a, gamma, g)
        if _cos64(g_a, g_c) < gamma:
            n_proj += 1
        else:
            n_keep += 1
    assert n_proj > 50 and n_keep > 50  # both branches exercised


def _unit(d, i):
    e = torch.zeros(d)
    e[i] = 1.0
    return e


@pytest.mark.parametrize("case", ["nearly_opposite", "orthogonal", "identical", "slightly_inside", "slightly_outside"])
@pytest.mark.parametrize("gamma", [0.0, 0.5, 0.8, 0.99])
def test_ca_at_adversarial_angles(case, gamma):
    gen = torch.Generator().manual_seed(1)
    g_c = torch.randn(4096, generator=gen)
    u = torch.randn(4096, generator=gen)
    u = _orth64(u, g_c).float()
    u = u / u.norm() * g_c.norm()  # |u| = |g_c|, u ⊥ g_c
    th = math.acos(gamma)
    g_a = {"nearly_opposite": -g_c + 1e-2 * u,  # φ ≈ -0.99995
           "orthogonal": 3 * u, "identical": g_c.clone(),
           "slightly_inside": math.cos(th - 1e-3) * g_c + math.sin(th - 1e-3) * u,
           "slightly_outside": math.cos(th + 1e-3) * g_c + math.sin(th + 1e-3) * u}[case]
    _check_ca_at(g_c, g_a, gamma, ca_at_update(g_c, g_a, gamma))


def test_ca_at_exactly_orthogonal_unit_vectors():
    g_c, g_a = _unit(10, 0), 2 * _unit(10, 1)
    g = ca_at_update(g_c, g_a, 0.8)
    # g* = g_a + k g_c with k = |g_a| γ / (|g_c| √(1-γ²)) = 2·0.8/0.6
    torch.testing.assert_close(g, g_a + (2 * 0.8 / 0.6) * g_c)


def test_ca_at_gamma_zero_removes_the_conflicting_part():
    g_c = torch.randn(500, generator=torch.Generator().manual_seed(2))
    g_a = -0.7 * g_c + 0.1 * torch.randn(500, generator=torch.Generator().manual_seed(3))
    g = ca_at_update(g_c, g_a, 0.0)  # γ = 0 is the projection of g_a onto g_c's orthogonal complement
    torch.testing.assert_close(g.double(), _orth64(g_a, g_c), rtol=0, atol=1e-5)


@pytest.mark.parametrize("gamma", [0.0, 0.8, 1.0])
def test_ca_at_zero_vectors_give_no_nan(gamma):
    g = torch.randn(100, generator=torch.Generator().manual_seed(4))
    z = torch.zeros(100)
    # zero g_c: φ := 0; projected (0 < γ < 1) gives g_a, otherwise the rule returns g_c = 0
    out_zc = ca_at_update(z, g, gamma)
    assert torch.isfinite(out_zc).all()
    assert torch.equal(out_zc, g if 0 < gamma < 1 else z)
    out_za = ca_at_update(g, z, gamma)  # |g*| = |g_a|√(1-φ²)/√(1-γ²) = 0 when projected
    assert torch.isfinite(out_za).all()
    assert torch.equal(out_za, z if 0 < gamma < 1 else g)
    assert torch.equal(ca_at_update(z, z, gamma), z)
    for d in ca_at_diagnostics(z, g, gamma).values():
        assert torch.isfinite(d.double()).all()


def test_ca_at_extremely_opposite_limited_by_fp32_cancellation():
    # g_a = -g_c + 1e-4·u: g* = g_a + k·g_c cancels to ~1e-4 of its inputs in fp32, so the
    # cone angle holds to ~1e-4 only (the error grows like 1e-8/sin φ), and the result stays finite.
    gen = torch.Generator().manual_seed(11)
    g_c = torch.randn(4096, generator=gen)
    u = _orth64(torch.randn(4096, generator=gen), g_c)
    g_a = -g_c + (1e-4 * u / u.norm() * g_c.double().norm()).float()
    g = ca_at_update(g_c, g_a, 0.8)
    assert torch.isfinite(g).all()
    assert _cos64(g, g_c) == pytest.approx(0.8, abs=1e-3)


def test_ca_at_negligible_g_clean_counts_as_zero():
    gen = torch.Generator().manual_seed(12)
    g_c, g_a = torch.randn(100, generator=gen), torch.randn(100, generator=gen)
    # |g_c| ≤ eps·|g_a|: its direction is noise, and k = |g_a|/|g_c|·(...) would overflow fp32
    assert torch.equal(ca_at_update(1e-30 * g_c, 1e10 * g_a, 0.8), 1e10 * g_a)
    _check_ca_at(1e-6 * g_c, 1e4 * g_a, 0.8, ca_at_update(1e-6 * g_c, 1e4 * g_a, 0.8))  # ratio 1e-10 > eps


def test_ca_at_exactly_opposite_is_zero():
    g_c = torch.randn(64, generator=torch.Generator().manual_seed(5))
    g = ca_at_update(g_c, -2 * g_c, 0.8)  # φ = -1: the orthogonal part of g_a is 0, so is g*
    assert torch.isfinite(g).all() and g.norm() < 1e-5 * g_c.norm()


def test_ca_at_gamma_one_returns_g_clean():
    gen = torch.Generator().manual_seed(6)
    g_c, g_a = torch.randn(1000, generator=gen), torch.randn(1000, generator=gen)
    for a in (g_a, -g_c, g_c, torch.zeros(1000)):
        out = ca_at_update(g_c, a, 1.0)
        assert torch.equal(out, g_c)
    assert torch.equal(ca_at_update(torch.zeros(5), g_a[:5], 1.0), torch.zeros(5))
    d = ca_at_diagnostics(g_c, g_a, 1.0)
    assert not bool(d["projected"]) and all(torch.isfinite(v.double()) for v in d.values())


@pytest.mark.parametrize("gamma", [-0.1, 1.0000001, 2.0, float("nan"), float("inf")])
def test_ca_at_gamma_out_of_range_raises(gamma):
    with pytest.raises(ValueError, match=r"gamma=.*allowed: \[0, 1\]"):
        ca_at_update(torch.ones(3), torch.ones(3), gamma)
    with pytest.raises(ValueError, match=r"gamma="):
        CAAT(gamma=gamma)


@pytest.fixture(scope="module")
def big_pair():
    gen = torch.Generator().manual_seed(7)
    g_c = torch.randn(10_000_000, generator=gen)
    return g_c, -0.3 * g_c + torch.randn(10_000_000, generator=gen)


@pytest.mark.parametrize("scale_c,scale_a", [(1e-20, 1e-20), (1e20, 1e20), (1e-3, 1e3)])
def test_ca_at_10m_elements_fp32_extreme_scales(big_pair, scale_c, scale_a):
    # fp32 squares of 1e-20 underflow and of 1e20 overflow: only fp64 accumulation passes
    g_c, g_a = big_pair[0] * scale_c, big_pair[1] * scale_a
    g = ca_at_update(g_c, g_a, 0.8)
    assert torch.isfinite(g).all()
    cd, ad = g_c.double(), g_a.double()
    cc, aa, ac = (cd @ cd).item(), (ad @ ad).item(), (ad @ cd).item()
    phi = ac / math.sqrt(aa * cc)
    dd = g.double() - ad  # must be parallel to g_c (orthogonal part of g_a kept)
    del ad
    dc = (dd @ cd).item()
    gc_dot = ac + dc
    g_norm = math.sqrt(aa + 2 * (dd @ g_a.double()).item() + (dd @ dd).item())
    assert gc_dot / (g_norm * math.sqrt(cc)) == pytest.approx(0.8, abs=TOL)
    orth_err = ((dd @ dd).item() - dc * dc / cc) ** 0.5 if (dd @ dd).item() > dc * dc / cc else 0.0
    assert orth_err <= TOL * math.sqrt(aa - ac * ac / cc)
    assert g_norm == pytest.approx(math.sqrt(aa) * math.sqrt(1 - phi**2) / 0.6, rel=TOL)
    d = ca_at_diagnostics(g_c, g_a, 0.8)
    assert d["cos"].item() == pytest.approx(phi, abs=1e-9) and bool(d["projected"])
    assert d["mu"].item() == pytest.approx(math.sqrt(cc * aa) * (1 - phi), rel=1e-9)


def test_ca_at_diagnostics_values():
    g_c, g_a = torch.tensor([3.0, 0.0]), torch.tensor([0.0, 4.0])
    d = ca_at_diagnostics(g_c, g_a, 0.5)
    assert d["cos"].item() == 0.0 and d["norm_clean"].item() == 3.0 and d["norm_adv"].item() == 4.0
    assert d["mu"].item() == 12.0 and bool(d["projected"])
    assert not bool(ca_at_diagnostics(g_c, g_c, 0.5)["projected"])


# ---------------------------------------------------------------- shared fixtures for lists

SHAPES = [(8, 3, 3, 3), (8,), (8,), (16, 8, 3, 3), (16,), (10, 64), (10,), (1,), (5, 5)]


def _pair_lists(seed, signs=None):
    """Gradient lists with per-tensor cosines of both signs and norms around the clip value."""
    gen = torch.Generator().manual_seed(seed)
    g_c, g_a = [], []
    for i, s in enumerate(SHAPES):
        c = torch.randn(s, generator=gen)
        sign = signs[i] if signs is not None else (1 if torch.rand((), generator=gen) < 0.5 else -1)
        a = sign * float(torch.empty(()).uniform_(0.2, 2, generator=gen)) * c + torch.randn(s, generator=gen)
        f = 10 ** float(torch.empty(()).uniform_(-3, 0.5, generator=gen)) / c.norm()
        g_c.append(c * f)
        g_a.append(a * f * float(torch.empty(()).uniform_(0.3, 3, generator=gen)))
    return g_c, g_a


def _cosines(g_c, g_a):
    return [_cos64(a, c) for a, c in zip(g_a, g_c)]


# ---------------------------------------------------------------- AGR: the pure rule

def test_agr_gop_and_gics_branches_unclipped():
    for seed in range(20):
        g_c, g_a = _pair_lists(seed)
        out = agr_update(g_c, g_a, clip=None)
        for c, a, G, psi in zip(g_c, g_a, out, _cosines(g_c, g_a)):
            assert G.shape == c.shape and torch.isfinite(G).all()
            scale = a.double().norm() + c.double().norm()
            if psi < 0:  # GOP: orthogonal to g_c, equal to g_a minus its projection on g_c
                assert abs((G.double().reshape(-1) @ c.double().reshape(-1)).item()) <= TOL * scale * c.double().norm()
                torch.testing.assert_close(G.double().reshape(-1), _orth64(a, c), rtol=0, atol=TOL * scale)
            else:  # GICS
                ref = psi * c.double() + (1 - psi) * a.double()
                torch.testing.assert_close(G.double(), ref, rtol=0, atol=TOL * scale)


def test_agr_both_signs_present():
    psis = [p for s in range(20) for p in _cosines(*_pair_lists(s))]
    assert min(psis) < -0.1 and max(psis) > 0.1


@pytest.mark.parametrize("clip", [0.1, 1e-3, 1.0])
def test_agr_clip_bounds_each_tensor(clip):
    for seed in range(10):
        g_c, g_a = _pair_lists(seed)
        free = agr_update(g_c, g_a, clip=None)
        out = agr_update(g_c, g_a, clip=clip)
        n_clipped = 0
        for G, F in zip(out, free):
            nG, nF = G.double().norm().item(), F.double().norm().item()
            assert nG <= clip * (1 + TOL)
            if nF <= clip:
                torch.testing.assert_close(G, F)
            else:  # rescaled, same direction
                n_clipped += 1
                assert nG == pytest.approx(clip, rel=TOL) and _cos64(G, F) == pytest.approx(1, abs=TOL)
    if clip == 0.1:
        assert n_clipped > 0


def test_agr_flags_off_leave_plain_g_adv():
    g_c, g_a = _pair_lists(3)
    psis = _cosines(g_c, g_a)
    assert any(p < 0 for p in psis) and any(p >= 0 for p in psis)
    no_gics = agr_update(g_c, g_a, gics=False, clip=None)
    no_gop = agr_update(g_c, g_a, gop=False, clip=None)
    full = agr_update(g_c, g_a, clip=None)
    for a, G1, G2, F, psi in zip(g_a, no_gics, no_gop, full, psis):
        if psi < 0:
            torch.testing.assert_close(G1, F)  # GOP still on
            assert torch.equal(G2, a)
        else:
            assert torch.equal(G1, a)
            torch.testing.assert_close(G2, F)  # GICS still on
    # both off: plain g_a, not clipped by default, clipped with clip_plain=True
    for G, a in zip(agr_update(g_c, g_a, gics=False, gop=False, clip=0.1), g_a):
        assert torch.equal(G, a)
    for G, a in zip(agr_update(g_c, g_a, gics=False, gop=False, clip=0.1, clip_plain=True), g_a):
        assert G.double().norm().item() <= 0.1 * (1 + TOL) and _cos64(G, a) == pytest.approx(1, abs=TOL)


def test_agr_zero_tensors_and_invalid_clip():
    g = torch.randn(20, generator=torch.Generator().manual_seed(8))
    z = torch.zeros(20)
    out = agr_update([z, g, z], [g, z, z], clip=None)
    assert all(torch.isfinite(o).all() for o in out)
    assert torch.equal(out[0], g) and torch.equal(out[1], z) and torch.equal(out[2], z)
    out = agr_update([z], [g], clip=0.1)  # ψ := 0 → GICS = g_a, then clipped
    assert out[0].norm().item() == pytest.approx(0.1, rel=TOL)
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="clip="):
            agr_update([g], [g], clip=bad)
        with pytest.raises(ValueError, match="clip="):
            AGR(clip=bad)


def test_agr_diagnostics_function():
    g_c, g_a = _pair_lists(4)
    psis = _cosines(g_c, g_a)
    d = agr_diagnostics(g_c, g_a)
    torch.testing.assert_close(d["cos"], torch.tensor(psis, dtype=torch.float64), rtol=0, atol=1e-12)
    frac = sum(p < 0 for p in psis) / len(psis)
    assert d["gop_frac"].item() == pytest.approx(frac) and d["neg_frac"].item() == pytest.approx(frac)
    assert agr_diagnostics(g_c, g_a, gop=False)["gop_frac"].item() == 0.0


# ---------------------------------------------------------------- the stateful combiners

def test_agr_epoch_gating_paper_variant():
    comb = AGR(start_epoch=3, clip=None)
    g_c, g_a = _pair_lists(5)
    psis = _cosines(g_c, g_a)
    before = _at(comb, 2).combine({"clean": g_c, "adv": g_a})
    after = _at(comb, 3).combine({"clean": g_c, "adv": g_a})
    full = agr_update(g_c, g_a, clip=None)
    for a, B, A, F, psi in zip(g_a, before, after, full, psis):
        torch.testing.assert_close(A, F)
        if psi < 0:  # GOP from the start
            torch.testing.assert_close(B, F)
        else:  # GICS only from start_epoch
            assert torch.equal(B, a)


def test_agr_epoch_gating_reference_variant():
    # the reference code: both branches and the clip from start_epoch, plain unclipped g_a before it
    comb = AGR(start_epoch=3, delay_gop=True, clip=0.1, clip_on="from_start")
    g_c, g_a = _pair_lists(6)
    before = _at(comb, 2).combine({"clean": g_c, "adv": g_a})
    assert all(torch.equal(B, a) for B, a in zip(before, g_a))  # plain, unclipped g_a
    after = _at(comb, 10).combine({"clean": g_c, "adv": g_a})
    for A, F in zip(after, agr_update(g_c, g_a, clip=0.1)):
        torch.testing.assert_close(A, F)


@pytest.mark.parametrize("delay_gop", [False, True])
def test_agr_diagnostics_hand_counted(delay_gop):
    comb = AGR(start_epoch=2, delay_gop=delay_gop)
    gop = neg = total = 0
    layer = [0.0] * len(SHAPES)
    steps = [(seed, epoch) for seed, epoch in zip(range(12), [0, 0, 1, 1, 1, 2, 2, 3, 3, 4, 4, 5])]
    for seed, epoch in steps:
        g_c, g_a = _pair_lists(seed)
        _at(comb, epoch).combine({"clean": g_c, "adv": g_a})
        psis = _cosines(g_c, g_a)
        n_neg = sum(p < 0 for p in psis)
        neg += n_neg
        gop += n_neg if (epoch >= 2 or not delay_gop) else 0
        total += len(psis)
        layer = [s + p for s, p in zip(layer, psis)]
    d = comb.pop_diagnostics()
    assert 0 < gop < total
    assert d["gop_freq"] == pytest.approx(gop / total)
    assert d["neg_frac"] == pytest.approx(neg / total)
    assert d["layer_cos"] == pytest.approx([s / len(steps) for s in layer], abs=1e-9)
    assert d["cos_mean"] == pytest.approx(sum(layer) / total, abs=1e-9)
    assert comb.pop_diagnostics() == {}  # reset after a pop


def _flat(xs):
    return torch.cat([x.reshape(-1) for x in xs])


@pytest.mark.parametrize("gamma", [0.0, 0.5, 0.8, 0.95, 1.0])
def test_ca_at_combiner_flat_matches_rule_on_concatenation(gamma):
    comb = CAAT(gamma=gamma)
    assert comb.separate and comb.terms == ("clean", "adv")
    sums = {"cos": 0.0, "mu": 0.0, "norm_clean": 0.0, "norm_adv": 0.0}
    n_proj = 0
    seeds = range(8)
    for seed in seeds:
        signs = [(-1) ** (seed + i) for i in range(len(SHAPES))] if seed % 2 else [1] * len(SHAPES)
        g_c, g_a = _pair_lists(seed, signs=signs if seed < 4 else [-1] * len(SHAPES))
        if seed == 0:  # one step well inside the cone
            g_a = [2 * c + 1e-3 * a for c, a in zip(g_c, g_a)]
        out = _at(comb, 0).combine({"clean": g_c, "adv": g_a})
        assert [o.shape for o in out] == [c.shape for c in g_c]
        ref = ca_at_update(_flat(g_c), _flat(g_a), gamma)
        torch.testing.assert_close(_flat(out), ref)
        _check_ca_at(_flat(g_c), _flat(g_a), gamma, _flat(out))
        d = ca_at_diagnostics(_flat(g_c), _flat(g_a), gamma)
        for k in sums:
            sums[k] += d[k].item()
        n_proj += bool(d["projected"])
    d = comb.pop_diagnostics()
    for k, v in sums.items():
        assert d[k] == pytest.approx(v / len(seeds), rel=1e-6, abs=1e-9)
    assert d["projected_frac"] == pytest.approx(n_proj / len(seeds))
    if 0 < gamma < 1:
        assert 0 < n_proj < len(seeds)
    assert comb.pop_diagnostics() == {}


def test_ca_at_combiner_per_tensor():
    comb = CAAT(gamma=0.8, per_tensor=True)
    n_proj = total = 0
    for seed in range(5):
        g_c, g_a = _pair_lists(seed)
        out = _at(comb, 7).combine({"clean": g_c, "adv": g_a})
        for c, a, o in zip(g_c, g_a, out):
            torch.testing.assert_close(o, ca_at_update(c, a, 0.8))
            _check_ca_at(c, a, 0.8, o)
            n_proj += _cos64(a, c) < 0.8
            total += 1
    d = comb.pop_diagnostics()
    assert 0 < n_proj < total
    assert d["projected_frac"] == pytest.approx(n_proj / total)


# ---------------------------------------------------------------- no host synchronisation

_SYNCING = ("item", "tolist", "__bool__", "__float__", "__int__", "__index__", "cpu", "numpy")


def test_combine_reads_nothing_on_the_host(monkeypatch):
    """CPU stand-in for the CUDA sync check: any read of a tensor value on the host raises."""
    g_c, g_a = _pair_lists(9)
    grads = {"clean": g_c, "adv": g_a}
    combs = [CAAT(0.8), CAAT(0.8, per_tensor=True), CAAT(1.0), AGR(start_epoch=1), AGR(1, delay_gop=True)]

    def boom(*a, **k):
        raise AssertionError("host read of a tensor inside combine")

    with monkeypatch.context() as m:
        for name in _SYNCING:
            m.setattr(torch.Tensor, name, boom)
        for comb in combs:
            _at(comb, 0).combine(grads)
            _at(comb, 1).combine(grads)
        ca_at_update(g_c[0], g_a[0], 0.8)
        agr_update(g_c, g_a)
    assert all(comb.pop_diagnostics() for comb in combs)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_combine_does_not_sync_on_cuda():
    g_c, g_a = _pair_lists(10)
    grads = {"clean": [g.cuda() for g in g_c], "adv": [g.cuda() for g in g_a]}
    combs = [CAAT(0.8), CAAT(0.8, per_tensor=True), AGR(start_epoch=1), AGR(1, delay_gop=True)]
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        outs = [_at(c, e).combine(grads) for c in combs for e in (0, 1)]
    finally:
        torch.cuda.set_sync_debug_mode("default")
    cpu = {"clean": g_c, "adv": g_a}
    ref_combs = [CAAT(0.8), CAAT(0.8, per_tensor=True), AGR(start_epoch=1), AGR(1, delay_gop=True)]
    refs = [_at(c, e).combine(cpu) for c in ref_combs for e in (0, 1)]
    for out, ref in zip(outs, refs):
        for o, r in zip(out, ref):
            torch.testing.assert_close(o.cpu(), r, rtol=1e-5, atol=1e-7)
    for c in combs:
        assert c.pop_diagnostics()

"""RAAT / RAAT++ / RAAT#, Cons-AT and AVmixup against their reference code's computation, written out
here with index lists as the references do, on a BatchNorm model where the batch composition of
the train-mode forwards matters (issue 9, items 1, 2 and 4)."""
import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustfront.attacks import PGD, AttackFn
from robustfront.objectives.avmixup import AVmixup
from robustfront.objectives.cons_at import ConsAT
from robustfront.objectives.raat import RAAT, RAATPP


def bn_model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3)).train()


def views(seed=1, n=12):
    g = torch.Generator().manual_seed(seed)
    x1 = torch.rand(n, 6, generator=g) * 0.8 + 0.1
    x2 = (x1 + 0.1 * torch.randn(n, 6, generator=g)).clamp(0, 1)
    return x1, x2, torch.randint(0, 3, (n,), generator=g)


@AttackFn  # declares what objectives read of an attack (bn_mode, bounds)
def attack(model, x, y):
    """Row-wise and deterministic, so one call on the concatenated views equals one call per view."""
    return (x + 0.3 * torch.sign(torch.sin(13 * x + 2))).clamp(0, 1)


def jsd_reference(logit1, logit2, T):
    """Cons-AT / RAAT training/__init__.py `_jensen_shannon_div` (clamped mean, batchmean)."""
    p1, p2 = F.softmax(logit1 / T, 1), F.softmax(logit2 / T, 1)
    log_m = torch.log((0.5 * (p1 + p2)).clamp(min=1e-8))
    return 0.5 * (F.kl_div(log_m, p1, reduction="batchmean") + F.kl_div(log_m, p2, reduction="batchmean"))


def bce_reference(logits, y):
    probs = F.softmax(logits, 1)
    top2 = torch.argsort(probs, 1)[:, -2:]
    new_y = torch.where(top2[:, -1] == y, top2[:, -2], top2[:, -1])
    return F.cross_entropy(logits, y) + F.nll_loss(torch.log(1.0001 - probs + 1e-12), new_y)


def raat_reference(model, x1, x2, y, *, eta, m, lam, T, plus=False, beta=6.0, rule_adv_wrong=True):
    """adv_train_bd.py / adv_mart_bd.py of the RAAT reference on one batch, with a given mixup rate."""
    pair, labels = torch.cat([x1, x2]), y.repeat(2)
    adv = attack(model, pair, labels)
    red = pair + eta * (adv - pair)
    model.eval()
    with torch.no_grad():
        pb, pa, pr = (model(t).argmax(1).numpy() for t in (pair, adv, red))
    model.train()
    lab = labels.numpy()
    idx = np.arange(len(lab))
    mis = idx[pb != lab]
    bd = idx[(pb == lab) & (pr != lab) & ((pa != lab) if rule_adv_wrong else True)]
    non = np.sort(np.array(sorted(set(idx) - set(mis) - set(bd)), dtype=int))
    data = torch.cat((adv[non], red[bd], adv[mis]))
    lab_ce = torch.cat((labels[non], labels[bd], labels[mis]))
    out = {}
    if plus:  # mart_loss_bd: the KL on the full x' of every sample, the BCE on the rebuilt set
        logits_adv, logits = model(adv), model(pair)
        nat = F.softmax(logits, 1)
        true = nat.gather(1, labels[:, None]).squeeze()
        kl = F.kl_div(torch.log(F.softmax(logits_adv, 1) + 1e-12), nat, reduction="none").sum(1)
        out["kl"] = beta * (kl * (1.0000001 - true)).sum() / len(lab)
        out["adv"] = bce_reference(model(data), lab_ce)
    else:
        out["adv"] = F.cross_entropy(model(data), lab_ce)
    n = len(y)
    bad = {i for i in mis if i < n} | {i - n for i in mis if i >= n}
    ict = np.sort(np.array(sorted(set(range(n)) - bad), dtype=int))
    a1, a2 = adv.chunk(2)
    out_mix = model(m * a1[ict] + (1 - m) * a2[ict])
    b1, b2 = model(pair).chunk(2)
    out["dicar"] = lam * jsd_reference(out_mix, m * b1[ict] + (1 - m) * b2[ict], T)
    return out, len(ict)


@pytest.mark.parametrize("plus", [False, True])
def test_raat_joint_batches_and_selected_dicar_reproduce_the_reference(plus):
    model, (x1, x2, y) = bn_model(), views()
    ref, n_sel = raat_reference(copy.deepcopy(model), x1, x2, y, eta=0.5, m=0.7, lam=1.0, T=0.5, plus=plus)
    assert 0 < n_sel < len(y)  # some, not all images selected: the DICAR batch is a strict subset
    cls = RAATPP if plus else RAAT
    obj = cls(attack, eta=0.5, beta=6.0, require_adv_wrong=True)
    obj.draw_mix = lambda device: torch.tensor(0.7)
    losses, stats = obj(copy.deepcopy(model), (x1, x2), y)
    assert stats["dicar_selected"].item() == n_sel
    for k in ref:
        torch.testing.assert_close(losses[k], ref[k], rtol=1e-5, atol=1e-6)
    # the other batch compositions differ on a BatchNorm model: the test can tell them apart
    for kw in ({"joint": False}, {"dicar_inputs": "all"}):
        other = cls(attack, eta=0.5, beta=6.0, require_adv_wrong=True, **kw)
        other.draw_mix = lambda device: torch.tensor(0.7)
        got, _ = other(copy.deepcopy(model), (x1, x2), y)
        key = "dicar" if "dicar_inputs" in kw else "adv"
        assert abs(got[key].item() - ref[key].item()) > 1e-4, kw


def test_cons_at_joint_forward_reproduces_the_reference():
    model, (x1, x2, y) = bn_model(3), views(4)
    pair = torch.cat([x1, x2])
    ref_model = copy.deepcopy(model)
    out = ref_model(attack(ref_model, pair, y.repeat(2)))       # adv_train_consistency.py: one 2B forward
    o1, o2 = out.chunk(2)
    ref = F.cross_entropy(out, y.repeat(2)) + 1.0 * jsd_reference(o1, o2, 0.5)
    got = ConsAT(attack)(copy.deepcopy(model), (x1, x2), y)[0]["adv"]
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-6)
    sep = ConsAT(attack, joint=False)(copy.deepcopy(model), (x1, x2), y)[0]["adv"]
    assert abs(sep.item() - ref.item()) > 1e-4


def test_dicar_target_as_the_papers_probability_mix():
    model, (x1, x2, y) = bn_model(5), views(6)
    obj = RAAT(attack, target="probs", lam=2.0, temperature=0.5, joint=False, dicar_inputs="all")
    obj.draw_mix = lambda device: torch.tensor(0.3)
    m = copy.deepcopy(model)
    losses, stats = obj(m, (x1, x2), y)
    # Eq. 15-16: JS(p_T(f(m·x1' + (1-m)·x2')) ‖ m·p_T(f(x1)) + (1-m)·p_T(f(x2))) over the selected images
    r = copy.deepcopy(model)
    a1, a2 = attack(r, x1, y), attack(r, x2, y)
    r.eval()
    with torch.no_grad():
        sel = (r(x1).argmax(1) == y) & (r(x2).argmax(1) == y)
    r.train()
    c1, c2 = r(x1), r(x2)   # train mode: each output depends on its own batch only, not on the order
    p = F.softmax(r(0.3 * a1 + 0.7 * a2) / 0.5, 1)
    q = 0.3 * F.softmax(c1 / 0.5, 1) + 0.7 * F.softmax(c2 / 0.5, 1)
    mm = 0.5 * (p + q)
    js = 0.5 * ((p * (p / mm).log()).sum(1) + (q * (q / mm).log()).sum(1))
    ref = 2.0 * (js * sel.float()).sum() / sel.float().sum()
    assert stats["dicar_selected"].item() == sel.sum().item() > 0
    torch.testing.assert_close(losses["dicar"], ref, rtol=1e-5, atol=1e-6)
    logit_mix = RAAT(attack, lam=2.0, joint=False, dicar_inputs="all")
    logit_mix.draw_mix = lambda device: torch.tensor(0.3)
    assert abs(logit_mix(copy.deepcopy(model), (x1, x2), y)[0]["dicar"].item() - ref.item()) > 1e-5


def test_reduced_example_as_an_attack_within_eta_eps():
    """The paper's Eq. 8: x'' maximises the loss inside the η·ε ball (reduced="attack")."""
    model, (x1, x2, y) = bn_model(7), views(8)
    eps, eta = 0.2, 0.25
    pgd = PGD(eps, eps / 4, steps=3)
    obj = RAAT(pgd, eta=eta, reduced="attack", joint=False)
    torch.manual_seed(11)
    obj(copy.deepcopy(model), (x1, x2), y)  # a copy: its train-mode forwards move the BatchNorm statistics
    s1, _ = obj.last_adv["split"]
    x_adv1 = obj.last_adv["x_adv"][0]
    assert (s1["x_red"] - x1).abs().max() <= eta * eps + 1e-6
    # the same random stream: view 1's attack, view 2's attack, then view 1's reduced attack
    torch.manual_seed(11)
    a1 = pgd(model, x1, y)
    pgd(model, x2, y)
    ref = PGD(eta * eps, eta * eps / 4, steps=3)(model, x1, y)
    torch.testing.assert_close(x_adv1, a1)
    torch.testing.assert_close(s1["x_red"], ref)
    scaled = RAAT(pgd, eta=eta, joint=False)
    scaled(model, (x1, x2), y)
    s1, _ = scaled.last_adv["split"]
    torch.testing.assert_close(s1["x_red"], x1 + eta * (scaled.last_adv["x_adv"][0] - x1))


def test_raat_sharp_decides_with_the_averaged_model_and_starts_dicar_with_it():
    online, averaged = bn_model(0), bn_model(9).eval()
    x1, x2, y = views(2)
    with torch.no_grad():
        y = averaged(x1).argmax(1)  # every first view right for the averaged model
    obj = RAAT(attack, decide_with="averaged", dicar_start=None, supervise="first", joint=False)
    with pytest.raises(ValueError, match=r"decide_with='averaged' \(RAAT#\) needs the averaged model"):
        obj(online, (x1, x2), y)
    obj.bind(averaged, start_epoch=3)
    obj.on_epoch(2)
    losses, stats = obj(online, (x1, x2), y)
    assert stats["misclassified"].item() == 0.5 * (averaged(x2).argmax(1) != y).sum().item()  # the averaged model's
    assert losses["dicar"].item() == 0.0                       # before the averaging start
    obj.on_epoch(3)
    losses, stats = obj(online, (x1, x2), y)
    assert stats["dicar_selected"].item() > 0 and losses["dicar"].item() > 0
    # supervise="first": the supervised term is view 1's only (the RAAT# reference)
    s1 = obj.last_adv["split"][0]
    x_in = torch.where(s1["boundary"][:, None], s1["x_red"], obj.last_adv["x_adv"][0])
    torch.testing.assert_close(losses["adv"], F.cross_entropy(copy.deepcopy(online)(x_in), y), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="dicar_start=None means 'from the averaging start'"):
        RAAT(attack, dicar_start=None)(online, (x1, x2), y)


def label_smoothing_reference(onehot, n_classes, factor):
    """The AVmixup PyTorch code's (and AGR tools.py's) label smoothing."""
    return onehot * factor + (onehot - 1) * ((factor - 1) / (n_classes - 1))


def test_avmixup_soft_labels_and_agrs_hard_label_variant():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 3)).train()
    g = torch.Generator().manual_seed(2)
    x, y = torch.rand(5, 6, generator=g), torch.tensor([0, 1, 2, 1, 0])
    x_adv = (x + 0.05 * torch.randn(5, 6, generator=g)).clamp(0, 1)
    a = torch.rand(5, generator=g)
    adv = {"x_adv": x_adv, "a": a}  # fixed attack output and mixing draws
    x_av = (x + 2.0 * (x_adv - x)).clamp(0, 1)
    x_mix = a[:, None] * x + (1 - a[:, None]) * x_av
    onehot = torch.eye(3)[y]
    target = a[:, None] * label_smoothing_reference(onehot, 3, 0.5) + (1 - a[:, None]) * label_smoothing_reference(onehot, 3, 0.7)
    ref_soft = torch.mean(torch.sum(-target * F.log_softmax(model(x_mix), 1), 1))
    soft = AVmixup(None)(model, x, y, adv)[0]["adv"]
    torch.testing.assert_close(soft, ref_soft)
    hard = AVmixup(None, labels="hard")(model, x, y, adv)[0]["adv"]
    torch.testing.assert_close(hard, F.cross_entropy(model(x_mix), y))   # AGR train.py: loss_fc(out, targets)
    assert abs(soft.item() - hard.item()) > 1e-3


def _conv_bn(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3),
                         nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 16),
                         nn.BatchNorm1d(16), nn.Linear(16, 4)).train()


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_masked_batch_statistics_equal_a_forward_of_the_selected_images(channels_last, device):
    """batch_stats_from(mask): the selected images' outputs, the parameters' gradients of a loss over
    them and the running statistics are those of a forward of x[mask] alone (the compaction the
    reference does, which needs the count on the host). On CUDA in exact fp32 (TF32 off)."""
    from robustfront.device import exact_fp32
    from robustfront.models.masked_bn import batch_stats_from
    with exact_fp32():
        _masked_vs_compact(channels_last, torch.device(device), batch_stats_from)


def _masked_vs_compact(channels_last, device, batch_stats_from):
    x = torch.rand(10, 3, 8, 8).to(device)
    keep = torch.tensor([1, 0, 1, 1, 0, 0, 1, 1, 0, 1], dtype=torch.bool, device=device)
    compact, masked = _conv_bn().to(device), _conv_bn().to(device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
        masked = masked.to(memory_format=torch.channels_last)
    ref = compact(x[keep])
    with batch_stats_from(keep):
        got = masked(x)
    torch.testing.assert_close(got[keep], ref, rtol=1e-5, atol=1e-5)
    g_ref = torch.autograd.grad(ref.square().mean(), list(compact.parameters()))
    g_got = torch.autograd.grad(torch.where(keep[:, None], got, 0).square().sum() / keep.sum() / ref.shape[1],
                                list(masked.parameters()))
    for a, b in zip(g_got, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    for a, b in zip(masked.buffers(), compact.buffers()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)     # running mean, var; num_batches_tracked
    # eval-mode BatchNorm is untouched; under two selected images the running statistics stay
    before = [b.clone() for b in masked.buffers()]
    with batch_stats_from(torch.arange(10, device=device) == 3):
        masked(x)
    assert all(torch.equal(a, b) for a, b in zip(list(masked.buffers())[:2], before[:2]))
    masked.eval()
    plain = masked(x)
    with batch_stats_from(keep):
        torch.testing.assert_close(masked(x), plain, rtol=0, atol=0)


def test_selected_dicar_loss_and_gradients_are_the_references():
    """RAAT's default DICAR (masking) against the reference's compacted DICAR forward: the loss and the
    parameters' gradients (running statistics: the test above; the two run their forwards in
    different orders, so their running averages differ by order alone)."""
    model, (x1, x2, y) = bn_model(5), views(6)
    ref_model, our_model = copy.deepcopy(model), copy.deepcopy(model)
    ref, n_sel = raat_reference(ref_model, x1, x2, y, eta=0.5, m=0.7, lam=1.0, T=0.5)
    assert 2 <= n_sel < len(y)
    obj = RAAT(attack, eta=0.5, require_adv_wrong=True)
    obj.draw_mix = lambda device: torch.tensor(0.7)
    losses, _ = obj(our_model, (x1, x2), y)
    torch.testing.assert_close(losses["dicar"], ref["dicar"], rtol=1e-5, atol=1e-6)
    g_ref = torch.autograd.grad(ref["dicar"], list(ref_model.parameters()), allow_unused=True)
    g_got = torch.autograd.grad(losses["dicar"], list(our_model.parameters()), allow_unused=True)
    for a, b in zip(g_got, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)

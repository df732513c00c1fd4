"""The trainer: robustness actually gained, exact resume, checkpoint layout, atomic writes."""
import json

import pytest
import torch
import yaml

from robustfront import load_model
from robustfront.data import load_dataset
from robustfront.eval import accuracy
from robustfront.attacks import PGD
from robustfront.train import TrainConfig, train
from robustfront import checkpoint as ckpt
from robustfront.train.schedule import Schedule

TINY = dict(data="digits", model="small_cnn", model_args={"width": 16}, epochs=4, batch_size=64, lr=0.05,
            schedule="cosine", eps="32/255", alpha="8/255", attack_steps=5, progress=False)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    for m in ("standard", "pgd_at"):
        train(TrainConfig(**TINY, method=m, out=str(root / m)))
    return root


def test_pgd_at_is_clearly_more_robust_than_standard(runs, digits_test):
    x, y = digits_test
    pgd = PGD(eps=32 / 255, alpha=8 / 255, steps=20)
    acc = {}
    for m in ("standard", "pgd_at"):
        model = load_model(runs / m / "checkpoints" / "best.pt")
        torch.manual_seed(0)
        acc[m] = (accuracy(model, x, y), accuracy(model, x, y, attack=pgd))
    assert acc["standard"][0] > 0.9 and acc["pgd_at"][0] > 0.85          # both learn the task
    assert acc["standard"][1] < acc["standard"][0] - 0.3                  # the attack bites
    assert acc["pgd_at"][1] > acc["standard"][1] + 0.2, acc               # PGD-AT keeps far more


def test_run_layout_and_checkpoint_format(runs):
    out = runs / "pgd_at"
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["method"] == "pgd_at" and cfg["eps"] == "32/255"
    lines = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert [l["epoch"] for l in lines] == [1, 2, 3, 4]
    assert all(0 <= l["val_pgd_acc"] <= l["val_clean_acc"] <= 1 for l in lines)
    for name in ("last.pt", "best.pt"):
        state = torch.load(out / "checkpoints" / name, weights_only=True)   # RobustBench-style, safe load
        assert {"model", "model_config", "optimizer", "scheduler", "rng", "epoch"} <= state.keys()
        assert all(isinstance(v, torch.Tensor) for v in state["model"].values())
    best = torch.load(out / "checkpoints" / "best.pt", weights_only=True)
    assert best["best_val_robust"] == max(l["val_pgd_acc"] for l in lines)
    assert not load_model(out / "checkpoints" / "last.pt").training


@pytest.mark.parametrize("method,extra", [("vanilla", {}), ("ca_at", {"ema": 0.9})])
def test_resume_reproduces_an_uninterrupted_run(tmp_path, method, extra):
    cfg = dict(TINY, method=method, epochs=3, schedule="multistep", milestones=[2], **extra)
    full = train(TrainConfig(**cfg, out=str(tmp_path / "full")))
    train(TrainConfig(**cfg, out=str(tmp_path / "split")), stop_after=1)
    lines = (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 1
    resumed = train(TrainConfig(**cfg, out=str(tmp_path / "split")), resume=True)
    a = torch.load(tmp_path / "full" / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "split" / "checkpoints" / "last.pt", weights_only=True)
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert full["val_pgd_acc"] == resumed["val_pgd_acc"] and full["train_loss"] == resumed["train_loss"]
    assert len((tmp_path / "split" / "metrics.jsonl").read_text().splitlines()) == 3


def test_resume_without_checkpoint_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        train(TrainConfig(**TINY, method="pgd_at", out=str(tmp_path)), resume=True)


def test_weighted_combiner_matches_the_weighted_loss_gradient():
    from robustfront.combiners import create_combiner
    torch.manual_seed(0)
    w = torch.randn(5, requires_grad=True)
    losses = {"clean": (w ** 2).sum(), "adv": (w ** 3).sum()}
    # λ weights the ADVERSARIAL loss (CA-AT's figures and code; issue 9): (1-λ)·clean + λ·adv
    total = create_combiner("weighted", lam=0.3).total_loss(losses)
    (g,) = torch.autograd.grad(total, w, retain_graph=True)
    assert torch.allclose(g, 0.7 * 2 * w + 0.3 * 3 * w ** 2)
    # the other convention keeps a clearly named option: clean_weight=0.3 is 0.3·clean + 0.7·adv
    total = create_combiner("weighted", clean_weight=0.3).total_loss(losses)
    (g,) = torch.autograd.grad(total, w)
    assert torch.allclose(g, 0.3 * 2 * w + 0.7 * 3 * w ** 2)


def test_nonfinite_updates_never_reach_the_weights(tmp_path, monkeypatch):
    from robustfront.objectives import vanilla
    calls = {"n": 0}
    orig = vanilla.Vanilla.__call__

    def poisoned(self, model, x, y):
        losses, stats = orig(self, model, x, y)
        calls["n"] += 1
        if calls["n"] == 2:   # one step with a NaN loss
            losses["adv"] = losses["adv"] * float("nan")
        return losses, stats

    monkeypatch.setattr(vanilla.Vanilla, "__call__", poisoned)
    m = train(TrainConfig(**dict(TINY, epochs=1), method="ca_at", out=str(tmp_path)))
    assert m["nonfinite_steps"] == 1
    state = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_atomic_save_keeps_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    ckpt.save_atomic({"a": torch.ones(2)}, path)

    def broken(obj, f, *a, **k):
        open(f, "wb").write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken)
    with pytest.raises(OSError):
        ckpt.save_atomic({"a": torch.zeros(2)}, path)
    assert torch.equal(torch.load(path, weights_only=True)["a"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


@pytest.mark.parametrize("kind", ["multistep", "cosine", "onecycle", "constant"])
def test_schedules(kind):
    s = Schedule(kind, 0.1, total=100, steps_per_epoch=10, milestones=[0.5, 0.75], epochs=10)
    lrs = [s.lr(i) for i in range(100)]
    assert max(lrs) <= 0.1 + 1e-12 and min(lrs) >= 0
    if kind == "multistep":
        assert lrs[49] == 0.1 and abs(lrs[50] - 0.01) < 1e-12 and abs(lrs[75] - 0.001) < 1e-12
    if kind == "cosine":
        assert lrs[0] == 0.1 and lrs[99] < 1e-3
    if kind == "onecycle":
        assert lrs[0] < 0.01 and abs(max(lrs) - 0.1) < 1e-3 and lrs[99] < 1e-3


@pytest.mark.parametrize("bad,match", [
    ({"method": "nope"}, "unknown method 'nope'; allowed: .*pgd_at"),
    ({"model": "nope"}, "unknown model 'nope'"),
    ({"eps": "8/0"}, "eps='8/0' is not a number"),
    ({"eps": -0.1}, "eps=-0.1 is invalid; allowed: a finite number >= 0"),
    ({"schedule": "step"}, "schedule='step' is unknown; allowed: multistep"),
    ({"norm": "L3"}, "norm='L3' is unknown"),
    ({"epochs": 0}, "epochs=0 is invalid; allowed: an integer >= 1"),
    ({"momentum": 0.0, "nesterov": True}, "nesterov=True is invalid with momentum=0; allowed: momentum > 0"),
    ({"opts": {"gama": 0.8}, "method": "ca_at"}, "option 'gama' is not a hyper-parameter of this method; allowed: .*gamma"),
    ({"opts": {"gamma": 1.5}, "method": "ca_at"}, "gamma=1.5 is out of range"),
    ({"data": "nope"}, "unknown dataset 'nope'"),
    # surgery=True / with_clean=True are gone (issue 9): slot mappings belong to the method; the
    # pairing refusals moved to tests/test_composition.py
    ({"opts": {"surgery": True}, "method": "trades"}, "option 'surgery' is not a hyper-parameter of this method"),
])
def test_bad_config_raises_one_line_error(tmp_path, bad, match):
    with pytest.raises(ValueError, match=match) as e:
        train(TrainConfig(**{**TINY, **bad, "out": str(tmp_path)}))
    assert "\n" not in str(e.value)


def test_unknown_config_key():
    with pytest.raises(ValueError, match=r"unknown config key\(s\) \['epoch'\]"):
        TrainConfig.from_dict({"epoch": 3})


def test_term_grads_fill_preallocated_buffers_exactly():
    from robustfront.train.term_grads import TermGrads
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.LazyLinear(3))
    net(torch.zeros(1, 3, 5, 5))
    net = net.to(memory_format=torch.channels_last)           # strided parameters too
    params = list(net.parameters()) + [torch.nn.Parameter(torch.ones(2))]   # one unused parameter
    x = torch.randn(6, 3, 5, 5)
    tg = TermGrads(params, ("clean", "adv"))
    ptr = {t: f.data_ptr() for t, f in tg.flat.items()}
    out = net(x)
    grads = tg({"clean": out.pow(2).mean(), "adv": out.sin().sum()})
    for term, fn in (("clean", lambda o: o.pow(2).mean()), ("adv", lambda o: o.sin().sum())):
        ref = torch.autograd.grad(fn(net(x)), params, allow_unused=True)
        for r, g in zip(ref, grads[term]):
            assert torch.equal(torch.zeros_like(g) if r is None else r, g)
        assert tg.flat[term].data_ptr() == ptr[term]                   # written in place, not reallocated
    assert all(p.grad is None for p in params)


# test_pairings_that_would_lose_or_double_count_a_term_are_refused and
# test_surgery_runs_log_the_objective_loss_not_the_sum_of_terms moved to tests/test_composition.py
# (issue 9: composition by slot mappings instead of the surgery / with_clean flags)


def test_training_attacks_keep_the_data_box():
    """Images are attacked inside [0,1]; the unbounded Gaussian model is not clipped to it."""
    from robustfront.train import build_trainer
    for spec, bounds in (("digits", (0.0, 1.0)), ("gaussian:n_train=64,n_test=16", None)):
        ds = load_dataset(spec)
        cfg = TrainConfig(data=spec, model="small_cnn" if spec == "digits" else "mlp", method="trades",
                          progress=False)
        tr = build_trainer(cfg, ds, torch.device("cpu"))
        assert ds.bounds == bounds and tr.objective.attack.bounds == bounds
        if bounds is None:
            x = torch.as_tensor(ds.x_train[:16]) + 5.0           # far outside [0,1]
            x_adv = tr.objective.attack(tr.model, x, torch.as_tensor(ds.y_train[:16]))
            assert (x_adv - x).abs().max() <= cfg.eps + 1e-6


def test_select_on_test_scores_checkpoints_on_the_test_set(tmp_path, digits_test):
    m = train(TrainConfig(**{**TINY, "epochs": 1}, method="standard", select_on="test", out=str(tmp_path)))
    x, y = digits_test
    model = load_model(tmp_path / "checkpoints" / "best.pt")
    assert m["val_split"] == "test" and m["val_clean_acc"] == accuracy(model, x, y)
    with pytest.raises(ValueError, match="select_on='train' is unknown; allowed: val, test"):
        TrainConfig(select_on="train")

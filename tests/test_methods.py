"""Every named method trains on CPU, logs its diagnostics, and the robust ones end more robust."""
import pytest
import torch

from robustfront import load_model
from robustfront.attacks import PGD
from robustfront.eval import accuracy
from robustfront.train import METHODS, TrainConfig, train

BASE = dict(data="digits", model="small_cnn", model_args={"width": 16}, epochs=5, batch_size=64, lr=0.05,
            schedule="cosine", eps="32/255", alpha="8/255", attack_steps=4, progress=False, eval_every=5)
# diagnostics each method must log (METHODS.md / EVALUATION.md)
DIAGNOSTICS = {
    "ca_at": {"cos", "mu", "norm_clean", "norm_adv", "projected_frac"},
    "agr": {"gop_freq", "cos_mean", "layer_cos"},
    "raat": {"train_boundary", "train_misclassified"},
}
ROBUST = [m for m in METHODS.names() if m != "standard"]
# RAAT# decides with the averaged weights: the trainer binds its EMA model to the objective
AVERAGED = {"raat_sharp": {"ema": 0.9, "ema_start": 2}}


def _opts(method):
    # AGR's paper default starts GICS at epoch 150; start at once so 5 epochs exercise both branches
    return {"start_epoch": 0} if method.startswith("agr") else {}


@pytest.fixture(scope="module")
def standard_pgd(tmp_path_factory, digits_test):
    out = tmp_path_factory.mktemp("standard")
    train(TrainConfig(**BASE, method="standard", out=str(out)))
    return _pgd_acc(out, digits_test)


def _pgd_acc(out, digits_test):
    x, y = digits_test
    model = load_model(out / "checkpoints" / "last.pt")
    torch.manual_seed(0)
    return accuracy(model, x, y), accuracy(model, x, y, attack=PGD(eps=32 / 255, alpha=8 / 255, steps=10))


def test_every_method_is_registered_and_documented():
    expected = {"standard", "pgd_at", "vanilla", "trades", "mart", "clp", "cons_at", "ca_at", "ca_at_trades",
                "ca_at_clp", "agr", "agr_trades", "agr_mart", "agr_awp", "raat", "raat_pp", "awp",
                "avmixup", "agr_avmixup", "raat_sharp"}
    assert expected <= set(METHODS.names())
    assert all(METHODS.get(m).doc for m in METHODS.names())


@pytest.mark.parametrize("method", ROBUST)
def test_method_trains_logs_diagnostics_and_beats_standard(method, tmp_path, digits_test, standard_pgd):
    m = train(TrainConfig(**BASE, method=method, opts=_opts(method), **AVERAGED.get(method, {}), out=str(tmp_path)))
    assert m["nonfinite_steps"] == 0 and m["train_loss"] == m["train_loss"]      # finite, not NaN
    for prefix, keys in DIAGNOSTICS.items():
        if method.startswith(prefix):
            assert keys <= m.keys(), keys - m.keys()
    clean, robust = _pgd_acc(tmp_path, digits_test)
    std_clean, std_robust = standard_pgd
    assert clean > 0.6, clean
    assert robust > std_robust + 0.1, (method, robust, std_robust)

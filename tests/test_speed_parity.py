"""Accuracy parity of the fast paths (bf16 autocast, channels_last) with the fp32 reference path.

Measured on the 360 digits test images. Tolerance: 2 points (about 7 images). Why not 0.5: on this
8-epoch run the fp32 model itself moves by 1.4 points of PGD accuracy between seeds 0 and 1, and the
binomial standard error of an 80 % accuracy over 360 images is 2.1 points; measured bf16 − fp32
differences were 0.0 (clean) and +1.7 / +0.8 (PGD, seeds 0 / 1), bf16+channels_last +0.8 / +0.8
(docs/performance.md). A 0.5-point bound would test the noise, not the fast path.
"""

import pytest
import torch

from robustfront.attacks import PGD
from robustfront.eval import accuracy
from robustfront.models import load_model
from robustfront.train import TrainConfig, train

TOL = 0.02
CFG = dict(data="digits", model="small_cnn", epochs=8, batch_size=64, lr=0.05, schedule="cosine", eps="32/255",
           alpha="8/255", attack_steps=5, crop=0, flip=False, progress=False, eval_every=100, seed=0)
EVAL = dict(eps=32 / 255, alpha=8 / 255, steps=10)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("parity")
    paths = {}
    for name, kw in (("fp32", {}), ("bf16", {"bf16": True}), ("fast", {"bf16": True, "channels_last": True})):
        train(TrainConfig(**CFG, **kw, out=str(root / name)))
        paths[name] = root / name / "checkpoints" / "last.pt"
    return paths


def _scores(path, x, y):
    model = load_model(path)  # evaluated the same way for all: fp32, NCHW
    torch.manual_seed(0)
    return accuracy(model, x, y), accuracy(model, x, y, attack=PGD(**EVAL))


@pytest.mark.parametrize("fast", ["bf16", "fast"])
def test_fast_training_reaches_fp32_accuracy(trained, digits_test, fast):
    clean_ref, pgd_ref = _scores(trained["fp32"], *digits_test)
    clean, pgd = _scores(trained[fast], *digits_test)
    assert pgd_ref > 0.5 and clean_ref > 0.9        # the run actually learned something robust
    assert abs(clean - clean_ref) <= TOL, (fast, clean, clean_ref)
    assert abs(pgd - pgd_ref) <= TOL, (fast, pgd, pgd_ref)


@pytest.mark.parametrize("path", ["bf16", "channels_last", "bf16+channels_last"])
def test_fast_path_attack_is_as_strong_as_fp32_attack(trained, digits_test, path):
    """Same fp32-trained model, same random start: accuracy under the fast-path attack must not be
    higher than under the fp32/NCHW attack by more than noise."""
    x, y = digits_test
    model = load_model(trained["fp32"])
    torch.manual_seed(0)
    ref = accuracy(model, x, y, attack=PGD(**EVAL))
    if "channels_last" in path:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    torch.manual_seed(0)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled="bf16" in path):
        # the attack keeps δ and its loss in fp32; only the model's forward runs in bf16
        fast = accuracy(model, x, y, attack=PGD(**EVAL))
    assert fast <= ref + TOL, (path, fast, ref)
    clean = accuracy(model, x, y)
    assert fast < clean - 0.1                           # the attack did bite


def test_speed_options_are_config_fields():
    f = TrainConfig.fields()
    assert {"channels_last", "compile", "fused_sgd", "bf16"} <= f.keys()
    c = TrainConfig(compile=True)
    assert c.compile is True

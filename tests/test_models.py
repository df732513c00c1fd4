"""Every registered model: shapes, gradients, Normalize inside, small inputs; factory and checkpoints."""
import json

import pytest
import torch
import torch.nn.functional as F

from robustfront.models import Normalize, create_model, default_stats, list_models, load_model
from robustfront.models.info import info

NAMES = ["mlp", "preact_resnet18", "resnet18", "resnet34", "small_cnn", "wrn28_10", "wrn34_10"]
VITS = ["vit_base_patch16_224", "vit_small_patch16_224", "vit_small_patch4_32", "vit_tiny_patch16_224",
        "vit_tiny_patch4_32"]  # tested in test_vit.py


def test_registry_names():
    assert list_models() == sorted(NAMES + VITS)
    assert list_models("wrn*") == ["wrn28_10", "wrn34_10"]


@pytest.mark.parametrize("name", NAMES)
def test_forward_backward_every_parameter(name):
    # the big nets are slow on CPU: one 16x16 image for the Wide ResNets (4x4 after the last group,
    # enough for train-mode BatchNorm), two for ResNet-34; adaptive pooling makes the net the same
    torch.manual_seed(0)
    b = 1 if name.startswith("wrn") else 2
    size = 16 if name in ("resnet34", "wrn28_10", "wrn34_10") else 32
    model = create_model(name, num_classes=7, input_size=size)
    assert isinstance(next(model.children()), Normalize)
    out = model(torch.rand(b, 3, size, size))
    assert out.shape == (b, 7) and torch.isfinite(out).all()
    F.cross_entropy(out, torch.arange(b) % 7).backward()
    bad = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not bad, f"{name}: no finite gradient for {bad[:5]}"
    assert any(p.grad.abs().sum() > 0 for p in model.parameters())


@pytest.mark.parametrize("name", NAMES)
def test_small_single_channel_inputs(name):
    """8x8 one-channel digits work everywhere (adaptive pooling; mlp sized from input_size)."""
    model = create_model(name, num_classes=10, in_channels=1, input_size=8).eval()
    with torch.no_grad():
        out = model(torch.rand(3, 1, 8, 8))
    assert out.shape == (3, 10) and torch.isfinite(out).all()
    assert info(model).config["mean"] == [0.5] and info(model).config["std"] == [0.5]


def test_mlp_flat_vectors():
    for kw in ({"input_dim": 5}, {"input_shape": [5]}, {"input_shape": (5,)}):
        model = create_model("mlp", num_classes=2, hidden=[16], **kw)
        assert model(torch.randn(4, 5)).shape == (4, 2)
        assert info(model).config["mean"] == [0.0] and info(model).config["std"] == [1.0]  # identity for vectors
    model = create_model("mlp", num_classes=2, input_dim=3, mean=[1.0, 2.0, 3.0], std=[1.0, 1.0, 2.0])
    assert torch.allclose(model.normalize(torch.tensor([[1.0, 3.0, 5.0]])), torch.tensor([[0.0, 1.0, 1.0]]))
    model = create_model("mlp", num_classes=3, input_shape=[2, 4, 6], hidden=[8])  # non-square image
    assert model(torch.rand(2, 2, 4, 6)).shape == (2, 3) and info(model).config["input_shape"] == [2, 4, 6]


def test_normalize_values_and_defaults():
    x = torch.rand(2, 3, 4, 4)
    norm = Normalize([0.1, 0.2, 0.3], [0.5, 0.25, 2.0])
    ref = (x - torch.tensor([0.1, 0.2, 0.3]).view(1, 3, 1, 1)) / torch.tensor([0.5, 0.25, 2.0]).view(1, 3, 1, 1)
    assert torch.allclose(norm(x), ref)
    assert {"mean", "std"} <= set(norm.state_dict())
    assert default_stats(3)[0] == pytest.approx([0.4914, 0.4822, 0.4465])
    assert info(create_model("small_cnn")).config["mean"] == pytest.approx([0.4914, 0.4822, 0.4465])
    with pytest.raises(ValueError, match="std=.*allowed: all > 0"):
        Normalize([0.5], [0.0], channels=1)
    with pytest.raises(ValueError, match="do not fit 3 channels"):
        Normalize([0.5, 0.5], [0.5, 0.5], channels=3)


def test_create_model_errors():
    with pytest.raises(ValueError, match="unknown model 'resnet999'; allowed: mlp, preact_resnet18, resnet18"):
        create_model("resnet999")
    with pytest.raises(ValueError, match="unknown option 'depth' for model 'small_cnn'; allowed: width"):
        create_model("small_cnn", depth=3)
    with pytest.raises(ValueError, match="num_classes=0 is invalid"):
        create_model("small_cnn", num_classes=0)
    with pytest.raises(ValueError, match="dropout=1.5"):
        create_model("wrn28_10", dropout=1.5)


def test_model_config_is_plain_and_drops_none():
    model = create_model("small_cnn", 4, in_channels=1, input_size=8, width=8, mean=(0.3,), std=(0.2,))
    cfg = info(model).config
    assert cfg == {"name": "small_cnn", "num_classes": 4, "in_channels": 1, "input_size": 8,
                   "mean": [0.3], "std": [0.2], "width": 8}
    json.dumps(cfg)
    assert "width" not in info(create_model("small_cnn", width=None)).config  # None keeps the default



def test_model_info_travels_with_the_model_and_reads_as_defaults_elsewhere():
    import copy
    import dataclasses
    from robustfront.models import prepare_finetune
    from robustfront.models.info import ModelInfo, record
    from robustfront.train.ema import EMA
    model = prepare_finetune(create_model("small_cnn", 3, width=4), "linear")
    facts = info(model)
    assert facts.name == "small_cnn" and facts.peft == {"mode": "linear"} and facts.head is None
    for twin in (copy.deepcopy(model), EMA(model, 0.9).model):   # weight averaging copies the model
        assert info(twin) == facts and info(twin).config is not facts.config
    assert set(model.state_dict()) == set(create_model("small_cnn", 3, width=4).state_dict())  # no key added
    plain = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))   # built elsewhere
    assert info(plain) == ModelInfo() and info(plain).name is None and info(plain).peft is None
    with pytest.raises(dataclasses.FrozenInstanceError):   # a write on the detached default would be lost
        info(plain).peft = {"mode": "full"}
    assert info(record(plain, head="1")).head == "1" and info(plain).config is None
    with pytest.raises(TypeError):
        record(plain, heads="1")

def test_load_model_round_trip(tmp_path):
    torch.manual_seed(0)
    model = create_model("small_cnn", 4, in_channels=1, input_size=8, width=8, mean=[0.3], std=[0.2])
    model(torch.rand(16, 1, 8, 8))  # train-mode forward: BatchNorm running stats move away from init
    path = tmp_path / "ckpt.pt"
    torch.save({"model": model.state_dict(), "model_config": info(model).config, "epoch": 3}, path)
    loaded = load_model(str(path))
    assert not loaded.training and info(loaded).config == info(model).config
    x = torch.rand(5, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(loaded(x), model.eval()(x))
    # a dict works too, and so do keys saved from a DDP / torch.compile wrapper
    sd = {"module." + k: v for k, v in model.state_dict().items()}
    again = load_model({"model": sd, "model_config": info(model).config})
    assert torch.equal(again(x), loaded(x))
    import robustfront
    assert torch.equal(robustfront.load_model(path)(x), loaded(x))


def test_load_model_missing_keys(tmp_path):
    path = tmp_path / "bad.pt"
    torch.save({"model": create_model("mlp", input_dim=3).state_dict()}, path)
    with pytest.raises(ValueError, match=r"bad.pt lacks \['model_config'\]"):
        load_model(path)

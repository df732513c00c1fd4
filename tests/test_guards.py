"""Guard rails: randomised models are caught, bad requests are one line."""
import pytest
import torch
from torch import nn

from robustfront.eval import EvalConfig
from robustfront.eval.guards import check_randomized, train_mode_modules
from robustfront.models import create_model


def net(**kw):
    torch.manual_seed(0)
    return create_model("small_cnn", 10, in_channels=1, input_size=8, width=4, **kw)


def test_deterministic_model_passes():
    out = check_randomized(net().eval(), torch.rand(16, 1, 8, 8))
    assert out == {"randomized": False, "max_diff": 0.0, "train_mode": [], "message": None}


def test_dropout_left_on_is_flagged_with_the_rand_recommendation():
    model = nn.Sequential(net(), nn.Dropout(0.5)).eval()
    model[1].train()
    out = check_randomized(model, torch.rand(16, 1, 8, 8))
    assert out["randomized"] and out["max_diff"] > 1e-4 and out["train_mode"] == ["1"]
    assert "version='rand'" in out["message"] and "training mode: 1" in out["message"] and "\n" not in out["message"]


def test_stochastic_defence_is_flagged():
    class Noisy(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner(x + 0.05 * torch.randn_like(x))
    assert check_randomized(Noisy(net().eval()), torch.rand(16, 1, 8, 8))["randomized"]


def test_batchnorm_in_train_mode_is_named():
    model = net().train()
    assert "features.0.1" in train_mode_modules(model)
    assert train_mode_modules(model.eval()) == []


def test_one_line_request_errors():
    # the request's rules live in EvalConfig, once (n against the split's size: load_for_eval)
    with pytest.raises(ValueError, match=r"^eps=\['8/255', 0.03137254901960784\] is a list with 0.03137254901960784 twice"):
        EvalConfig(eps=["8/255", 8 / 255])
    assert EvalConfig(eps=["4/255", "8/255"]).eps_values == [4 / 255, 8 / 255]
    with pytest.raises(ValueError, match=r"^eps='-1' is negative; allowed: budgets >= 0"):
        EvalConfig(eps="-1")
    with pytest.raises(ValueError, match=r"^unknown attack 'apgd'; allowed: "):
        EvalConfig(attacks=["apgd"])
    with pytest.raises(ValueError, match=r"^attacks=\['apgd-t', 'apgd_t'\] names apgd_t twice"):
        EvalConfig(attacks=["apgd-t", "apgd_t"])

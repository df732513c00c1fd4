"""RobustBench-style model cards from eval results, and the plain export loadable without robustfront."""
import json

import pytest
import torch
from safetensors.torch import load_file

from foreign_nets import KBasic, KPreAct, KuangliuNet, randomize_bn
from robustfront.eval.card import card_path, format_eps, model_card, validate_card, write_card
from robustfront.models import create_model
from robustfront.models.export import export_plain

# the field list of RobustBench's model_info files (e.g. cifar10/Linf/Wang2023Better_WRN-28-10.json)
ROBUSTBENCH_FIELDS = {"link", "name", "authors", "additional_data", "number_forward_passes", "dataset", "venue",
                      "architecture", "eps", "clean_acc", "reported", "autoattack_acc", "footnote", "unreliable"}


def suite_result(**kw):
    res = {"clean_acc": 0.84921, "robust_acc": {"pgd20": 0.55, "autoattack": 0.530849}, "worst_case_acc": 0.5308,
           "n": 10000, "eps": 8 / 255, "norm": "Linf"}
    res.update(kw)
    return res


def test_card_from_a_suite_result_has_robustbench_fields_and_formats():
    card = model_card(suite_result(), name="Theoretically Principled Trade-off", architecture="WideResNet-34-10",
                      venue="ICML 2019", link="https://arxiv.org/abs/1901.08573", reported=0.5643)
    assert set(card) == ROBUSTBENCH_FIELDS
    assert (card["eps"], card["clean_acc"], card["autoattack_acc"], card["reported"]) == ("8/255", "84.92", "53.08",
                                                                                         "56.43")
    assert card["dataset"] == "cifar10" and card["additional_data"] is False and card["number_forward_passes"] == 1
    assert card["unreliable"] is False and card["footnote"] == ""
    assert validate_card(json.loads(json.dumps(card))) == card


def test_card_from_a_cascade_result(tmp_path):
    res = {"kind": "autoattack-cascade", "clean_acc": 0.9, "robust_acc": {"autoattack": 0.5}, "n": 1000,
           "n_total": 1000, "eps": 0.5, "norm": "L2", "official_budgets": True, "complete": True,
           "flags": {"randomized": True}}
    card = model_card(res, name="m", architecture="ResNet-18", additional_data=True)
    assert card["eps"] == "0.5" and card["additional_data"] is True
    assert card["unreliable"] is True and "rand version" in card["footnote"]
    assert "AutoAttack on 1000 of the 10000 test points." in card["footnote"]
    path = write_card(card, card_path(card, "L2", "Me2025Test", root=tmp_path))
    assert path == tmp_path / "cifar10" / "L2" / "Me2025Test.json"
    assert json.loads(path.read_text()) == card
    with pytest.raises(ValueError, match="^eval_result='reduced AutoAttack budgets' is invalid"):
        model_card({**res, "official_budgets": False}, name="m", architecture="a")
    with pytest.raises(ValueError, match=r"^eval_result='1 of 4 chunks' is incomplete"):
        model_card({**res, "complete": False, "chunks_done": 1, "chunks_total": 4}, name="m", architecture="a")


@pytest.mark.parametrize("eps, norm, text", [(8 / 255, "Linf", "8/255"), (4 / 255, "Linf", "4/255"),
                                             (0.031, "Linf", "0.031"), (0.5, "L2", "0.5"), (1.0, "L2", "1")])
def test_eps_is_written_as_robustbench_writes_it(eps, norm, text):
    assert format_eps(eps, norm) == text


@pytest.mark.parametrize("change, match", [
    ({"clean_acc": "84.9213"}, r"^clean_acc='84\.9213' is invalid; allowed: a percentage string"),
    ({"clean_acc": 84.92}, r"^clean_acc=84\.92 is invalid"),
    ({"eps": 0.031}, r"^eps=0\.031 is invalid; allowed: a string like"),
    ({"dataset": "mnist"}, r"^dataset='mnist' is unknown; allowed: cifar10, cifar100, imagenet$"),
    ({"additional_data": "no"}, r"^additional_data='no' is invalid; allowed: true or false$"),
    ({"number_forward_passes": 0}, r"^number_forward_passes=0 is invalid"),
    ({"AA": "53.00"}, r"^card field='AA' is unknown"),
    ({"autoattack_acc": "90.00"}, r"^autoattack_acc='90\.00' is invalid; allowed: at most clean_acc \(84\.92\)$"),
    ({"name": " "}, r"^name=' ' is invalid; allowed: a non-empty string$"),
])
def test_validator_names_the_bad_field(change, match):
    card = model_card(suite_result(), name="n", architecture="a")
    with pytest.raises(ValueError, match=match) as e:
        validate_card({**card, **change})
    assert "\n" not in str(e.value)
    bad = {k: v for k, v in card.items() if k != "venue"}
    with pytest.raises(ValueError, match=r"^card='missing venue' is incomplete"):
        validate_card(bad)


def test_card_needs_autoattack_and_one_eps():
    with pytest.raises(ValueError, match=r"is without AutoAttack; allowed: a result with the standard AutoAttack"):
        model_card(suite_result(robust_acc={"pgd20": 0.5}), name="n", architecture="a")
    with pytest.raises(ValueError, match=r"^eval_result='an ε sweep' is invalid"):
        model_card({"eps": [1, 2], "sweep": []}, name="n", architecture="a")
    with pytest.raises(ValueError, match=r"^threat model='L1' is unknown; allowed: Linf, L2$"):
        model_card(suite_result(norm="L1"), name="n", architecture="a")


class WithStats(torch.nn.Module):
    """What code that has never seen robustfront writes from the export's documentation."""

    def __init__(self, net):
        super().__init__()
        self.normalize = torch.nn.Module()
        self.normalize.register_buffer("mean", torch.zeros(3))
        self.normalize.register_buffer("std", torch.ones(3))
        self.net = net

    def load_plain(self, state):
        self.normalize.mean.copy_(state.pop("normalize.mean"))
        self.normalize.std.copy_(state.pop("normalize.std"))
        self.net.load_state_dict(state, strict=True)

    def forward(self, x):
        m, s = self.normalize.mean.view(1, -1, 1, 1), self.normalize.std.view(1, -1, 1, 1)
        return self.net((x - m) / s)


@pytest.mark.parametrize("name, foreign", [
    ("resnet18", lambda: KuangliuNet(KBasic, [2, 2, 2, 2], width=4)),
    ("preact_resnet18", lambda: KuangliuNet(KPreAct, [2, 2, 2, 2], width=4)),
])
def test_export_loads_without_robustfront(name, foreign, tmp_path):
    torch.manual_seed(6)
    opts = {"head_bn": False} if name == "preact_resnet18" else {}
    model = randomize_bn(create_model(name, width=4, mean=[0.49, 0.48, 0.45], std=[0.25, 0.24, 0.26], **opts))
    paths = export_plain(model, tmp_path / "release.pt")
    assert {k: p.name for k, p in paths.items()} == {"pt": "release.pt", "safetensors": "release.safetensors",
                                                     "json": "release.json"}
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        want = model(x)
    for state in (torch.load(paths["pt"], weights_only=True), load_file(str(paths["safetensors"]))):
        plain = WithStats(foreign())
        plain.load_plain(dict(state))
        with torch.no_grad():
            assert torch.allclose(plain.eval()(x), want, atol=1e-5)
    info = json.loads(paths["json"].read_text())
    assert info["mean"] == pytest.approx([0.49, 0.48, 0.45]) and info["architecture"]["name"] == name
    assert not list(tmp_path.glob(".*.tmp"))

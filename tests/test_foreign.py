"""Checkpoints from other code bases: every supported layout, every wrapper form, gives the logits of
the network that wrote it (tests/foreign_nets.py, written independently of robustfront's classes)."""
import zipfile

import pytest
import torch
from safetensors.torch import save_file

from foreign_nets import (KBasic, KPreAct, KuangliuNet, MuSigma, TradesWRN, randomize_bn, robustbench_wrapped)
from robustfront.models import create_model
from robustfront.models.foreign import describe, load_factory, load_foreign
from robustfront.models.info import info

MEAN, STD = [0.4914, 0.4822, 0.4465], [0.2471, 0.2435, 0.2616]


def images(n=3, seed=0):
    return torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def normalized(x, mean=MEAN, std=STD):
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def check_same(foreign, loaded, x, *, mean=None, std=None):
    with torch.no_grad():
        want = foreign(x if mean is None else normalized(x, mean, std))
        got = loaded(x)
    assert got.shape == want.shape
    assert torch.allclose(got, want, atol=1e-5, rtol=1e-4), (got - want).abs().max()


LAYOUTS = {  # name -> (robustfront model, foreign net builder)
    "kuangliu_resnet18": ("resnet18", lambda: KuangliuNet(KBasic, [2, 2, 2, 2], width=8)),
    "kuangliu_resnet34": ("resnet34", lambda: KuangliuNet(KBasic, [3, 4, 6, 3], width=4)),
    "kuangliu_preact18": ("preact_resnet18", lambda: KuangliuNet(KPreAct, [2, 2, 2, 2], width=8)),
    "rice_awp_preact18": ("preact_resnet18", lambda: KuangliuNet(KPreAct, [2, 2, 2, 2], width=8, final_bn=True)),
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("stats", [False, True])
def test_each_resnet_layout_gives_the_foreign_logits(layout, stats, tmp_path):
    name, build = LAYOUTS[layout]
    torch.manual_seed(1)
    net = randomize_bn(build())
    torch.save(net.state_dict(), tmp_path / "w.pt")
    kw = {"input_mean": MEAN, "input_std": STD} if stats else {}
    model, report = load_foreign(name, tmp_path / "w.pt", **kw)
    check_same(net, model, images(), mean=MEAN if stats else None, std=STD)
    assert report["normalization"]["source"] == ("given" if stats else "identity (none in the file, none given)")
    assert not model.training and report["model"] == name
    if layout == "kuangliu_preact18":
        assert report["options"]["head_bn"] is False and "bn.weight" not in model.state_dict()


@pytest.fixture(scope="module")
def resnet_files(tmp_path_factory):
    """One kuangliu ResNet-18 (width 4) in every wrapper form a training script writes."""
    torch.manual_seed(2)
    net = randomize_bn(KuangliuNet(KBasic, [2, 2, 2, 2], width=4))
    sd, d = net.state_dict(), tmp_path_factory.mktemp("forms")
    torch.save({"state_dict": sd, "epoch": 7, "best_acc": 0.5}, d / "state_dict.pth")
    torch.save({"model": sd, "optimizer": {"lr": 0.1}}, d / "model.pt")
    torch.save({"net": sd, "acc": 80.1, "epoch": 3}, d / "net.pth")
    torch.save({f"module.{k}": v for k, v in sd.items()}, d / "dataparallel.pt")
    save_file({k: v.contiguous() for k, v in sd.items()}, d / "w.safetensors")
    old = {k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")}  # torch < 0.4.1
    torch.save(old, d / "old.pt")
    torch.save({"state_dict": {f"module.{k}": v for k, v in sd.items()}}, d / "nested.pt")
    return net, d


@pytest.mark.parametrize("form", ["state_dict.pth", "model.pt", "net.pth", "dataparallel.pt", "w.safetensors",
                                  "old.pt", "nested.pt"])
def test_every_wrapper_form_loads(resnet_files, form):
    net, d = resnet_files
    model, report = load_foreign("resnet18", d / form)
    check_same(net, model, images())
    assert (form == "old.pt") == bool(report["filled"])  # num_batches_tracked counters added only there
    line = describe(report)
    assert "\n" not in line and line.startswith(f"resnet18 from {d / form} (layout resnet18); normalisation identity")


@pytest.mark.parametrize("form", ["robustbench", "sequential", "mu_sigma"])
def test_normalisation_inside_the_file_is_used(resnet_files, form, tmp_path):
    net, _ = resnet_files
    wrapped = {"robustbench": lambda: robustbench_wrapped(net, MEAN, STD),
               "sequential": lambda: torch.nn.Sequential(robustbench_wrapped(net, MEAN, STD)[0], net),
               "mu_sigma": lambda: MuSigma(net, MEAN, STD)}[form]().eval()
    torch.save(wrapped.state_dict(), tmp_path / "w.pt")
    key = {"robustbench": "normalize.mean", "sequential": "0.mean", "mu_sigma": "mu"}[form]
    assert key in wrapped.state_dict()
    model, report = load_foreign("resnet18", tmp_path / "w.pt")
    check_same(wrapped, model, images())  # the wrapper normalises itself: feed it raw [0,1] inputs
    assert report["normalization"]["source"] == f"file ({key})"
    # giving the same stats again is fine, different ones are refused
    load_foreign("resnet18", tmp_path / "w.pt", input_mean=MEAN, input_std=STD)
    with pytest.raises(ValueError, match=r"^the file holds its own normalisation \(" + key.replace(".", r"\.")):
        load_foreign("resnet18", tmp_path / "w.pt", input_mean=[0.5] * 3, input_std=[0.5] * 3)


def test_torchvision_style_aliases_are_renamed(resnet_files, tmp_path):
    net, _ = resnet_files
    sd = {k.replace(".shortcut.", ".downsample.").replace("linear.", "fc."): v for k, v in net.state_dict().items()}
    torch.save(sd, tmp_path / "w.pt")
    model, report = load_foreign("resnet18", tmp_path / "w.pt")
    check_same(net, model, images())
    assert report["renamed"]["fc.weight"] == "linear.weight" and "layer2.0.downsample.0.weight" in report["renamed"]


@pytest.mark.parametrize("form", ["trades", "robustbench"])
def test_wide_resnet_layouts_give_the_foreign_logits(form):
    """The WRN block order at a small size (WRN-10-2, robustfront's WideResNet class), through the
    same renaming step load_foreign uses: TRADES' state (with sub_block1), and RobustBench's
    normalize_model around a net built with bias_last=False."""
    from robustfront.models.foreign import fit_state
    from robustfront.models.weights import split_normalization
    from robustfront.models.wide_resnet import WideResNet
    torch.manual_seed(3)
    net = randomize_bn(TradesWRN(10, 2, sub_block1=form == "trades", bias_last=form == "trades"))
    foreign = robustbench_wrapped(net, MEAN, STD).eval() if form == "robustbench" else net
    state, found = split_normalization(dict(foreign.state_dict()))
    assert (found is None) == (form == "trades")
    stats = found or {"mean": [0.0], "std": [1.0]}
    model = WideResNet(10, 2, mean=stats["mean"], std=stats["std"])
    state, changes = fit_state(model, state, "wrn")
    model.load_state_dict(state, strict=True)
    check_same(foreign, model.eval(), images())
    if form == "trades":
        assert changes["dropped"] and all(k.startswith("sub_block1.") for k in changes["dropped"])
    else:
        assert changes["filled"] == ["fc.bias"] and not changes["dropped"]


def test_wrn28_10_trades_file_end_to_end(tmp_path):
    """The full-size WRN-28-10 from a TRADES-style file, one image."""
    torch.manual_seed(3)
    net = randomize_bn(TradesWRN(28, 10, sub_block1=True))
    torch.save(net.state_dict(), tmp_path / "trades.pt")
    model, report = load_foreign("wrn28_10", tmp_path / "trades.pt")
    check_same(net, model, images(1))
    assert report["layout"] == "wrn28_10 (TRADES, unused sub_block1)" and len(report["dropped"]) > 40


@pytest.mark.parametrize("depth, name", [(28, "wrn28_10"), (34, "wrn34_10")])
def test_full_size_wrn_keys_and_shapes_match(depth, name, monkeypatch):
    """On the meta device (no memory): every TRADES key but sub_block1 has its counterpart and shape."""
    import re
    from robustfront.models.foreign import DROP, guess_layout
    monkeypatch.setattr(torch.nn.init, "kaiming_normal_", lambda t, **kw: t)  # meta normal_ is slow to set up
    with torch.device("meta"):
        state = TradesWRN(depth, 10).state_dict()
        own = {k: v for k, v in create_model(name).state_dict().items() if not k.startswith("normalize.")}
    assert guess_layout(state).startswith(name)
    kept = {k: v for k, v in state.items() if not any(re.match(p, k) for p in DROP["wrn"])}
    assert len(kept) < len(state) and sorted(kept) == sorted(own)
    assert all(kept[k].shape == own[k].shape for k in own)


def test_file_saved_on_a_gpu_loads_on_the_cpu(resnet_files, tmp_path):
    """Rewrite the storages' location tag to cuda:0, as torch.save on a GPU writes it."""
    net, d = resnet_files
    with zipfile.ZipFile(d / "model.pt") as z:
        entries = {n: z.read(n) for n in z.namelist()}
    pkl = next(n for n in entries if n.endswith("data.pkl"))
    assert b"X\x03\x00\x00\x00cpu" in entries[pkl]
    entries[pkl] = entries[pkl].replace(b"X\x03\x00\x00\x00cpu", b"X\x06\x00\x00\x00cuda:0")
    with zipfile.ZipFile(tmp_path / "gpu.pt", "w", zipfile.ZIP_STORED) as z:
        for n, data in entries.items():
            z.writestr(n, data)
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(tmp_path / "gpu.pt", weights_only=True)
    model, _ = load_foreign("resnet18", tmp_path / "gpu.pt")
    check_same(net, model, images())


def test_mismatches_are_one_line_naming_keys(resnet_files, tmp_path):
    _, d = resnet_files
    torch.save(KuangliuNet(KPreAct, [2, 2, 2, 2], width=4).state_dict(), tmp_path / "preact.pt")
    with pytest.raises(ValueError) as e:
        load_foreign("resnet18", tmp_path / "preact.pt")
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"weights file {tmp_path / 'preact.pt'} does not fit resnet18: ")
    assert "missing key(s): bn1.bias" in msg and "unexpected key(s): layer1.0.bn1" not in msg
    assert msg.endswith("(the file looks like preact_resnet18 (no final bn))")
    sd = torch.load(d / "model.pt", weights_only=True)["model"]
    torch.save({**sd, "extra.weight": torch.zeros(3)}, tmp_path / "extra.pt")
    with pytest.raises(ValueError, match=r"1 unexpected key\(s\): extra\.weight"):
        load_foreign("resnet18", tmp_path / "extra.pt")
    with pytest.raises(ValueError, match=r"^num_classes=100 is not the file's; allowed: 10 \(the file's classifier"):
        load_foreign("resnet18", d / "model.pt", num_classes=100)
    with pytest.raises(ValueError, match=r"^input_mean/input_std: only one of them is given; allowed: both or neither$"):
        load_foreign("resnet18", d / "model.pt", input_mean=MEAN)
    with pytest.raises(ValueError, match=r"^unknown model 'resnet99'"):
        load_foreign("resnet99", d / "model.pt")


def test_robustfront_checkpoint_and_plain_export_load_too(tmp_path):
    from robustfront.models.export import export_plain
    torch.manual_seed(4)
    model = randomize_bn(create_model("resnet18", width=4, mean=MEAN, std=STD))
    torch.save({"model": model.state_dict(), "model_config": info(model).config}, tmp_path / "rf.pt")
    export_plain(model, tmp_path / "plain")
    for f in ("rf.pt", "plain.pt", "plain.safetensors"):
        loaded, report = load_foreign("resnet18", tmp_path / f)
        check_same(model, loaded, images())
        assert report["normalization"]["mean"] == pytest.approx(MEAN)


FACTORY = '''
import torch
from torch import nn

class Tiny(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Linear(4, num_classes)

    def forward(self, x):
        return self.head(torch.relu(self.conv(x)).mean((2, 3)))

def build(num_classes=10):
    return Tiny(num_classes)

def not_a_model():
    return 3

def broken():
    raise RuntimeError("no GPU here")
'''


def test_model_file_factory(tmp_path):
    (tmp_path / "net.py").write_text(FACTORY)
    net = load_factory(f"{tmp_path / 'net.py'}:build", num_classes=5)
    torch.manual_seed(5)
    for p in net.parameters():
        p.data.normal_()
    torch.save({"state_dict": net.state_dict()}, tmp_path / "w.pt")
    model, report = load_foreign(None, tmp_path / "w.pt", model_file=f"{tmp_path / 'net.py'}:build",
                                 num_classes=5, input_mean=MEAN, input_std=STD)
    check_same(net.eval(), model, images(), mean=MEAN, std=STD)
    assert report["layout"] == "model file" and list(model.state_dict())[:2] == ["normalize.mean", "normalize.std"]


@pytest.mark.parametrize("spec, match", [
    ("net.py", r"^model_file='net\.py' is invalid; allowed: path/to/module\.py:factory$"),
    ("missing.py:build", r"^model_file='missing\.py:build' is not found \(missing\.py does not exist\)"),
    ("{d}/net.py:nope", r"is unknown \('nope' is not a callable in the file\); allowed: a function or class of .*: "
                        r"Tiny, broken, build, not_a_model$"),
    ("{d}/net.py:not_a_model", r"not_a_model\(\) returned a int; allowed: a torch\.nn\.Module$"),
    ("{d}/net.py:broken", r"broken\(\) failed \(RuntimeError: no GPU here\)$"),
    ("{d}/bad.py:build", r"^model_file .*bad\.py could not be imported \(SyntaxError: "),
])
def test_model_file_errors_are_one_line(tmp_path, spec, match, monkeypatch):
    (tmp_path / "net.py").write_text(FACTORY)
    (tmp_path / "bad.py").write_text("def build(:\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=match) as e:
        load_factory(spec.format(d=tmp_path))
    assert "\n" not in str(e.value)


def test_stats_parsing_for_the_command_line():
    from robustfront.models.foreign import parse_stats
    assert parse_stats("input_mean", "0.4914,0.4822, 0.4465") == pytest.approx(MEAN)
    assert parse_stats("input_std", "0.5") == [0.5] and parse_stats("input_std", None) is None
    with pytest.raises(ValueError, match=r"^input_mean='0.5,x' is invalid; allowed: numbers separated by commas"):
        parse_stats("input_mean", "0.5,x")


@pytest.mark.parametrize("content, match", [
    (b"<!DOCTYPE html><html><body>Sign in</body></html>", r"is an HTML page \(a failed download\?\)"),
    (b"", r"is empty \(0 bytes\)"),
    (b"\x00\x01\x02garbage", r"is not a known weights format"),
])
def test_bad_weight_files_are_one_line(tmp_path, content, match):
    (tmp_path / "w.pth").write_bytes(content)
    with pytest.raises(ValueError, match=match) as e:
        load_foreign("resnet18", tmp_path / "w.pth")
    assert "\n" not in str(e.value)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_foreign("resnet18", tmp_path / "nope.pt")

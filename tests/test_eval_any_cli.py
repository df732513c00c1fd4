"""`robustfront eval` on weights trained elsewhere, `report --card`, `export`, and their one-line errors,
through the command line.

Every foreign layout is written by the test from an independently written net (tests/foreign_nets.py),
on a CIFAR-10 in the official pickle layout written by the test (labels = the net's own predictions, so
clean accuracy is 100% and the attacks have something to break). The reference is the same weights in
a robustfront checkpoint, built here from the documented key mapping (not by the loader under test):
both must give identical results, per-sample masks included.
"""
import json
import pickle

import pytest
import torch
from safetensors.torch import load_file, save_file

from foreign_nets import KBasic, KPreAct, KuangliuNet, TradesWRN, randomize_bn, robustbench_wrapped
from robustfront.cli import main
from robustfront.eval.card import validate_card
from robustfront.models import create_model
from robustfront.models.info import info as model_info

MEAN, STD = [0.4914, 0.4822, 0.4465], [0.2471, 0.2435, 0.2616]
QUICK = ["--attacks", "fgsm,pgd5,autoattack", "--eps", "1/255", "--aa-budget", "n_iter=2,n_queries=20",
         "--batch-size", "8"]
VOLATILE = {"time_s", "checkpoint", "foreign"}  # timings, and which file the weights came from


def stable(res):
    """The result without what differs between two runs of the same evaluation."""
    if isinstance(res, dict):
        return {k: stable(v) for k, v in res.items() if k not in VOLATILE}
    return [stable(v) for v in res] if isinstance(res, list) else res


def normalized(x, mean, std):
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def spread_head(net, head, x):
    """A random net's logits hardly depend on its input (one class everywhere): the classifier is
    redrawn on standardised features so that predictions vary and small budgets can flip them."""
    feats = {}
    hook = head.register_forward_hook(lambda m, i, o: feats.setdefault("in", i[0]))
    with torch.no_grad():
        net(x)
        hook.remove()
        f = feats["in"]
        head.weight.copy_(0.3 * torch.randn_like(head.weight) / (f.std(0) + 1e-6))
        if head.bias is not None:
            head.bias.copy_(-(f.mean(0) @ head.weight.T))
    return net


def write_cifar10(root, net, n=24, seed=0, stats=None, head=None):
    """A tiny CIFAR-10 in the official pickle layout; test labels = `net`'s predictions (its classifier
    `head` spread first, see spread_head)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)
    xf = x.float() / 255
    xn = xf if stats is None else normalized(xf, *stats)
    if head is not None:
        spread_head(net, head, xn)
    with torch.no_grad():
        y = net(xn).argmax(1)
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    batch = lambda xs, ys: {"data": xs.reshape(len(xs), -1).numpy(), "labels": ys.tolist()}  # noqa: E731
    for i in range(1, 6):
        (d / f"data_batch_{i}").write_bytes(pickle.dumps(batch(x[:2], y[:2])))
    (d / "test_batch").write_bytes(pickle.dumps(batch(x, y)))
    (d / "batches.meta").write_bytes(pickle.dumps({"label_names": [f"class{i}" for i in range(10)]}))
    return root


def rf_checkpoint(path, name, state, mean, std, **opts):
    """The weights in a robustfront checkpoint, keys mapped as docs/evaluation_any_model.md documents."""
    model = create_model(name, mean=mean, std=std, **opts)
    model.load_state_dict({**state, "normalize.mean": model.normalize.mean, "normalize.std": model.normalize.std},
                          strict=True)
    torch.save({"model": model.state_dict(), "model_config": model_info(model).config}, path)
    return model


def cli_json(*args):
    assert main([*map(str, args)]) == 0
    return json.loads(open(args[args.index("--out") + 1]).read())


RESNETS = {  # layout -> (robustfront model, options, foreign net, how the file is written, stats given)
    "kuangliu_resnet18.pt": ("resnet18", {"width": 4}, lambda: KuangliuNet(KBasic, [2, 2, 2, 2], width=4),
                             lambda sd: sd, False),
    "kuangliu_preact18_dataparallel.pth": ("preact_resnet18", {"width": 4, "head_bn": False},
                                           lambda: KuangliuNet(KPreAct, [2, 2, 2, 2], width=4),
                                           lambda sd: {"state_dict": {f"module.{k}": v for k, v in sd.items()}}, True),
    "rice_awp_preact18.safetensors": ("preact_resnet18", {"width": 4},
                                      lambda: KuangliuNet(KPreAct, [2, 2, 2, 2], width=4, final_bn=True),
                                      lambda sd: sd, False),
}


@pytest.mark.parametrize("layout", list(RESNETS))
def test_foreign_layout_evaluates_like_the_same_weights_in_a_robustfront_checkpoint(layout, tmp_path):
    name, opts, build, wrap, stats = RESNETS[layout]
    torch.manual_seed(5)
    net = randomize_bn(build())
    root = write_cifar10(tmp_path / "c10", net, n=16, stats=(MEAN, STD) if stats else None, head=net.linear)
    sd = net.state_dict()
    f = tmp_path / layout
    if f.suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in sd.items()}, f)
    else:
        torch.save(wrap(sd), f)
    mean, std = (MEAN, STD) if stats else ([0.0] * 3, [1.0] * 3)
    rf_checkpoint(tmp_path / "rf.pt", name, sd, mean, std, **opts)
    data = ["--data", "cifar10", "--data-root", root]
    given = ["--input-mean", ",".join(map(str, MEAN)), "--input-std", ",".join(map(str, STD))] if stats else []
    theirs = cli_json("eval", "--model", name, "--weights", f, *given, *data, *QUICK, "--out", tmp_path / "f.json")
    ours = cli_json("eval", "--checkpoint", tmp_path / "rf.pt", *data, *QUICK, "--out", tmp_path / "r.json")
    assert stable(theirs) == stable(ours)
    assert theirs["n"] == 16 and theirs["clean_acc"] == 1.0                  # labels are the net's predictions
    assert 0 < theirs["robust_acc"]["autoattack"] <= theirs["robust_acc"]["pgd5"] < 1.0  # they broke some, not all
    assert theirs["foreign"]["normalization"]["source"] == ("given" if stats else
                                                            "identity (none in the file, none given)")


def test_wide_resnet_files_trades_and_robustbench(tmp_path):
    """Full-size WRN-28-10 (TRADES file with its unused sub_block1; RobustBench's normalize_model with
    bias_last=False), on 2 points with FGSM: the CPU cost of a WRN, kept small."""
    torch.manual_seed(3)
    net = randomize_bn(TradesWRN(28, 10, sub_block1=True, bias_last=False))
    root = write_cifar10(tmp_path / "c10", robustbench_wrapped(net, MEAN, STD).eval(), n=2)
    sd = net.state_dict()
    torch.save(robustbench_wrapped(net, MEAN, STD).state_dict(), tmp_path / "rb.pt")
    kept = {k: v for k, v in sd.items() if not k.startswith("sub_block1.")}
    rf_checkpoint(tmp_path / "rf.pt", "wrn28_10", {**kept, "fc.bias": torch.zeros(10)}, MEAN, STD)
    args = ["--data", "cifar10", "--data-root", root, "--attacks", "fgsm", "--eps", "8/255", "--no-state"]
    theirs = cli_json("eval", "--model", "wrn28_10", "--weights", tmp_path / "rb.pt", *args, "--out", tmp_path / "f.json")
    ours = cli_json("eval", "--checkpoint", tmp_path / "rf.pt", *args, "--out", tmp_path / "r.json")
    assert stable(theirs) == stable(ours) and theirs["clean_acc"] == 1.0
    assert theirs["foreign"]["normalization"]["source"] == "file (normalize.mean)"
    assert theirs["foreign"]["filled"][0] == "fc.bias" and theirs["foreign"]["dropped"][0].startswith("sub_block1.")


FACTORY = """
from foreign_nets import KBasic, KuangliuNet

def build(num_classes=10):
    return KuangliuNet(KBasic, [2, 2, 2, 2], width=4, num_classes=num_classes)
"""


def test_model_file_factory_equals_the_python_api_on_the_net_itself(tmp_path):
    from robustfront.eval import evaluate
    torch.manual_seed(7)
    net = randomize_bn(KuangliuNet(KBasic, [2, 2, 2, 2], width=4))
    root = write_cifar10(tmp_path / "c10", net, n=16, head=net.linear)
    (tmp_path / "net.py").write_text(FACTORY)
    torch.save({"net": net.state_dict()}, tmp_path / "w.pth")
    res = cli_json("eval", "--model-file", f"{tmp_path / 'net.py'}:build", "--weights", tmp_path / "w.pth",
                   "--num-classes", 10, "--data", "cifar10", "--data-root", root, *QUICK, "--out", tmp_path / "e.json")
    from robustfront.data import load_dataset
    x, y = load_dataset("cifar10", root=root).tensors("test")
    api = evaluate(net, x, y, ["fgsm", "pgd5", "autoattack"], eps=1 / 255, batch_size=8,
                   budgets={"n_iter": 2, "n_queries": 20})
    for k in ("clean_acc", "robust_acc", "worst_case_acc", "masks", "autoattack_log"):
        assert res[k] == api[k], k
    assert res["model"] == f"{tmp_path / 'net.py'}:build"


def test_analyze_takes_foreign_weights_too(files, tmp_path):
    assert main(["analyze", "boundary", "--model", "resnet18", "--weights", str(files / "w.pt"), "--data", "cifar10",
                 "--data-root", str(files / "c10"), "--n", "2", "--directions", "4", "--max-steps", "4",
                 "--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "boundary.json").read_text())
    assert list(res["models"]) == ["w"] and len(res["models"]["w"]["min_distance"]) == 2


def test_card_from_an_eval_with_official_autoattack(tmp_path, capsys):
    """Also the README's one-command evaluation of a foreign CIFAR-10 checkpoint, as written there."""
    torch.manual_seed(9)
    net = randomize_bn(KuangliuNet(KBasic, [2, 2, 2, 2], width=4))
    root = write_cifar10(tmp_path / "c10", net, n=4, head=net.linear)
    torch.save(net.state_dict(), tmp_path / "w.pt")
    ev = tmp_path / "eval.json"
    res = cli_json("eval", "--model", "resnet18", "--weights", tmp_path / "w.pt", "--data", "cifar10", "--data-root",
                   root, "--attacks", "autoattack", "--eps", "8/255", "--out", ev)
    assert res["official_budgets"] and res["complete"]
    capsys.readouterr()
    (tmp_path / "card.yaml").write_text("name: Random ResNet\narchitecture: ResNet-18\nvenue: nowhere\nreported: 12.5\n"
                                        "id: Test2025Random\n")
    assert main(["report", "--card", str(ev), "--card-fields", str(tmp_path / "card.yaml"), "--card-venue", "ICML 2019",
                 "--card-link", "https://example.org", "--out", str(tmp_path / "model_info")]) == 0
    path = tmp_path / "model_info" / "cifar10" / "Linf" / "Test2025Random.json"
    assert capsys.readouterr().out.strip() == str(path)
    card = json.loads(path.read_text())
    assert validate_card(card) == card
    assert {k: card[k] for k in ("name", "architecture", "venue", "eps", "clean_acc", "reported", "dataset")} == {
        "name": "Random ResNet", "architecture": "ResNet-18", "venue": "ICML 2019", "eps": "8/255",
        "clean_acc": "100.00", "reported": "12.50", "dataset": "cifar10"}        # the flag overrides the YAML
    assert card["autoattack_acc"] == f"{100 * res['robust_acc']['autoattack']:.2f}"
    assert "AutoAttack on 4 of the 10000 test points." in card["footnote"]


def test_export_round_trips_without_robustfronts_loader(tmp_path):
    torch.manual_seed(6)
    model = randomize_bn(create_model("resnet18", width=4, mean=MEAN, std=STD))
    torch.save({"model": model.state_dict(), "model_config": model_info(model).config}, tmp_path / "best.pt")
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        want = model(x)
    for out, read in (("plain.pt", lambda p: torch.load(p, weights_only=True)), ("plain.safetensors", load_file)):
        assert main(["export", str(tmp_path / "best.pt"), "--out", str(tmp_path / out)]) == 0
        state = dict(read(str(tmp_path / out)))
        info = json.loads((tmp_path / "plain.json").read_text())
        assert info["files"] == [out] and info["mean"] == pytest.approx(MEAN)
        mean, std = state.pop("normalize.mean").view(1, -1, 1, 1), state.pop("normalize.std").view(1, -1, 1, 1)
        net = KuangliuNet(KBasic, [2, 2, 2, 2], width=4)   # code that has never seen robustfront
        net.load_state_dict(state, strict=True)
        with torch.no_grad():
            assert torch.allclose(net.eval()((x - mean) / std), want, atol=1e-5)


def test_export_merges_a_fine_tuning_delta(tmp_path, capsys):
    from robustfront.models import load_pretrained, peft_state_dict, prepare_finetune
    small = dict(input_size=16, embed_dim=24, depth=2, num_heads=3)
    torch.manual_seed(3)
    base = create_model("vit_tiny_patch4_32", 1000, **small)
    torch.save({"state_dict": {k: v for k, v in base.state_dict().items() if not k.startswith("normalize.")}},
               tmp_path / "base.pth")
    model = create_model("vit_tiny_patch4_32", 7, **small)
    load_pretrained(model, tmp_path / "base.pth", input_mean=0.5, input_std=0.25)
    prepare_finetune(model, "lora", lora_targets="qkv,fc2")
    for p in [p for p in model.parameters() if p.requires_grad]:
        p.data.add_(0.05 * torch.randn_like(p))                      # a trained delta: B != 0
    torch.save(peft_state_dict(model.eval()), tmp_path / "delta.pt")
    assert main(["export", str(tmp_path / "delta.pt"), "--out", str(tmp_path / "m.safetensors")]) == 2
    assert "is a fine-tuning checkpoint (mode lora)" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "delta.pt"), "--merge", "--out", str(tmp_path / "m.safetensors")]) == 0
    bare, info = load_file(str(tmp_path / "m.safetensors")), json.loads((tmp_path / "m.json").read_text())
    assert not any("lora" in k for k in bare) and "NOT inside" in info["format"]
    plain = create_model("vit_tiny_patch4_32", 7, **small)               # the original architecture, no LoRA
    plain.load_state_dict({**bare, "normalize.mean": torch.tensor(info["mean"]),
                           "normalize.std": torch.tensor(info["std"])}, strict=True)
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(plain.eval()(x), model(x), atol=1e-5)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    net = randomize_bn(KuangliuNet(KBasic, [2, 2, 2, 2], width=4))
    write_cifar10(d / "c10", net, n=8, head=net.linear)
    torch.save(net.state_dict(), d / "w.pt")
    torch.save(KuangliuNet(KPreAct, [2, 2, 2, 2], width=4).state_dict(), d / "preact.pt")
    rf_checkpoint(d / "rf.pt", "resnet18", net.state_dict(), [0.0] * 3, [1.0] * 3, width=4)
    return d


@pytest.mark.parametrize("args, needle", [
    (["eval", "--weights", "{d}/w.pt", "--data", "cifar10"], "--weights needs its architecture; allowed: --model"),
    (["eval", "--model", "resnet18", "--weights", "{d}/w.pt"], "--data is required with foreign weights"),
    (["eval", "--checkpoint", "{d}/rf.pt", "--input-mean", "0.5"], "--input-mean describes foreign weights"),
    (["eval", "--model", "resnet18", "--weights", "{d}/preact.pt", "--data", "cifar10"], "does not fit resnet18"),
    (["eval", "--model", "resnet99", "--weights", "{d}/w.pt", "--data", "cifar10"], "unknown model 'resnet99'"),
    (["eval", "--model", "resnet18", "--weights", "{d}/w.pt", "--data", "cifar10", "--num-classes", "100"],
     "num_classes=100 is not the file's"),
    (["eval", "--checkpoint", "{d}/rf.pt", "--data", "cifar10", "--data-root", "{d}/c10", "--n", "9"],
     "n=9 is larger than the test split of cifar10 (8 images); allowed: 1 to 8"),
    (["eval", "--checkpoint", "{d}/rf.pt", "--eps", "8/255,4/255,8/255"],
     "eps='8/255,4/255,8/255' is a list with '8/255' twice; allowed: distinct budgets"),
    (["eval", "--checkpoint", "{d}/rf.pt", "--attacks", "pgd20,deepfool"], "unknown attack 'deepfool'; allowed:"),
    (["eval", "--checkpoint", "{d}/rf.pt", "--attacks", "apgd_ce,apgd-ce"], "names apgd_ce twice"),
    (["eval", "--checkpoint", "{d}/rf.pt", "--shard", "2/2"], "shard='2/2' is out of range"),
    (["eval", "--checkpoint", "{d}/rf.pt", "--data", "cifar10", "--data-root", "{d}/c10", "--shard", "0/2"],
     "--shard 0/2 keeps its part in a state folder"),
    (["eval", "--merge", "{d}/nothing"], "has no suite.json"),
    (["eval", "--merge", "{d}/nothing", "--checkpoint", "{d}/rf.pt"], "combined with a model"),
    (["eval", "--checkpoint", "{d}/rf.pt", "--chunk-size", "0"], "chunk_size='0' is invalid"),
    (["eval", "--checkpoint", "{d}/rf.pt", "--attacks", "pgd20", "--aa-budget", "n_iter=3"],
     "given without one"),
    (["eval", "--checkpoint", "{d}/rf.pt", "--sanity", "--shard", "0/2", "--state", "{d}/s"],
     "--sanity runs its checks on all points in one process"),
    (["export", "{d}/rf.pt", "--out", "{d}/x.txt"], "out='{d}/x.txt' is not a weights file name"),
    (["report", "--card", "{d}/nothing.json", "--card-name", "n", "--card-architecture", "a", "--out", "{d}/c"],
     "does not exist"),
    (["report", "--card", "{d}/nothing.json", "--out", "{d}/c"], "the card needs its name"),
])
def test_bad_requests_are_one_line_exit_2(files, args, needle, capsys):
    args = [a.format(d=files) for a in args]
    assert main(args) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and needle.format(d=files) in err[0], err


def test_a_changed_request_on_the_same_state_is_refused(files, tmp_path, capsys):
    args = ["eval", "--checkpoint", str(files / "rf.pt"), "--data", "cifar10", "--data-root", str(files / "c10"),
            "--attacks", "fgsm", "--out", str(tmp_path / "e.json")]
    assert main(args) == 0
    capsys.readouterr()
    assert main([*args, "--seed", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "was written for seed=0, this run has seed=1; allowed: the same settings, or another state folder" in err

"""The real timm and peft (no stubs): run in the second environment (.venv-timm, see README "Tests"),
skipped where they are not installed. Every weights file is built here (pretrained=False): no network.

Covers: the built-in ViT against timm.create_model on the same weights; `timm:` ViT, Swin and ResNet
fine-tuned from a 224-px file at 32 px (timm's own filter adapts it) with two CA-AT steps in each
fine-tuning mode, then evaluated from the checkpoint and, exported, as `--model timm:NAME --weights`;
robustfront's LoRA against peft's; a hub export loaded by timm.create_model(..., pretrained_cfg_overlay=
dict(file=...)). The peft library through the Trainer: tests/test_peft.py's peft_library tests, run in
the same environment (.ci/run names them)."""
import json

import pytest
import torch
import torch.nn.functional as F

timm = pytest.importorskip("timm")
peft = pytest.importorskip("peft")

from robustfront.cli import main  # noqa: E402
from robustfront.models import (attack_view, create_model, export_merged, load_model, prepare_finetune,  # noqa: E402
                                trainable_parameters)
from robustfront.models.vit import TIMM_TAGS  # noqa: E402
from robustfront.models.info import info  # noqa: E402

D, DEPTH, K = 24, 2, 7


def x_batch(n=4, size=32, seed=0):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", sorted(TIMM_TAGS))
def test_builtin_vit_equals_timm_on_the_same_weights_and_statistics(name):
    net = timm.create_model(name, pretrained=False, num_classes=K, img_size=32, embed_dim=D, depth=DEPTH,
                            num_heads=3).eval()
    ours = create_model(name, K, input_size=32, embed_dim=D, depth=DEPTH, num_heads=3).eval()
    ours.load_state_dict({**net.state_dict(), "normalize.mean": ours.normalize.mean,
                          "normalize.std": ours.normalize.std}, strict=True)
    cfg = timm.models.get_pretrained_cfg(name)
    assert (cfg.tag, tuple(ours.normalize.mean_values), tuple(ours.normalize.std_values)) == \
        (TIMM_TAGS[name][0], tuple(cfg.mean), tuple(cfg.std))   # one name, one normaliser in both forms
    x = x_batch()
    mean, std = torch.tensor(cfg.mean).view(1, 3, 1, 1), torch.tensor(cfg.std).view(1, 3, 1, 1)
    with torch.no_grad():
        assert torch.allclose(ours(x), net((x - mean) / std), atol=1e-5)
        wrapped = create_model("timm:" + name, K, input_size=32, timm_kwargs=dict(embed_dim=D, depth=DEPTH,
                                                                                   num_heads=3)).eval()
        wrapped.net.load_state_dict(net.state_dict())
        assert torch.allclose(wrapped(x), ours(x), atol=1e-5)


@pytest.fixture(scope="module")
def files_224(tmp_path_factory):
    """timm's own 224-px, 1000-class state dicts, as a published file would hold them."""
    root = tmp_path_factory.mktemp("timm224")
    out = {}
    for name in ("vit_tiny_patch16_224", "swin_tiny_patch4_window7_224", "resnet18"):
        torch.manual_seed(0)
        torch.save(timm.create_model(name, pretrained=False).state_dict(), root / f"{name}.pth")
        out[name] = root / f"{name}.pth"
    return out


def rgb_folder(root, classes=3, train=6, test=2):
    """train/<class>/ + test/<class>/ of 40-px RGB PNGs: class c is a bright block at row 10 c."""
    import numpy as np
    from PIL import Image
    rng = np.random.default_rng(0)
    for split, n in (("train", train), ("test", test)):
        for c in range(classes):
            (root / split / f"c{c}").mkdir(parents=True)
            for i in range(n):
                img = rng.integers(0, 60, (40, 40, 3), dtype=np.uint8)
                img[10 * c:10 * c + 12, 5:35] = 220
                Image.fromarray(img).save(root / split / f"c{c}" / f"{i}.png")
    return root


CASES = [("vit_tiny_patch16_224", m) for m in ("linear", "adapter", "lora")] + \
        [("swin_tiny_patch4_window7_224", m) for m in ("linear", "adapter", "lora")] + \
        [("resnet18", m) for m in ("linear", "full")]   # a CNN has no *.mlp / qkv for adapters and LoRA


@pytest.mark.parametrize("name,mode", CASES)
def test_timm_224_file_fine_tunes_at_32_px_with_ca_at_and_evaluates(name, mode, files_224, tmp_path, capsys,
                                                                      monkeypatch):
    monkeypatch.setenv("ROBUSTFRONT_CACHE", str(tmp_path / "cache"))
    out, data = tmp_path / "run", str(rgb_folder(tmp_path / "imgs"))
    # 18 training images less 2 held out, batches of 8: two CA-AT steps
    assert main(["train", "--data", data, "--val-size", "2", "--resize", "32", "--model", f"timm:{name}", "--pretrained",
                 str(files_224[name]), "--finetune", mode, "--method", "ca_at", "--epochs", "1", "--batch-size", "8", "--attack-steps", "1", "--eps", "8/255", "--eval-steps", "1",
                 "--lr", "0.01", "--no-progress", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    report = json.loads((out / "pretrained.json").read_text())
    cfg = timm.models.get_pretrained_cfg(name)
    assert report["normalize"].startswith(f"model default, assumed: timm pretrained_cfg of {name}.{cfg.tag}")
    assert f"mean={list(cfg.mean)}" in err and "assumed" in err     # said on stderr, not only in the file
    adapted = {"vit_tiny_patch16_224": "pos_embed (1, 197, 192) -> (1, 5, 192) by timm's "
                                       "timm.models.vision_transformer.checkpoint_filter_fn",
               "swin_tiny_patch4_window7_224": "relative_position_bias_table (169, 6) -> (49, 6) by timm's "
                                               "timm.models.swin_transformer.checkpoint_filter_fn"}.get(name)
    assert (adapted is None and report["notes"] == []) or any(adapted in n for n in report["notes"]), report["notes"]
    assert report["finetune"]["mode"] == mode
    ck = out / "checkpoints" / "last.pt"
    assert main(["eval", "--checkpoint", str(ck), "--attacks", "pgd20", "--no-state", "--out",
                 str(tmp_path / "eval.json")]) == 0
    ev = json.loads((tmp_path / "eval.json").read_text())
    assert ev["n"] == 6 and 0 <= ev["robust_acc"]["pgd20"] <= ev["clean_acc"] <= 1
    if mode not in ("lora", "full"):
        return
    # the fine-tuned model as bare timm tensors, evaluated as foreign weights of timm:NAME
    assert main(["export", str(ck), "--merge", "--out", str(tmp_path / "merged.safetensors")]) == 0
    capsys.readouterr()
    assert main(["eval", "--model", f"timm:{name}", "--weights", str(tmp_path / "merged.safetensors"), "--data",
                 data, "--resize", "32", "--attacks", "pgd20", "--no-state", "--out",
                 str(tmp_path / "foreign.json")]) == 0
    fe = json.loads((tmp_path / "foreign.json").read_text())
    assert "assumed: timm pretrained_cfg" in capsys.readouterr().err
    assert fe["clean_acc"] == ev["clean_acc"] and fe["robust_acc"] == ev["robust_acc"]


def test_timm_wrapper_contract(tmp_path):
    """Normalize first, timm's pretrained_cfg statistics, timm's classifier as the head, a plain timm
    state dict loading with a new head, and load_model rebuilding the wrapper (a CNN: no img_size)."""
    from robustfront.models import Normalize, find_head, load_model, load_pretrained
    model = create_model("timm:resnet18", 4, input_size=16).eval()
    cfg = timm.models.get_pretrained_cfg("resnet18")
    assert isinstance(next(model.children()), Normalize) and info(model).config["name"] == "timm:resnet18"
    assert info(model).config["mean"] == pytest.approx(list(cfg.mean)) and find_head(model) == "net.fc"
    net = timm.create_model("resnet18", pretrained=False).eval()   # 1000 classes
    torch.save(net.state_dict(), tmp_path / "timm.pth")
    report = load_pretrained(model, tmp_path / "timm.pth", num_classes=None)
    assert report["head"] == "new (the file's head does not fit)" and report["notes"] == []
    x = x_batch(2, 16)
    with torch.no_grad():
        feats = net.forward_head(net.forward_features(model.normalize(x)), pre_logits=True)
        assert torch.allclose(model(x), model.net.fc(feats), atol=1e-5)
        again = load_model({"model": model.state_dict(), "model_config": info(model).config})
        assert torch.equal(again(x), model(x))
    assert info(create_model("timm:resnet18", 4, mean=[0.5], std=[0.25])).config["mean"] == [0.5]
    with pytest.raises(ValueError, match=r"^timm_kwargs=\[1\] is invalid"):
        create_model("timm:resnet18", 2, timm_kwargs=[1])


def test_timm_unknown_name_and_a_file_of_no_size(tmp_path):
    with pytest.raises(ValueError, match=r"^model='timm:nope_net' is unknown to timm"):
        create_model("timm:nope_net", 2)
    torch.save({"pos_embed": torch.zeros(1, 7, 192)}, tmp_path / "odd.pth")
    from robustfront.models import load_foreign
    with pytest.raises(ValueError, match=r"does not fit timm:vit_tiny_patch16_224 at any input size"):
        load_foreign("timm:vit_tiny_patch16_224", tmp_path / "odd.pth")


def test_hub_export_of_a_timm_architecture_loads_in_timm(tmp_path):
    from robustfront.models.hub import write_hub
    torch.manual_seed(0)
    model = create_model("timm:vit_tiny_patch16_224", 3, input_size=32).eval()
    write_hub(model, tmp_path / "hub", train_config={"eps": "8/255", "norm": "Linf", "method": "ca_at"})
    config = json.loads((tmp_path / "hub" / "config.json").read_text())
    assert config["architecture"] == "vit_tiny_patch16_224" and config["model_args"] == {"img_size": 32}
    net = timm.create_model(config["architecture"], pretrained=True, num_classes=config["num_classes"],
                            **config["model_args"],
                            pretrained_cfg_overlay=dict(file=str(tmp_path / "hub" / "model.safetensors"),
                                                        num_classes=config["num_classes"])).eval()
    x = x_batch(2)
    norm = config["normalizer"]
    mean, std = torch.tensor(norm["mean"]).view(1, 3, 1, 1), torch.tensor(norm["std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        assert torch.allclose(net((x - mean) / std), model(x), atol=1e-6)
    # the built-in ViT under the same name exports the same way
    ours = create_model("vit_tiny_patch16_224", 3, input_size=32).eval()
    write_hub(ours, tmp_path / "hub2")
    config = json.loads((tmp_path / "hub2" / "config.json").read_text())
    net = timm.create_model("vit_tiny_patch16_224", pretrained=True, num_classes=3, **config["model_args"],
                            pretrained_cfg_overlay=dict(file=str(tmp_path / "hub2" / "model.safetensors"),
                                                        num_classes=3)).eval()
    with torch.no_grad():
        assert torch.allclose(net((x - 0.5) / 0.5), ours(x), atol=1e-5)


# ---------------------------------------------------------------- robustfront's LoRA against peft's

def small_vit(seed=1):
    torch.manual_seed(seed)
    return create_model("vit_tiny_patch4_32", K, input_size=16, embed_dim=D, depth=DEPTH, num_heads=3)


def test_lora_targets_map_to_peft_and_compute_the_same():
    base = small_vit()
    ours = prepare_finetune(small_vit(), "lora", lora_rank=4, lora_alpha=8, lora_targets="qkv,proj")
    listed = peft.get_peft_model(small_vit(), peft.LoraConfig(r=4, lora_alpha=8, target_modules=["qkv", "proj"]))
    # peft's list form matches any module whose name ends in a target: patch_embed.proj (a conv) too
    assert len([n for n, _ in listed.named_modules() if n.endswith(("qkv", "proj")) and hasattr(_, "lora_A")]) == \
        2 * DEPTH + 1
    pm = peft.get_peft_model(base, peft.LoraConfig(r=4, lora_alpha=8, target_modules=r".*attn\.(qkv|proj)",
                                                   modules_to_save=["head"]))
    ours_lora = {n: m for n, m in ours.named_modules() if hasattr(m, "lora_A") and isinstance(m.lora_A, torch.nn.Parameter)}
    assert len(ours_lora) == 2 * DEPTH
    g = torch.Generator().manual_seed(3)
    for n, m in ours_lora.items():   # the same (nonzero) factors in both
        m.lora_B.data = torch.randn(m.lora_B.shape, generator=g) * 0.1
        pmod = pm.get_submodule("base_model.model." + n)
        pmod.lora_A["default"].weight.data = m.lora_A.data.clone()
        pmod.lora_B["default"].weight.data = m.lora_B.data.clone()
    pm.base_model.model.head.modules_to_save["default"].load_state_dict(ours.head.state_dict())
    assert sum(p.numel() for p in trainable_parameters(ours)) == sum(p.numel() for p in trainable_parameters(pm))
    x, y = x_batch(6, 16), torch.arange(6) % K
    assert torch.allclose(ours(x), pm(x), atol=1e-6)
    go = torch.autograd.grad(F.cross_entropy(ours(x), y), [m.lora_B for m in ours_lora.values()])
    gp = torch.autograd.grad(F.cross_entropy(pm(x), y), [pm.get_submodule("base_model.model." + n)
                                                          .lora_B["default"].weight for n in ours_lora])
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(go, gp))
    merged = pm.merge_and_unload().state_dict()
    mine = export_merged(ours)
    assert all(torch.allclose(mine[n + ".weight"], merged[n + ".weight"], atol=1e-6) for n in ours_lora)
    with torch.no_grad():
        assert torch.allclose(attack_view(ours)(x), ours(x), atol=1e-5)

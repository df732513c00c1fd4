"""Built-in ViT: timm's key layout and numerics (checked against a reference written here), position
embedding resampling, the `timm:` import-error path, and load_pretrained from files (the real timm:
test_timm_real.py)."""
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustfront.models import (IMAGENET_MEAN, IMAGENET_STD, Normalize, create_model, find_head,
                                load_pretrained)
from robustfront.models.vit import resample_pos_embed
from robustfront.models.info import info

# a small ViT of the 32-px family: 16-px inputs, 4-px patches -> 4x4 grid, 17 tokens
SMALL = dict(input_size=16, embed_dim=24, depth=2, num_heads=3)


def timm_layout(dim=24, depth=2, patch=4, grid=4, channels=3, classes=5, hidden=96):
    """Names and shapes of timm's VisionTransformer state dict (defaults: class token, qkv bias)."""
    shapes = {"cls_token": (1, 1, dim), "pos_embed": (1, grid * grid + 1, dim),
              "patch_embed.proj.weight": (dim, channels, patch, patch), "patch_embed.proj.bias": (dim,)}
    for i in range(depth):
        b = f"blocks.{i}."
        shapes |= {b + "norm1.weight": (dim,), b + "norm1.bias": (dim,),
                   b + "attn.qkv.weight": (3 * dim, dim), b + "attn.qkv.bias": (3 * dim,),
                   b + "attn.proj.weight": (dim, dim), b + "attn.proj.bias": (dim,),
                   b + "norm2.weight": (dim,), b + "norm2.bias": (dim,),
                   b + "mlp.fc1.weight": (hidden, dim), b + "mlp.fc1.bias": (hidden,),
                   b + "mlp.fc2.weight": (dim, hidden), b + "mlp.fc2.bias": (dim,)}
    return shapes | {"norm.weight": (dim,), "norm.bias": (dim,), "head.weight": (classes, dim), "head.bias": (classes,)}


def random_state(shapes, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {k: (1.0 if k.endswith("norm1.weight") or k.endswith("norm2.weight") or k == "norm.weight" else 0.0)
            + 0.2 * torch.randn(s, generator=g) for k, s in shapes.items()}


def reference_forward(sd, x, heads, mean, std):
    """ViT forward from a timm state dict with torch.nn.functional ops and nn.MultiheadAttention."""
    x = (x - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)
    w = sd["patch_embed.proj.weight"]
    t = F.conv2d(x, w, sd["patch_embed.proj.bias"], stride=w.shape[-1]).flatten(2).transpose(1, 2)
    t = torch.cat([sd["cls_token"].expand(len(t), 1, -1), t], 1) + sd["pos_embed"]
    dim = t.shape[-1]
    depth = len({k.split(".")[1] for k in sd if k.startswith("blocks.")})
    for i in range(depth):
        p = {k[len(f"blocks.{i}."):]: v for k, v in sd.items() if k.startswith(f"blocks.{i}.")}
        mha = nn.MultiheadAttention(dim, heads, batch_first=True)
        with torch.no_grad():
            mha.in_proj_weight.copy_(p["attn.qkv.weight"])  # q rows, then k, then v; heads contiguous
            mha.in_proj_bias.copy_(p["attn.qkv.bias"])
            mha.out_proj.weight.copy_(p["attn.proj.weight"])
            mha.out_proj.bias.copy_(p["attn.proj.bias"])
        h = F.layer_norm(t, (dim,), p["norm1.weight"], p["norm1.bias"], eps=1e-6)
        t = t + mha(h, h, h, need_weights=False)[0]
        h = F.layer_norm(t, (dim,), p["norm2.weight"], p["norm2.bias"], eps=1e-6)
        h = F.gelu(F.linear(h, p["mlp.fc1.weight"], p["mlp.fc1.bias"]))  # exact (erf) GELU
        h = F.linear(h, p["mlp.fc2.weight"], p["mlp.fc2.bias"])
        t = t + h
    t = F.layer_norm(t, (dim,), sd["norm.weight"], sd["norm.bias"], eps=1e-6)
    return F.linear(t[:, 0], sd["head.weight"], sd["head.bias"])


def small_vit(classes=5, **kw):
    torch.manual_seed(1)
    return create_model("vit_tiny_patch4_32", classes, **(SMALL | kw)).eval()


def test_state_dict_is_timms_layout():
    model = small_vit()
    own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert own == timm_layout() | {"normalize.mean": (3,), "normalize.std": (3,)}
    assert isinstance(next(model.children()), Normalize)


def test_timm_state_dict_loads_strictly_and_gives_the_reference_logits(tmp_path):
    sd = random_state(timm_layout())
    torch.save(sd, tmp_path / "vit.pth")
    model = small_vit()
    report = load_pretrained(model, tmp_path / "vit.pth", input_mean="imagenet", input_std="imagenet")
    assert report["head"] == "loaded from the file" and report["loaded"] == len(sd)
    assert not report["missing"] and not report["unexpected"] and not report["shape_mismatch"]
    assert info(model).config["mean"] == pytest.approx(IMAGENET_MEAN) and info(model).pretrained["sha256"] == report["sha256"]
    x = torch.rand(3, 3, 16, 16)
    with torch.no_grad():
        ref = reference_forward(sd, x, 3, IMAGENET_MEAN, IMAGENET_STD)
        assert torch.allclose(model(x), ref, atol=1e-5, rtol=1e-5)
    fresh = small_vit()  # and a plain strict load_state_dict, once the normaliser's buffers are added
    buffers = {"normalize.mean": torch.tensor(IMAGENET_MEAN), "normalize.std": torch.tensor(IMAGENET_STD)}
    fresh.load_state_dict(sd | buffers)
    with torch.no_grad():
        assert torch.allclose(fresh(x), ref, atol=1e-5, rtol=1e-5)


def test_variants_defaults_and_parameter_counts():
    tiny = create_model("vit_tiny_patch16_224", 1000)
    # timm's published sizes: ViT-Ti/16 5,717,416 parameters, ViT-S/16 22,050,664 (1000 classes)
    assert sum(p.numel() for p in tiny.parameters()) == 5_717_416
    # the normaliser of timm's default tag for the same name (augreg: 0.5/0.5), not ImageNet's (issue 22)
    assert info(tiny).config["input_size"] == 224 and info(tiny).config["mean"] == info(tiny).config["std"] == [0.5] * 3
    assert tiny.pos_embed.shape == (1, 197, 192) and tiny.blocks[0].attn.num_heads == 3
    small = create_model("vit_small_patch16_224", 1000)
    assert sum(p.numel() for p in small.parameters()) == 22_050_664
    cifar = create_model("vit_small_patch4_32", 10, depth=1)
    assert cifar.pos_embed.shape == (1, 65, 384) and info(cifar).config["std"] == pytest.approx([0.2471, 0.2435, 0.2616])
    with torch.no_grad():
        assert cifar(torch.rand(2, 3, 32, 32)).shape == (2, 10)


def test_bad_sizes_are_one_line_errors():
    with pytest.raises(ValueError, match=r"^input_size=18 is invalid .*allowed: a multiple of 4$"):
        create_model("vit_tiny_patch4_32", 5, **(SMALL | {"input_size": 18}))
    with pytest.raises(ValueError, match=r"embed_dim=25 .*multiple of 3"):
        create_model("vit_tiny_patch4_32", 5, **(SMALL | {"embed_dim": 25}))
    with pytest.raises(ValueError, match=r"input size \(32, 32\) is invalid for this ViT; allowed: \(16, 16\)"):
        small_vit()(torch.rand(1, 3, 32, 32))


def test_pos_embed_resampling_keeps_cls_and_interpolates():
    dim = 2
    ramp = torch.arange(4.0)
    grid = torch.stack([ramp[:, None].expand(4, 4), ramp[None, :].expand(4, 4)], -1)  # (row, col) coordinates
    pe = torch.cat([torch.tensor([[[7.0, -3.0]]]), grid.reshape(1, 16, dim)], 1)
    out = resample_pos_embed(pe, 8)
    assert out.shape == (1, 65, dim) and torch.equal(out[:, 0], pe[:, 0])
    img = out[0, 1:].reshape(8, 8, dim)
    # bicubic (any Keys kernel) reproduces linear functions where its 4 taps stay inside the grid:
    # output pixel i of a 4 -> 8 upsampling samples source coordinate (i + 0.5) / 2 - 0.5
    for i in (3, 4):
        assert torch.allclose(img[i, :, 0], torch.full((8,), i / 2 - 0.25), atol=1e-5)
        assert torch.allclose(img[:, i, 1], torch.full((8,), i / 2 - 0.25), atol=1e-5)
    assert torch.allclose(img[..., 0], img[..., 1].T, atol=1e-6)  # the two channels are transposes
    const = torch.full((1, 17, 3), 0.25)
    assert torch.allclose(resample_pos_embed(const, 2), torch.full((1, 5, 3), 0.25), atol=1e-6)
    assert torch.equal(resample_pos_embed(pe, 4), pe)


def test_load_pretrained_resamples_a_grid_of_another_size(tmp_path):
    sd = random_state(timm_layout(grid=2))  # trained on 8-px inputs (2x2 grid)
    torch.save({"model": sd}, tmp_path / "small_grid.pt")
    model = small_vit()  # 4x4 grid
    report = load_pretrained(model, tmp_path / "small_grid.pt")
    assert report["notes"] == ["pos_embed resampled from a 2x2 to a 4x4 grid (bicubic, class token kept)"]
    assert torch.equal(model.pos_embed[:, 0], sd["pos_embed"][:, 0])
    assert torch.allclose(model.pos_embed[:, 1:].mean(1), sd["pos_embed"][:, 1:].mean(1), atol=0.1)
    assert torch.equal(model.blocks[1].mlp.fc2.weight, sd["blocks.1.mlp.fc2.weight"])


# ---------------------------------------------------------------- load_pretrained: files and failures

def test_wrappers_prefixes_and_safetensors_load(tmp_path):
    from safetensors.torch import save_file
    sd = random_state(timm_layout())
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        ref = reference_forward(sd, x, 3, IMAGENET_MEAN, IMAGENET_STD)
    torch.save({"epoch": 3, "state_dict": {"module." + k: v for k, v in sd.items()}}, tmp_path / "wrapped.pth")
    save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp_path / "w.safetensors"))
    for name, fmt in (("wrapped.pth", "torch-zip"), ("w.safetensors", "safetensors")):
        model = small_vit()
        report = load_pretrained(model, tmp_path / name, input_mean=IMAGENET_MEAN, input_std=list(IMAGENET_STD))
        assert report["format"] == fmt
        with torch.no_grad():
            assert torch.allclose(model(x), ref, atol=1e-5, rtol=1e-5)


def one_line_error(fn, *patterns):
    with pytest.raises(ValueError) as e:
        fn()
    msg = str(e.value)
    assert "\n" not in msg, msg
    for p in patterns:
        assert p in msg, msg
    return msg


def test_bad_files_fail_loudly_in_one_line(tmp_path):
    (tmp_path / "page.pth").write_text("<!DOCTYPE html><html><body>Sign in to download</body></html>")
    one_line_error(lambda: load_pretrained(small_vit(), tmp_path / "page.pth"), "page.pth is an HTML page")
    sd = random_state(timm_layout())
    bad = dict(sd, **{"blocks.0.attn.qkv.weight": torch.zeros(72, 23)})
    torch.save(bad, tmp_path / "shape.pth")
    one_line_error(lambda: load_pretrained(small_vit(), tmp_path / "shape.pth"), "1 shape mismatch(es)",
                   "blocks.0.attn.qkv.weight file (72, 23) vs model (72, 24)", "only the head 'head' may differ")
    missing = {k: v for k, v in sd.items() if k != "blocks.1.norm1.weight"} | {"fc_norm.weight": torch.ones(24)}
    torch.save(missing, tmp_path / "missing.pth")
    one_line_error(lambda: load_pretrained(small_vit(), tmp_path / "missing.pth"),
                   "1 missing key(s): blocks.1.norm1.weight", "1 unexpected key(s): fc_norm.weight")
    torch.save(sd, tmp_path / "ok.pth")
    one_line_error(lambda: load_pretrained(small_vit(), tmp_path / "ok.pth", input_mean=[0.5, 0.5]),
                   "input_mean=[0.5, 0.5] is invalid for this model; allowed: one value or 3")


def test_head_of_another_size_is_left_new_and_num_classes_replaces_it(tmp_path):
    sd = random_state(timm_layout(classes=1000))
    torch.save(sd, tmp_path / "imagenet.pth")
    model = small_vit(classes=7)
    new_head = model.head.weight.clone()
    report = load_pretrained(model, tmp_path / "imagenet.pth")
    assert report["head"] == "new (the file's head does not fit)"
    assert sorted(k for k, _, _ in report["shape_mismatch"]) == ["head.bias", "head.weight"]
    assert torch.equal(model.head.weight, new_head) and torch.equal(model.norm.weight, sd["norm.weight"])
    assert report["normalize"].startswith("model default")

    model = small_vit(classes=1000)
    report = load_pretrained(model, tmp_path / "imagenet.pth", num_classes=3)
    assert report["head"] == "replaced: 1000 -> 3 classes"
    assert model.head.out_features == 3 and info(model).config["num_classes"] == 3
    assert torch.equal(model.blocks[0].attn.qkv.bias, sd["blocks.0.attn.qkv.bias"])
    with torch.no_grad():
        assert model(torch.rand(2, 3, 16, 16)).shape == (2, 3)


CNNS = {"resnet18": ("linear", {"width": 4}), "preact_resnet18": ("linear", {"width": 4}),
        "small_cnn": ("classifier", {"width": 4}), "mlp": ("net.4", {"hidden": [8, 8]}),
        "vit_tiny_patch4_32": ("head", SMALL)}


@pytest.mark.parametrize("name", sorted(CNNS))
def test_find_head_and_cnn_weights_from_a_prefixed_file(name, tmp_path):
    head, kw = CNNS[name]
    size = kw.get("input_size", 8)
    src = create_model(name, 10, **({"input_size": size} | kw)).eval()
    assert find_head(src) == head and src.get_submodule(head).out_features == 10
    # the file of another project: "model." prefix, no normaliser (mean/std given), a 10-class head
    state = {"model." + k: v for k, v in src.state_dict().items() if not k.startswith("normalize.")}
    torch.save(state, tmp_path / "cnn.pt")
    dst = create_model(name, 4, **({"input_size": size} | kw)).eval()
    report = load_pretrained(dst, tmp_path / "cnn.pt", input_mean=info(src).config["mean"], input_std=info(src).config["std"],
                             num_classes=10)
    assert report["head"] == "replaced: 4 -> 10 classes"
    dst.get_submodule(head).load_state_dict(src.get_submodule(head).state_dict())
    x = torch.rand(2, 3, size, size)
    with torch.no_grad():
        assert torch.allclose(dst(x), src(x), atol=1e-6)


def test_wrn_head_is_fc():
    from robustfront.models.wide_resnet import WideResNet
    assert find_head(WideResNet(depth=10, widen=1, num_classes=3)) == "fc"  # the wrn28_10 / wrn34_10 class


# ---------------------------------------------------------------- timm: models (the real timm: test_timm_real.py)

def test_timm_models_without_timm_name_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm -> ModuleNotFoundError
    one_line_error(lambda: create_model("timm:swin_tiny_patch4_window7_224", 200),
                   "timm:swin_tiny_patch4_window7_224 needs timm, which is not installed; allowed: "
                   "pip install 'robustfront[timm]'")

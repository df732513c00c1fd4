"""Fine-tuning modes: adapters and LoRA are the identity at start, only the trainable parameters move,
the combiners' gradient vectors have exactly their size, the attack view follows the training, and
PEFT checkpoints round-trip through load_model and export."""
import copy

import pytest
import torch
import torch.nn.functional as F

from robustfront.combiners import AGR, CAAT
from robustfront.models import (attack_view, create_model, export_merged, load_model, load_pretrained,
                                peft_state_dict, prepare_finetune, trainable_parameters)
from robustfront.models.adapters import Adapter, LoRALinear, MergedView
from robustfront.models.peft import export_file, merged_checkpoint, on_view, parameter_counts
from robustfront.models.info import info

D, DEPTH, K = 24, 2, 7  # width, blocks, classes of the small ViT (4x4 grid of 4-px patches on 16-px inputs)
SMALL = dict(input_size=16, embed_dim=D, depth=DEPTH, num_heads=3)


def vit(classes=K, seed=1):
    torch.manual_seed(seed)
    return create_model("vit_tiny_patch4_32", classes, **SMALL)


def batch(n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 16, 16, generator=g), torch.randint(0, K, (n,), generator=g)


def pgd(model, x, y, eps=8 / 255, steps=3):
    """L-inf PGD on the input only (written here, independent of robustfront.attacks)."""
    delta = torch.empty_like(x).uniform_(-eps, eps)
    for _ in range(steps):
        delta.requires_grad_(True)
        g, = torch.autograd.grad(F.cross_entropy(model((x + delta).clamp(0, 1)), y), delta)
        delta = (delta.detach() + eps / 4 * g.sign()).clamp(-eps, eps)
    return (x + delta).clamp(0, 1).detach()


def losses(model, x, y, view=None):
    x_adv = pgd(view or model, x, y)
    return F.cross_entropy(model(x), y), F.cross_entropy(model(x_adv), y)


def train_steps(model, steps=2, lr=0.5, opt="sgd"):
    params = trainable_parameters(model)
    opt = {"sgd": lambda: torch.optim.SGD(params, lr, momentum=0.9),
           # fused kernels update weights without moving autograd's version counters
           "fused_sgd": lambda: torch.optim.SGD(params, lr, momentum=0.9, fused=True),
           "adam": lambda: torch.optim.Adam(params, 1e-2)}[opt]()
    for i in range(steps):
        x, y = batch(seed=i)
        clean, adv = losses(model, x, y)
        opt.zero_grad()
        (clean + adv).backward()
        opt.step()
    return opt


def snapshot(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


# ---------------------------------------------------------------- identity at initialisation

def test_adapter_is_identity_at_init_and_placed_after_each_mlp():
    model = vit().eval()
    x, _ = batch()
    with torch.no_grad():
        before = model(x)
        prepare_finetune(model, "adapter")
        after = model(x)
    assert torch.equal(before, after)
    adapters = {n: m for n, m in model.named_modules() if isinstance(m, Adapter)}
    assert sorted(adapters) == [f"blocks.{i}.mlp.adapter" for i in range(DEPTH)]
    assert all(m.down.out_features == D // 8 and m.up.weight.abs().sum() == 0 for m in adapters.values())
    # the adapter acts on the MLP's output: mlp(h) = fc2(gelu(fc1(h))) + up(gelu(down(.)))
    blk, h = model.blocks[0], torch.randn(2, 5, D)
    with torch.no_grad():
        torch.nn.init.normal_(blk.mlp.adapter.up.weight)
        m = blk.mlp
        inner = m.fc2(F.gelu(m.fc1(h)))
        assert torch.allclose(m(h), inner + m.adapter.up(F.gelu(m.adapter.down(inner))), atol=1e-6)


def test_lora_with_zero_b_is_identity():
    model = vit().eval()
    x, _ = batch()
    with torch.no_grad():
        before = model(x)
        prepare_finetune(model, "lora", lora_rank=4, lora_targets="all")
        after = model(x)
    assert torch.equal(before, after)
    lora = {n: m for n, m in model.named_modules() if isinstance(m, LoRALinear)}
    assert sorted(lora) == sorted(f"blocks.{i}.{t}" for i in range(DEPTH)
                                  for t in ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2"))
    assert all(m.lora_B.abs().sum() == 0 and m.lora_A.abs().sum() > 0 for m in lora.values())


# ---------------------------------------------------------------- what trains

def expected_trainable(mode):
    head = D * K + K
    if mode == "linear":
        return head
    if mode == "adapter":
        h = D // 8
        return DEPTH * (D * h + h + h * D + D) + head
    r = 8  # LoRA on qkv (D -> 3D) and proj (D -> D) by default
    return DEPTH * (r * (D + 3 * D) + r * (D + D)) + head


@pytest.mark.parametrize("mode", ["linear", "adapter", "lora"])
def test_only_trainable_parameters_change_and_gradients_have_their_size(mode):
    model = vit()
    prepare_finetune(model, mode)
    counts = parameter_counts(model)
    assert counts["trainable"] == expected_trainable(mode) < counts["total"]
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    marker = {"linear": (), "adapter": (".adapter.",), "lora": (".lora_A", ".lora_B")}[mode]
    assert names == {n for n, _ in model.named_parameters() if n.startswith("head.") or any(t in n for t in marker)}

    params = trainable_parameters(model)
    clean, adv = losses(model, *batch())
    g_c = list(torch.autograd.grad(clean, params, retain_graph=True))
    g_a = list(torch.autograd.grad(adv, params))
    assert sum(g.numel() for g in g_c) == expected_trainable(mode)
    upd = CAAT(gamma=0.8).combine({"clean": g_c, "adv": g_a})
    assert [u.shape for u in upd] == [p.shape for p in params]
    flat_u, flat_c = torch.cat([u.flatten() for u in upd]), torch.cat([g.flatten() for g in g_c])
    assert torch.cosine_similarity(flat_u, flat_c, 0) >= 0.8 - 1e-4  # the cone, over exactly these parameters
    agr = AGR(start_epoch=0)
    agr.on_epoch(0)
    assert [u.shape for u in agr.combine({"clean": g_c, "adv": g_a})] == [p.shape for p in params]

    before = snapshot(model)
    train_steps(model, steps=2)  # two steps: B / up start at zero, so A / down move from step 2
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed == names


def test_full_mode_trains_everything():
    model = vit()
    prepare_finetune(model, "full")
    assert parameter_counts(model)["trainable"] == parameter_counts(model)["total"]


def test_linear_probe_of_a_cnn_keeps_frozen_batchnorm_in_eval():
    torch.manual_seed(0)
    model = create_model("resnet18", 3, width=4, input_size=8)
    prepare_finetune(model, "linear")
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["linear.weight", "linear.bias"]
    stats = model.bn1.running_mean.clone()
    model.train()
    assert not model.bn1.training and model.linear.training
    model(torch.rand(4, 3, 8, 8))
    assert torch.equal(model.bn1.running_mean, stats)
    assert attack_view(model) is model


def test_bad_modes_are_one_line_errors():
    cases = [(lambda: prepare_finetune(vit(), "qlora"),
              "finetune='qlora' is unknown; allowed: full, linear, adapter, lora"),
             (lambda: prepare_finetune(create_model("resnet18", 3, width=4), "adapter"),
              "finetune='adapter' is unavailable for resnet18: it has no module named *.mlp"),
             (lambda: prepare_finetune(create_model("small_cnn", 3, width=4), "lora"),
              "unavailable for small_cnn: it has no nn.Linear named qkv, proj"),
             (lambda: prepare_finetune(vit(), "lora", lora_targets="qkv,ffn"), "lora_targets='qkv,ffn' is invalid"),
             (lambda: prepare_finetune(vit(), "lora", lora_rank=0), "lora_rank=0 is invalid; allowed: an integer >= 1"),
             (lambda: prepare_finetune(prepare_finetune(vit(), "linear"), "adapter"),
              "already in mode 'linear'")]
    for fn, text in cases:
        with pytest.raises(ValueError) as e:
            fn()
        assert text in str(e.value) and "\n" not in str(e.value), str(e.value)


# ---------------------------------------------------------------- the attack view

@pytest.mark.parametrize("opt", ["sgd", "fused_sgd", "adam"])
def test_merged_view_equals_the_lora_model_and_follows_updates(opt):
    model = vit()
    prepare_finetune(model, "lora", lora_rank=4, lora_alpha=8, lora_targets="attn,mlp")
    view = attack_view(model)
    assert isinstance(view, MergedView) and view.net.head.weight is model.head.weight  # shared, not copied
    assert not any(isinstance(m, LoRALinear) for m in view.modules())
    train_steps(model, steps=2, opt=opt)  # B is nonzero now; the view was built before
    x, y = batch(seed=5)
    model.eval()
    with torch.no_grad():
        assert torch.allclose(view(x), model(x), atol=1e-5)
    xr = x.clone().requires_grad_(True)
    g_model, = torch.autograd.grad(F.cross_entropy(model(xr), y), xr)
    g_view, = torch.autograd.grad(F.cross_entropy(view(xr), y), xr)
    assert torch.allclose(g_view, g_model, atol=1e-6, rtol=1e-4)
    fresh = vit(seed=9)
    prepare_finetune(fresh, "lora", lora_rank=4, lora_alpha=8, lora_targets="attn,mlp")
    model.load_state_dict(fresh.state_dict())  # weights replaced in place: the view follows too
    with torch.no_grad():
        assert torch.allclose(view(x), fresh.eval()(x), atol=1e-5)
    # each LoRALinear folded into a plain linear gives the same outputs
    lin = model.blocks[0].attn.qkv
    h = torch.randn(3, D)
    with torch.no_grad():
        assert torch.allclose(lin.merge()(h), lin(h), atol=1e-5)
    run = on_view(lambda m, x, y: m, view)
    assert run(model, x, y) is view


def test_attack_view_is_the_model_where_merging_brings_nothing():
    for mode in ("full", "linear", "adapter"):
        model = prepare_finetune(vit(), mode)
        assert attack_view(model) is model
    lora = prepare_finetune(vit(), "lora")
    assert attack_view(lora, merge=False) is lora


# ---------------------------------------------------------------- checkpoints and export

@pytest.fixture
def base_file(tmp_path):
    torch.manual_seed(3)
    base = create_model("vit_tiny_patch4_32", 1000, **SMALL)  # "pretrained" with a 1000-class head
    torch.save({"state_dict": {k: v for k, v in base.state_dict().items() if not k.startswith("normalize.")}},
               tmp_path / "base.pth")
    return tmp_path / "base.pth"


def finetuned(base_file, mode, **kw):
    model = vit(seed=4)
    load_pretrained(model, base_file, input_mean=0.5, input_std=[0.25, 0.25, 0.25])
    prepare_finetune(model, mode, **kw)
    train_steps(model, steps=2)
    return model.eval()


@pytest.mark.parametrize("mode", ["lora", "adapter", "linear", "full"])
def test_delta_checkpoint_round_trips_through_load_model(base_file, tmp_path, mode):
    model = finetuned(base_file, mode)
    ck = peft_state_dict(model)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    expected = set(model.state_dict()) if mode == "full" else trainable | {"normalize.mean", "normalize.std"}
    assert set(ck["delta"]) == expected and ck["base"]["sha256"] == info(model).pretrained["sha256"]
    ema = copy.deepcopy(model).requires_grad_(False)  # an EMA copy: same structure, nothing trainable
    assert set(peft_state_dict(ema)["delta"]) == expected
    torch.save(ck, tmp_path / "delta.pt")
    again = load_model(tmp_path / "delta.pt")
    x, _ = batch(seed=7)
    with torch.no_grad():
        assert torch.allclose(again(x), model(x), atol=1e-6)
    assert info(again).peft == info(model).peft and again.normalize.mean.tolist() == [0.5] * 3


def test_delta_checks_the_base_file(base_file, tmp_path):
    model = finetuned(base_file, "lora")
    ck = peft_state_dict(model)
    moved = tmp_path / "elsewhere.pth"
    base_file.rename(moved)
    with pytest.raises(FileNotFoundError, match="pass base=PATH"):
        load_model(ck)
    from robustfront.models import load_peft
    x, _ = batch()
    with torch.no_grad():
        assert torch.allclose(load_peft(ck, base=moved)(x), model(x), atol=1e-6)
    other = torch.load(moved, weights_only=True)
    other["state_dict"]["norm.bias"] += 1
    torch.save(other, moved)
    with pytest.raises(ValueError, match=r"has another sha256 than the one the delta was trained on .*; allowed"):
        load_peft(ck, base=moved)


def test_model_without_a_base_file_saves_everything():
    model = prepare_finetune(vit(), "adapter")
    ck = peft_state_dict(model)
    assert ck["base"] is None and set(ck["delta"]) == set(model.state_dict())
    x, _ = batch()
    with torch.no_grad():
        assert torch.allclose(load_model(ck)(x), model.eval()(x), atol=1e-6)


def test_lora_export_is_the_original_architecture(base_file, tmp_path):
    model = finetuned(base_file, "lora", lora_targets="qkv,fc2")
    merged = export_merged(model)
    plain = vit()
    assert set(merged) == set(plain.state_dict())  # no lora_* keys
    plain.load_state_dict(merged)  # strict
    x, _ = batch(seed=2)
    with torch.no_grad():
        assert torch.allclose(plain.eval()(x), model(x), atol=1e-5)
    # `robustfront export --merge delta.pt out.safetensors`: bare timm keys, loadable as pretrained weights
    torch.save(peft_state_dict(model), tmp_path / "delta.pt")
    export_file(tmp_path / "delta.pt", tmp_path / "merged.safetensors")
    fresh = vit()
    report = load_pretrained(fresh, tmp_path / "merged.safetensors", input_mean=0.5, input_std=0.25)
    assert report["head"] == "loaded from the file" and report["format"] == "safetensors"
    with torch.no_grad():
        assert torch.allclose(fresh.eval()(x), model(x), atol=1e-5)
    export_file(tmp_path / "delta.pt", tmp_path / "plain.pt", plain=True)
    bare = torch.load(tmp_path / "plain.pt", weights_only=True)
    assert set(bare) == set(plain.state_dict()) - {"normalize.mean", "normalize.std"}


def test_adapter_export_keeps_adapters_and_loads_back(base_file, tmp_path):
    model = finetuned(base_file, "adapter", adapter_reduction=4)
    merged = export_merged(model)
    assert any(".adapter." in k for k in merged)
    assert merged_checkpoint(model)["peft"] == {"mode": "adapter", "adapter_reduction": 4}
    torch.save(peft_state_dict(model), tmp_path / "delta.pt")
    export_file(tmp_path / "delta.pt", tmp_path / "merged.pt")
    again = load_model(tmp_path / "merged.pt")
    x, _ = batch(seed=3)
    with torch.no_grad():
        assert torch.allclose(again(x), model(x), atol=1e-6)


# ---------------------------------------------------------------- the `peft` library (real in .venv-timm: .ci/run)

def test_peft_library_lora_trains_through_trainable_parameters():
    peft = pytest.importorskip("peft")
    model = vit()
    config = peft.LoraConfig(r=4, lora_alpha=4, target_modules=r".*attn\.(qkv|proj)", modules_to_save=["head"])
    pm = peft.get_peft_model(model, config)
    params = trainable_parameters(pm)
    names = [n for n, p in pm.named_parameters() if p.requires_grad]
    assert names and all("lora_" in n or "head" in n for n in names)
    expected = DEPTH * (4 * (D + 3 * D) + 4 * (D + D)) + D * K + K
    assert sum(p.numel() for p in params) == expected
    x, y = batch()
    x_adv = pgd(attack_view(pm), x, y)
    assert attack_view(pm) is pm
    g_c = list(torch.autograd.grad(F.cross_entropy(pm(x), y), params))
    g_a = list(torch.autograd.grad(F.cross_entropy(pm(x_adv), y), params))
    update = CAAT(gamma=0.9).combine({"clean": g_c, "adv": g_a})
    assert sum(u.numel() for u in update) == expected
    frozen = {n: p.detach().clone() for n, p in pm.named_parameters() if not p.requires_grad}
    opt = torch.optim.SGD(params, 0.1)
    for p, u in zip(params, update):
        p.grad = u
    opt.step()
    assert all(torch.equal(p, frozen[n]) for n, p in pm.named_parameters() if n in frozen)


def test_peft_library_lora_model_trains_through_the_trainer():
    """A model wrapped by the `peft` library (LoraConfig on the same module names) is an ordinary module
    for robustfront's Trainer: CA-AT's step updates the LoRA and head parameters only."""
    peft = pytest.importorskip("peft")
    import numpy as np

    from robustfront.data import DeviceLoader
    from robustfront.train import TrainConfig
    from robustfront.train.methods import build_method
    from robustfront.train.schedule import Schedule
    from robustfront.train.build import build_optimizer, training_threat
    from robustfront.train.trainer import Trainer
    pm = peft.get_peft_model(vit(), peft.LoraConfig(r=4, lora_alpha=4, target_modules=r".*attn\.(qkv|proj)",
                                                    modules_to_save=["head"]))
    cfg = TrainConfig(method="ca_at", opts={"gamma": 0.9}, eps="8/255", alpha="2/255", attack_steps=2, lr=0.5,
                      batch_size=8)
    objective, combiner = build_method(cfg, training_threat(cfg, (0.0, 1.0)))
    params = trainable_parameters(pm)
    x, y = batch(16)
    loader = DeviceLoader((x * 255).round().to(torch.uint8).numpy(), y.numpy().astype(np.int64), 8, crop=0,
                          flip=False)
    tr = Trainer(pm, objective, combiner, build_optimizer(cfg, params, torch.device("cpu")), loader,
                 Schedule("constant", 0.5, 2, 2))
    assert sum(p.numel() for p in tr.params) == sum(p.numel() for p in params)
    before = {n: p.detach().clone() for n, p in pm.named_parameters()}
    tr.on_epoch(0)
    for xb, yb in tr.loader:
        tr.step(xb, yb)
    moved = {n for n, p in pm.named_parameters() if not torch.equal(p, before[n])}
    assert moved and all("lora_" in n or "head" in n for n in moved), sorted(moved)[:5]
    assert any("lora_B" in n for n in moved)

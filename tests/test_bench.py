"""`robustfront bench`: a tiny run gives the report schema with positive numbers (not a timing test);
the FLOP count against hand counts and against the counter run over a real training step."""
import json
import statistics

import pytest
import torch
from torch import nn

from robustfront.bench import ReferenceImages, random_cifar, run_bench
from robustfront.bench.flops import PASSES, matmul_peak, pass_flops, step_flops, step_structure
from robustfront.cli import main


def test_tiny_bench_writes_the_json_schema(tmp_path, capsys):
    out = tmp_path / "bench.json"
    rc = main(["bench", "--quick", "--steps", "3", "--warmup", "1", "--batch-size", "8", "--attack-steps", "2",
               "--methods", "pgd_at,ca_at", "--variants", "fp32,fast", "--threads", "1", "--no-isolate",
               "--json", str(out)])
    assert rc == 0
    rep = json.loads(out.read_text())
    assert rep["device"].startswith("cpu")
    s = rep["settings"]
    assert s["threads"] == 1 and s["batch_size"] == 8 and s["steps"] == 3 and s["attack_steps"] == 2
    assert s["model"] == "small_cnn" and s["torch"] == torch.__version__ and len(s["loadavg_before"]) == 3
    assert [(r["method"], r["variant"]) for r in rep["results"]] == [
        ("pgd_at", "fp32"), ("ca_at", "fp32"), ("pgd_at", "fast"), ("ca_at", "fast")]
    for r in rep["results"]:
        assert {"method", "images_per_s", "reference_images_per_s", "speedup", "peak_mem_bytes",
                "step_time_vs_pgd_at"} <= r.keys()
        assert r["images_per_s"] > 0 and r["reference_images_per_s"] > 0 and r["peak_mem_bytes"] is None
        t, ref = r["step_times_s"], rep["reference"]["step_times_s"]
        assert len(t) == 3 and r["step_time_min_s"] <= r["step_time_s"] <= r["step_time_max_s"]
        assert r["images_per_s"] == 8 / statistics.median(t)
        # paired: the ratio of the two configurations' step times within each round, then the median
        assert r["speedup"] == statistics.median(a / b for a, b in zip(ref, t))
    assert rep["results"][0]["step_time_vs_pgd_at"] == 1.0
    # FLOP/s and MFU: the counted passes × the method's structure, over the median step, against the peak
    passes = s["flops"]["passes_per_batch"]
    assert set(passes) == set(PASSES) and all(v > 0 for v in passes.values())
    for r in rep["results"] + [rep["reference"]]:
        method = "pgd_at" if r is rep["reference"] else r["method"]
        assert r["flops_per_step"] == step_flops(passes, step_structure(method, 2))
        assert r["achieved_flops_per_s"] == r["flops_per_step"] / r["step_time_s"]
        assert r["peak_flops_per_s"] == s["peak_flops"][r["peak_kind"]]["flops_per_s"] > 0
        assert 0 < r["mfu"] < 1.5 and r["mfu"] == r["achieved_flops_per_s"] / r["peak_flops_per_s"]
    assert {r["peak_kind"] for r in rep["results"]} == {"fp32", "bf16"}   # fast = bf16 autocast
    out = capsys.readouterr().out
    assert "speedup" in out and "MFU" in out


def test_unknown_method_is_a_one_line_error():
    import pytest
    with pytest.raises(ValueError, match="pgd_at"):
        run_bench(methods=("nope",), steps=1, isolate=False)


def test_reference_augmentation_is_a_crop_and_flip_of_the_image():
    ds = random_cifar(4)
    x, y = ReferenceImages(ds.x_train, ds.y_train)[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    assert y == int(ds.y_train[0])


def test_peak_memory_of_one_configuration():
    from robustfront.bench import QUICK, peak_memory
    spec = dict(QUICK, batch_size=8, device="cpu", attack_steps=2, seed=0, threads=1, compile=False, ref_workers=0,
                n_images=32, method="ca_at", variant="fp32", bf16=False, channels_last=False)
    m = peak_memory(spec)
    assert m["peak_mem_bytes"] >= m["base_mem_bytes"] > 0


# -- FLOPs ----------------------------------------------------------------------------------------

def test_flop_count_of_linear_layers_equals_the_hand_count():
    b, i, h, o = 5, 7, 11, 3
    model = nn.Sequential(nn.Linear(i, h), nn.ReLU(), nn.Linear(h, o))
    x, y = torch.rand(b, i), torch.randint(0, o, (b,))
    f = pass_flops(model, x, y)
    assert f["forward"] == 2 * b * i * h + 2 * b * h * o                  # x·W1ᵀ, h·W2ᵀ
    assert f["input_backward"] == 2 * b * h * o + 2 * b * i * h           # ∂h, then ∂x
    assert f["full_backward"] == 2 * b * h * o * 2 + 2 * b * i * h        # ∂W2 and ∂h; ∂W1 (no ∂x)
    assert all(p.grad is None for p in model.parameters())


def test_flop_count_of_a_convolution_equals_the_hand_count():
    b, c_in, c_out, k, side = 2, 3, 4, 3, 6
    model = nn.Sequential(nn.Conv2d(c_in, c_out, k, padding=1), nn.Flatten(), nn.Linear(c_out * side * side, 10))
    x, y = torch.rand(b, c_in, side, side), torch.randint(0, 10, (b,))
    conv = 2 * b * c_out * side * side * c_in * k * k
    lin = 2 * b * c_out * side * side * 10
    f = pass_flops(model, x, y)
    assert f["forward"] == conv + lin
    assert f["input_backward"] == conv + lin
    assert f["full_backward"] == conv + 2 * lin      # ∂W of both; ∂ of the conv's output; no ∂x


@pytest.mark.parametrize("method", ["pgd_at", "trades", "mart", "ca_at", "agr", "raat"])
def test_step_structure_matches_the_counter_over_a_real_training_step(method):
    from torch.utils.flop_counter import FlopCounterMode
    from robustfront.train import TrainConfig, build_trainer
    cfg = TrainConfig(model="small_cnn", model_args={"width": 4}, method=method, batch_size=8, attack_steps=3,
                      device="cpu", crop=4, flip=True)
    tr = build_trainer(cfg, random_cifar(32), torch.device("cpu"))
    tr.on_epoch(200)
    x, y = next(iter(tr.loader))
    with FlopCounterMode(display=False) as counter:
        tr.step(x, y)
    passes = pass_flops(tr.model, x[0] if isinstance(x, tuple) else x, y)
    # RAAT's default DICAR forwards every mixed image (masking the statistics, not compacting)
    assert counter.get_total_flops() == step_flops(passes, step_structure(method, 3))


def test_raat_structure_is_exact_with_dicar_on_every_image():
    from torch.utils.flop_counter import FlopCounterMode
    from robustfront.train import TrainConfig, build_trainer
    cfg = TrainConfig(model="small_cnn", model_args={"width": 4}, method="raat", batch_size=8, attack_steps=3,
                      device="cpu", crop=4, flip=True, opts={"dicar_inputs": "all"})
    tr = build_trainer(cfg, random_cifar(32), torch.device("cpu"))
    tr.on_epoch(200)
    x, y = next(iter(tr.loader))
    with FlopCounterMode(display=False) as counter:
        tr.step(x, y)
    passes = pass_flops(tr.model, x[0], y)
    assert counter.get_total_flops() == step_flops(passes, step_structure("raat", 3))


def test_unknown_method_has_no_structure_and_the_peak_is_measured():
    assert step_structure("no_such_method", 10) is None and step_flops({}, None) is None
    p = matmul_peak(torch.device("cpu"), "fp32", n_max=256, seconds=0.02)
    assert p["flops_per_s"] > 0 and p["n"] == 256 and p["op"] in ("mm", "linear") and p["dtype"] == "fp32"


# -- compile: falls back at a failing forward, attacks take input gradients only ------------------

def _bn_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))


def test_a_compile_failing_at_the_first_forward_falls_back_to_eager_with_its_reason(capsys):
    from robustfront.device import CompiledNet

    def broken_backend(gm, example_inputs):
        raise RuntimeError("no kernel for you")
    model = _bn_net().eval()
    net = CompiledNet(model, backend=broken_backend)      # torch.compile(...) itself succeeds: it is lazy
    assert net.fallback is None
    x = torch.rand(2, 3, 8, 8)
    torch.testing.assert_close(net(x), model(x))
    assert "no kernel for you" in net.fallback
    assert capsys.readouterr().err.count("running eagerly") == 1
    net(x)                                                # eager from now on, no second attempt
    assert capsys.readouterr().err == ""
    assert list(net.state_dict()) == ["model." + k for k in model.state_dict()]   # one copy of the weights


def test_a_compiled_attack_forward_computes_no_parameter_gradient():
    from robustfront.attacks import PGD
    from robustfront.device import CompiledNet, input_gradients_only
    model = _bn_net().train()
    net = CompiledNet(model, backend="aot_eager")         # AOTAutograd's joint graph, without inductor
    x = torch.rand(4, 3, 8, 8, requires_grad=True)
    params = list(model.parameters())
    with input_gradients_only():
        out = net(x)
    assert net.fallback is None
    gx, *gp = torch.autograd.grad(out.logsumexp(1).sum(), [x, *params], allow_unused=True)
    assert gx is not None and all(g is None for g in gp)  # the parameters are not in the attack's graph
    ref = torch.autograd.grad(model(x).logsumexp(1).sum(), x)[0]
    torch.testing.assert_close(gx, ref, rtol=1e-5, atol=1e-6)
    out = net(x)                                           # a training forward: the parameters' gradients
    assert all(g is not None for g in torch.autograd.grad(out.sum(), params))
    y = torch.randint(0, 3, (4,))
    torch.manual_seed(1)
    adv = PGD(0.1, steps=2)(net, x.detach(), y)            # the attack enters input_gradients_only itself
    torch.manual_seed(1)
    torch.testing.assert_close(adv, PGD(0.1, steps=2)(model, x.detach(), y), rtol=1e-5, atol=1e-6)
    assert net.fallback is None

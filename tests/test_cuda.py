"""The CUDA paths: no host sync in the training step, fused SGD, bf16 autocast, the evaluation batch
size probe, exact fp32 in evaluation. Marked `cuda` (skipped without a device; the GPU run,
benchmarks/gpu/run.sh, runs them with `pytest -m cuda`), except the CPU stand-in of the first
(Python-level host reads; the aten-level check of every named method is tests/test_sync_free.py)."""
import pytest
import torch
import torch.nn.functional as F

from robustfront.bench import random_cifar
from robustfront.train import TrainConfig, build_trainer

METHODS = ["pgd_at", "trades", "mart", "ca_at", "agr", "raat", "raat_sharp"]   # RAAT# decides with its average
_SYNCING = ("item", "tolist", "__bool__", "__float__", "__int__", "__index__", "cpu", "numpy")


def _trainer(method, device, **kw):
    ema = {"ema": 0.999, "ema_start": 0} if method == "raat_sharp" else {}
    cfg = TrainConfig(model="small_cnn", model_args={"width": 4}, method=method, batch_size=8, attack_steps=2,
                      device=str(device), crop=4, flip=True, **ema, **kw)
    tr = build_trainer(cfg, random_cifar(32), torch.device(device))
    tr.on_epoch(200)   # past AGR's start epoch: its full rule runs
    return tr


@pytest.mark.parametrize("method", METHODS)
def test_trainer_step_reads_nothing_on_the_host(method, monkeypatch):
    """CPU stand-in for the CUDA check below: inside Trainer.step any read of a tensor's value on
    the host raises."""
    tr = _trainer(method, "cpu")
    batches = iter(tr.loader)
    x, y = next(batches)
    tr.step(x, y)                        # the first step creates the optimizer state

    def boom(*a, **k):
        raise AssertionError("host read of a tensor inside Trainer.step")

    x, y = next(batches)
    with monkeypatch.context() as m:
        for name in _SYNCING:
            m.setattr(torch.Tensor, name, boom)
        tr.step(x, y)
    assert tr.pop_epoch()["n_train"] == 16


@pytest.mark.cuda
@pytest.mark.parametrize("bf16", [False, True])
@pytest.mark.parametrize("method", METHODS)
def test_trainer_step_does_not_sync_on_cuda(method, bf16):
    tr = _trainer(method, "cuda", bf16=bf16, channels_last=bf16)
    batches = iter(tr.loader)
    x, y = next(batches)
    tr.step(x, y)                        # warm-up: optimizer state, cuDNN handles
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(2):
            x, y = next(batches)
            tr.step(x, y)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    m = tr.pop_epoch()                   # the one host read, after the steps
    assert m["n_train"] == 24 and m["nonfinite_steps"] == 0


@pytest.mark.cuda
def test_device_loader_batches_do_not_sync_on_cuda():
    tr = _trainer("pgd_at", "cuda")
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        shapes = [tuple(x.shape) for x, _ in tr.loader]
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert shapes == [(8, 3, 32, 32)] * 4


@pytest.mark.cuda
def test_fused_sgd_on_cuda_gives_the_plain_update():
    from robustfront.device import fused_sgd_supported
    from robustfront.train.build import build_optimizer
    dev = torch.device("cuda")
    assert fused_sgd_supported(dev)
    torch.manual_seed(0)
    w0 = [torch.randn(64, 32, device=dev), torch.randn(32, device=dev)]
    grads = [[torch.randn_like(w) for w in w0] for _ in range(3)]
    cfg = TrainConfig(lr="0.1", momentum="0.9", weight_decay="5e-4", nesterov=True)
    fused = [w.clone().requires_grad_() for w in w0]
    plain = [w.clone().requires_grad_() for w in w0]
    opt_f = build_optimizer(cfg, fused, dev)
    opt_p = torch.optim.SGD(plain, lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=True, foreach=False)
    assert opt_f.defaults["fused"] is True
    for gs in grads:
        for ps, opt in ((fused, opt_f), (plain, opt_p)):
            for p, g in zip(ps, gs):
                p.grad = g.clone()
            opt.step()
    for a, b in zip(fused, plain):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


@pytest.mark.cuda
def test_bf16_autocast_on_cuda_keeps_the_perturbation_in_fp32():
    from robustfront.attacks import PGD
    from robustfront.device import autocast
    from robustfront.models import create_model
    dev = torch.device("cuda")
    torch.manual_seed(0)
    model = create_model("small_cnn", 10, in_channels=3, input_size=32, width=8).to(dev).eval()
    x, y = torch.rand(16, 3, 32, 32, device=dev), torch.randint(0, 10, (16,), device=dev)
    eps = 8 / 255
    with autocast(dev, True):
        assert model(x).dtype == torch.bfloat16          # the forward runs in bf16
        x_adv = PGD(eps, steps=5)(model, x, y)
    assert x_adv.dtype == torch.float32                 # δ and the projection stay fp32
    assert (x_adv - x).abs().max() <= eps + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    with torch.no_grad():
        assert F.cross_entropy(model(x_adv), y) > F.cross_entropy(model(x), y)
    tr = _trainer("pgd_at", "cuda", bf16=True)
    x, y = next(iter(tr.loader))
    tr.step(x, y)
    assert all(p.dtype == torch.float32 for p in tr.model.parameters())   # fp32 master weights


@pytest.mark.cuda
def test_eval_batch_size_probe_on_cuda():
    from robustfront.eval import auto_batch_size
    from robustfront.models import create_model
    dev = torch.device("cuda")
    model = create_model("small_cnn", 10, in_channels=3, input_size=32, width=8).to(dev).eval()
    x = torch.rand(64, 3, 32, 32, device=dev)
    xw = x[:32].clone().requires_grad_(True)     # warm-up: cuBLAS/cuDNN workspaces persist after a first call
    torch.autograd.grad(model(xw).logsumexp(1).sum(), xw)
    del xw
    before = torch.cuda.memory_allocated(dev)
    bs = auto_batch_size(model, x)
    assert bs % 32 == 0 and 32 <= bs <= 4096
    assert torch.cuda.memory_allocated(dev) == before      # the probe leaves nothing behind
    assert auto_batch_size(model, x, budget=1e-12) == 32   # the floor
    assert auto_batch_size(model, x, cap=64) <= 64
    xb = torch.rand(min(bs, 1024), 3, 32, 32, device=dev, requires_grad=True)   # a probed batch runs
    torch.autograd.grad(model(xb).logsumexp(1).sum(), xb)


@pytest.mark.cuda
def test_evaluate_runs_in_exact_fp32_on_cuda():
    from robustfront.device import tf32_flags
    from robustfront.eval import evaluate
    from robustfront.models import create_model
    dev = torch.device("cuda")
    model = create_model("small_cnn", 10, in_channels=3, input_size=32, width=8).to(dev)
    seen = []
    model.register_forward_pre_hook(lambda m, a: seen.append(
        (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.get_float32_matmul_precision())))
    x, y = torch.rand(32, 3, 32, 32, device=dev), torch.randint(0, 10, (32,), device=dev)
    # TF32 on around the call, through the one helper that sets and restores all three switches
    # (precision, matmul, cuDNN): restoring two of them left torch >= 2.9 refusing a later read
    with tf32_flags(True):
        res = evaluate(model, x, y, ["pgd2"], eps=8 / 255)
        after = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
                 torch.get_float32_matmul_precision())
    assert seen and set(seen) == {(False, False, "highest")}      # every forward: TF32 off
    assert after == (True, True, "high")                          # the caller's flags come back
    assert res["precision"]["exact_fp32"] is True

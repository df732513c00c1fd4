"""No device->host sync in one Trainer.step of any named method, checked at the aten level on the
CPU (tests/sync_check.py), so that CI catches what `torch.cuda.set_sync_debug_mode("error")`
would reject in the GPU run; and the check itself catches a planted sync of each kind."""
import pytest
import torch

from robustfront.bench import random_cifar
from robustfront.objectives.raat import RAAT
from robustfront.train import TrainConfig, build_trainer
from robustfront.train.methods import METHODS
from sync_check import SyncCheck


def _trainer(method, **kw):
    ema = {"ema": 0.999, "ema_start": 0} if method == "raat_sharp" else {}   # RAAT# decides with the average
    cfg = TrainConfig(model="small_cnn", model_args={"width": 4}, method=method, batch_size=8, attack_steps=2,
                      device="cpu", crop=4, flip=True, **ema, **kw)
    tr = build_trainer(cfg, random_cifar(32), torch.device("cpu"))
    tr.on_epoch(200)   # past every start epoch (AGR's rule, DICAR, averaging)
    return tr


def _checked_step(tr):
    batches = iter(tr.loader)
    tr.step(*next(batches))            # the first step creates the optimizer state
    x, y = next(batches)
    with SyncCheck() as check:
        tr.step(x, y)
    return check.found


@pytest.mark.parametrize("method", METHODS.names())
def test_no_method_syncs_inside_trainer_step(method):
    assert _checked_step(_trainer(method)) == []


def test_bf16_channels_last_steps_do_not_sync():
    for method in ("pgd_at", "raat", "agr"):
        assert _checked_step(_trainer(method, bf16=True, channels_last=True)) == [], method


@pytest.mark.parametrize("plant, why", [
    (lambda s: s.nonzero(), "nonzero"),
    (lambda s: s.sum().item(), "_local_scalar_dense"),
    (lambda s: bool(s.any()), "_local_scalar_dense"),
    (lambda s: torch.arange(len(s))[s], "index with a boolean mask"),
    (lambda s: s.float().unique(), "_unique2"),
    (lambda s: torch.masked_select(s.float(), s), "masked_select"),
    (lambda s: torch.repeat_interleave(torch.arange(len(s)), s.long()), "repeat_interleave without output_size"),
])
def test_the_check_catches_a_planted_sync(monkeypatch, plant, why):
    """A sync planted in RAAT's DICAR (as the compaction to the selected images was, before issue
    19) is found, with its reason."""
    orig = RAAT.dicar

    def dicar(self, model, x1, x2, c1, c2, selected, m):
        plant(selected)
        return orig(self, model, x1, x2, c1, c2, selected, m)
    monkeypatch.setattr(RAAT, "dicar", dicar)
    found = _checked_step(_trainer("raat"))
    assert found and {w for _, w in found} == {why}, found


def test_masked_batch_norm_with_under_two_samples_keeps_outputs_and_gradients_finite():
    """No sample (or one) selected: the outputs are masked out of the loss by the caller, but they still
    pass through the following layers and the backward; x/sqrt(eps) per BatchNorm layer would overflow a
    deep network into inf/NaN gradients (RAAT#'s step was undone by the finite guard)."""
    from robustfront.models.masked_bn import masked_batch_norm
    torch.manual_seed(0)
    x = torch.randn(4, 3, 5, 5).requires_grad_()
    rm, rv = torch.zeros(3), torch.ones(3)
    for keep in (torch.zeros(4, dtype=torch.bool), torch.tensor([True, False, False, False])):
        out = x
        for _ in range(20):   # twenty BatchNorm layers in a row
            out = masked_batch_norm(out, keep, rm, rv, torch.ones(3), torch.zeros(3), 0.1, 1e-5)
        (out.sum() * 0).backward()
        assert torch.isfinite(out).all() and torch.isfinite(x.grad).all()
        assert torch.equal(rm, torch.zeros(3)) and torch.equal(rv, torch.ones(3))   # no statistics moved
        x.grad = None

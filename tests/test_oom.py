"""Out of memory on the device costs a smaller batch, not the evaluation: the batch-size probe and
the AutoAttack cascade halve and retry (simulated on the CPU by raising CUDA's OutOfMemoryError)."""
import pytest
import torch

from robustfront.eval import metrics
from robustfront.eval.cascade import _Runner
from robustfront.attacks.official import Collector

OOM = torch.cuda.OutOfMemoryError


class _CudaLike:
    """Stands for a CUDA batch: what auto_batch_size reads of x before its (patched) probe."""
    device = torch.device("cuda")

    def __init__(self, n):
        self.n = n

    def __getitem__(self, s):
        return _CudaLike(len(range(self.n)[s]))

    def __len__(self):
        return self.n


def test_the_batch_size_probe_halves_until_it_fits(monkeypatch):
    tried = []

    def probe(model, x, eval_mode):
        tried.append(len(x))
        if len(x) > 8:
            raise OOM("CUDA out of memory (simulated)")
        return 1000
    monkeypatch.setattr(metrics, "_probe_bytes", probe)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (10 ** 9, 10 ** 9))
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    assert metrics.auto_batch_size(None, _CudaLike(64)) == 8      # the probe that fitted caps the batch
    assert tried == [32, 16, 8]
    monkeypatch.setattr(metrics, "_probe_bytes", lambda *a: (_ for _ in ()).throw(OOM("never fits")))
    with pytest.raises(OOM):
        metrics.auto_batch_size(None, _CudaLike(64))


def test_the_cascade_halves_its_device_calls_and_keeps_the_answer():
    log = Collector()
    run = _Runner(None, [], None, None, torch.device("cpu"), 8, None, log, 0, None, "")
    calls = []

    def fn(a, b):
        calls.append(len(b))
        if len(b) > 3:
            raise OOM("CUDA out of memory (simulated)")
        return a.sum(1) > b
    x, y = torch.rand(8, 5), torch.rand(8) * 5
    got = run._fitting(fn, x, y)
    assert torch.equal(got, x.sum(1) > y) and run.piece == 2
    assert calls == [8, 4, 2, 2, 2, 2]
    assert len(log.take()) == 2 and run._fitting(fn, x, y).shape == (8,) and calls[-4:] == [2, 2, 2, 2]

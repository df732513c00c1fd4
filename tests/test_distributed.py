"""Data-parallel training on CPU with gloo and 2 real processes: the same update as one process on the
global batch (pgd_at, ca_at, agr, raat; sync-bn with a BatchNorm model), the sharded loader, an exact
2-rank resume, errors shared between the ranks, and `torchrun ... -m robustfront train` end to end.

Tolerance of the equivalence: max |w_2ranks - w_1process| <= 1e-5 · max |w_1process - w_start| after 3
SGD steps (float32; the two sides differ only in the order of the batch-mean sums). A negative control
shows the test can fail: CA-AT combined per rank and then averaged misses by far more than that.
"""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from robustfront.data import DeviceLoader, load_dataset
from robustfront.train import TrainConfig, build_trainer, train
from robustfront.train.distributed import Dist, PeerError

ROOT = Path(__file__).resolve().parents[1]
WORLD = 2
TOL = 1e-5
STEPS = 3
BASE = dict(data="digits", model="mlp", model_args={"hidden": [32]}, batch_size=64, lr=0.2, eps="32/255",
            alpha="8/255", attack="fgsm", progress=False)
METHODS = {"pgd_at": {}, "ca_at": {"opts": {"gamma": 0.95}}, "agr": {"opts": {"start_epoch": 0}},
           "raat": {}}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn(fn, *args):
    port = _free_port()
    mp.start_processes(_entry, args=(port, fn, *args), nprocs=WORLD, start_method="spawn", join=True)


def _entry(rank, port, fn, *args):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        fn(rank, *args)
    finally:
        dist.destroy_process_group()


# -- the same update as one process on the global batch -------------------------------------------

def _batches(ds, n):
    g = np.random.default_rng(0)
    idx = g.permutation(len(ds.y_train))[:64 * n].reshape(n, 64)
    return [(torch.as_tensor(ds.x_train[i]).float().div(255), torch.as_tensor(ds.y_train[i])) for i in idx]


def _run(trainer, batches, shard, own_labels):
    """STEPS steps on the batches (this rank's shard of each); each step starts from one torch seed on
    every side, so that the draws the objective makes (RAAT's mixing weight) agree."""
    for i, (x, y) in enumerate(batches):
        if own_labels:  # DICAR averages over the images it selects: labels the model gets right select all
            with torch.no_grad():
                trainer.model.eval()
                y = trainer.model(x).argmax(1)
        xs, ys = x[shard], y[shard]
        torch.manual_seed(100 + i)
        trainer.on_epoch(0)
        trainer.step((xs, xs) if trainer.objective.views == 2 else xs, ys)
    return torch.cat([p.detach().flatten() for p in trainer.model.parameters()])


def _equivalence(rank, out):
    ds = load_dataset("digits")
    batches = _batches(ds, STEPS)
    half = slice(rank * 32, (rank + 1) * 32)
    d = Dist(rank=rank, world=WORLD)
    res = {}
    cases = [(m, {**BASE, "method": m, **kw}) for m, kw in METHODS.items()]
    cases.append(("pgd_at_sync_bn", {**BASE, "method": "pgd_at", "model": "small_cnn", "model_args": {"width": 4},
                                     "sync_bn": True}))
    for name, kw in cases:
        cfg = TrainConfig(**kw)
        torch.manual_seed(0)
        ref = build_trainer(cfg, ds, torch.device("cpu"))
        w0 = torch.cat([p.detach().flatten() for p in ref.model.parameters()])
        own = name == "raat"
        w_ref = _run(ref, batches, slice(None), own)
        torch.manual_seed(0)
        tr = build_trainer(cfg, ds, torch.device("cpu"))
        tr.distribute(d, seed=0, sync_bn=cfg.sync_bn)
        w = _run(tr, batches, half, own)
        bufs = [(a - b).abs().max().item() for a, b in zip(ref.model.buffers(), tr.model.buffers())
                if a.is_floating_point()]
        res[name] = {"rel": ((w - w_ref).abs().max() / (w_ref - w0).abs().max()).item(),
                     "moved": (w_ref - w0).abs().max().item(), "buffers": max(bufs, default=0.0),
                     "ranks_equal": _same_on_ranks(w)}
        ep_ref, ep = ref.pop_epoch(), tr.pop_epoch()   # epoch sums: all-reduced over the ranks
        res[name]["epoch"] = {k: (ep_ref[k], ep[k]) for k in ("n_train", "train_loss", "train_adv_acc")}
    # negative control: CA-AT decided on each rank's own gradients, the updates averaged afterwards
    cfg = TrainConfig(**BASE, method="ca_at", opts={"gamma": 0.95})
    torch.manual_seed(0)
    ref = build_trainer(cfg, ds, torch.device("cpu"))
    w0 = torch.cat([p.detach().flatten() for p in ref.model.parameters()])
    w_ref = _run(ref, batches, slice(None), False)
    torch.manual_seed(0)
    bad = build_trainer(cfg, ds, torch.device("cpu"))
    bad.combiner.after_backward = lambda model: [dist.all_reduce(p.grad) or p.grad.div_(WORLD)
                                                 for p in model.parameters()]
    w = _run(bad, batches, half, False)
    res["ca_at_per_rank_decision"] = {"rel": ((w - w_ref).abs().max() / (w_ref - w0).abs().max()).item()}
    if rank == 0:
        Path(out).write_text(json.dumps(res))


def _same_on_ranks(t):
    other = t.clone()
    dist.broadcast(other, 0)
    return bool(torch.equal(other, t))


def test_two_ranks_make_the_one_process_update_for_each_method(tmp_path):
    out = tmp_path / "res.json"
    _spawn(_equivalence, str(out))
    res = json.loads(out.read_text())
    for name in (*METHODS, "pgd_at_sync_bn"):
        r = res[name]
        assert r["moved"] > 1e-3, (name, r)                   # the steps did something
        assert r["rel"] <= TOL, (name, r)
        assert r["ranks_equal"], name                        # every rank holds the same weights
        assert r["buffers"] <= 1e-5, (name, r)               # BatchNorm running stats (sync-bn): global batch
        for k, (a, b) in r["epoch"].items():
            assert b == pytest.approx(a, rel=1e-5, abs=1e-6), (name, k, a, b)
    assert res["ca_at_per_rank_decision"]["rel"] > 100 * TOL, res["ca_at_per_rank_decision"]


# -- the sharded loader -------------------------------------------------------------------------

def test_loader_shards_are_the_one_process_batches_split_in_two():
    x = torch.randint(0, 256, (203, 1, 8, 8), dtype=torch.uint8)
    y = torch.arange(203)
    kw = dict(batch_size=64, crop=2, flip=True, cutout=3, seed=5)
    one = list(DeviceLoader(x, y, **kw))
    parts = [list(DeviceLoader(x, y, **kw, rank=r, world=2)) for r in range(2)]
    assert len(one) == 4 and [len(p) for p in parts] == [4, 4]
    for i, (xb, yb) in enumerate(one):
        keep = len(yb) - len(yb) % 2                           # 203 = 3·64 + 11: the last batch loses one image
        assert torch.equal(torch.cat([parts[0][i][1], parts[1][i][1]]), yb[:keep])
        assert torch.equal(torch.cat([parts[0][i][0], parts[1][i][0]]), xb[:keep])   # the same augmentation
    assert not set(parts[0][0][1].tolist()) & set(parts[1][0][1].tolist())
    small = DeviceLoader(x[:65], y[:65], batch_size=64, rank=1, world=2)   # a last batch of 1 < 2 ranks: skipped
    assert len(small) == 1 and len(list(small)) == 1
    with pytest.raises(ValueError, match="rank=2 is invalid"):
        DeviceLoader(x, y, batch_size=64, rank=2, world=2)


# -- a 2-rank run resumes exactly; set-up errors reach every rank ---------------------------------

RUN = dict(data="digits", model="mlp", model_args={"hidden": [32]}, epochs=2, batch_size=64, train_n=320, lr=0.1,
           eps="32/255", alpha="8/255", attack_steps=2, method="ca_at", eval_n=64, eval_steps=2, progress=False)


def _resume(rank, root):
    root = Path(root)
    full, split = root / "full", root / "split"
    train(TrainConfig(**RUN, out=str(full)))
    train(TrainConfig(**RUN, out=str(split)), stop_after=1)
    train(TrainConfig(**RUN, out=str(split)), resume=True)
    try:
        train(TrainConfig(**RUN, out=str(full)))
        err = None
    except ValueError as e:
        err = (type(e).__name__, str(e))
    (root / f"err{rank}.json").write_text(json.dumps(err))


def test_two_rank_run_resumes_exactly_and_only_rank_0_writes(tmp_path):
    _spawn(_resume, str(tmp_path))
    a = torch.load(tmp_path / "full" / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "split" / "checkpoints" / "last.pt", weights_only=True)
    assert a["model"].keys() == b["model"].keys() and all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert a["world_size"] == 2 and len(a["rng_ranks"]) == 2
    assert not torch.equal(a["rng_ranks"][0]["torch"], a["rng_ranks"][1]["torch"])   # per-rank streams
    drop = ("epoch_time_s",)
    ma, mb = ([{k: v for k, v in json.loads(l).items() if k not in drop} for l in (p / "metrics.jsonl").read_text()
               .splitlines()] for p in (tmp_path / "full", tmp_path / "split"))
    assert ma == mb and [m["epoch"] for m in ma] == [1, 2]           # one line per epoch: only rank 0 wrote
    assert ma[-1]["n_train"] == 320 and "val_pgd_acc" in ma[-1]
    e0, e1 = (json.loads((tmp_path / f"err{r}.json").read_text()) for r in range(2))
    assert e0[0] == "ValueError" and "already holds a run" in e0[1]
    assert e1[0] == PeerError.__name__ and e1[1].startswith("rank 0 failed: ") and "already holds a run" in e1[1]
    # resuming with another number of ranks is refused: the per-rank random streams would not fit
    with pytest.raises(ValueError, match="world_size=1 differs from the 2 rank"):
        train(TrainConfig(**{**RUN, "epochs": 3}, out=str(tmp_path / "full")), resume=True)


# -- torchrun end to end -----------------------------------------------------------------------

def test_torchrun_train_two_processes_cli(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={_free_port()}",
           "-m", "robustfront", "train", "--data", "digits", "--model", "mlp", "--method", "pgd_at",
           "--epochs", "1", "--train-n", "256", "--batch-size", "64", "--attack-steps", "2", "--eval-n", "64",
           "--device", "cpu", "--no-progress", "--out", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    lines = [l for l in r.stdout.splitlines() if l.startswith("{")]
    assert len(lines) == 1 and json.loads(lines[0])["n_train"] == 256     # rank 0 speaks for the run
    assert "Traceback" not in r.stderr and "destroy" not in r.stderr.lower(), r.stderr[-3000:]
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1
    assert torch.load(out / "checkpoints" / "last.pt", weights_only=True)["world_size"] == 2
    # the same command again: rank 0's refusal is one line, every rank stops (no hang)
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    errs = [l for l in r.stderr.splitlines() if l.startswith("robustfront: error:")]
    assert r.returncode != 0 and len(errs) == 1 and "already holds a run" in errs[0], r.stderr[-3000:]

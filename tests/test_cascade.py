"""robustfront's self-driven AutoAttack cascade: equal to the official runner, resumable after a kill,
shardable (files merged, or two real torchrun-style processes over gloo), exact fp32, guard rails.

Budgets are reduced (APGD/FAB 3 iterations, Square 60 queries) to keep each run near a second; both
sides of every comparison use the same budgets, applied by the same function to the official object.
"""
import json
import logging
import os
import re
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from robustfront.attacks import official
from robustfront.eval.cascade import autoattack_cascade
from robustfront.eval.cascade_state import CascadeState, merge_states
from robustfront.eval.masks import Masks

EPS = 0.12
BUDGETS = {"n_iter": 3, "n_queries": 60}


@pytest.fixture(scope="module")
def points(digits_model):
    model, x, y = digits_model
    xs, ys = torch.cat([x[:16], x[100:116]]), torch.cat([y[:16], y[100:116]])
    return model, xs, ys


def run(model, x, y, **kw):
    args = dict(eps=EPS, batch_size=8, budgets=BUDGETS, progress=False, echo_warnings=False)
    args.update(kw)
    return autoattack_cascade(model, x, y, **args)


@pytest.fixture(scope="module")
def plain_chunked(points):
    """The reference for the resume and shard tests: 4 chunks of 8 points, batches of 4."""
    model, x, y = points
    return run(model, x, y, chunk_size=8, batch_size=4)


def same(a, b):
    """Two results agree on everything the evaluation decides."""
    keys = ("clean_acc", "robust_acc", "after", "masks", "attacks", "budgets", "n", "complete")
    return {k: a[k] for k in keys} == {k: b[k] for k in keys}


class _AfterLog(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.after = {}

    def emit(self, record):
        m = re.search(r"robust accuracy after ([A-Z-]+): ([0-9.]+)%", record.getMessage())
        if m:
            self.after[m.group(1).lower()] = float(m.group(2))


def official_run(model, x, y, version, batch_size):
    from pyautoattack import AutoAttack
    aa = AutoAttack(model, device="cpu", eps=EPS, norm="Linf", seed=0, version=version)
    official.apply_budgets(aa, BUDGETS)
    logger, rec = logging.getLogger("auto-attack"), _AfterLog()
    old = (logger.level, logger.propagate)
    logger.addHandler(rec)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        _, y_adv = aa.run_standard_evaluation(x, y, batch_size=batch_size)
    finally:
        logger.removeHandler(rec)
        logger.setLevel(old[0])
        logger.propagate = old[1]
    return (y_adv == y).numpy(), rec.after


def test_cascade_equals_official_runner_per_sample(points):
    model, x, y = points
    res = run(model, x, y)  # default chunk size: 32 points are one chunk, the official batching
    ok, after = official_run(model, x, y, "standard", 8)
    masks = Masks.from_json(res["masks"])
    assert np.array_equal(masks["autoattack"], ok)
    assert res["attacks"] == ["apgd-ce", "apgd-t", "fab-t", "square"]
    # the official log prints accuracies after each attack with 2 decimals of a percent
    assert {a: round(100 * v, 2) for a, v in res["after"].items()} == after
    assert res["clean_acc"] > res["robust_acc"]["autoattack"] > 0  # the attacks did something, not all
    assert not res["official_budgets"] and res["budgets"]["apgd-t"]["n_target_classes"] == 9


def test_plus_version_equals_official_runner(points):
    model, x, y = points
    x, y = x[8:24], y[8:24]
    res = run(model, x, y, version="plus")
    ok, after = official_run(model, x, y, "plus", 8)
    assert res["attacks"] == ["apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t"]
    assert np.array_equal(Masks.from_json(res["masks"])["autoattack-plus"], ok)
    assert {a: round(100 * v, 2) for a, v in res["after"].items()} == after
    assert res["budgets"]["fab"]["n_restarts"] == 5 and res["budgets"]["fab-t"]["n_restarts"] == 1


class Kill(Exception):
    pass


def killed_after(model, calls):
    """A forward pre-hook that raises on forward call number `calls` (the state dict stays the same)."""
    count = {"n": 0}

    def hook(module, args):
        count["n"] += 1
        if count["n"] >= calls:
            raise Kill()
    return model.register_forward_pre_hook(hook), count


def test_killed_and_rerun_continues_and_equals_plain_run(points, plain_chunked, tmp_path):
    model, x, y = points
    state = tmp_path / "aa"
    for calls in (40, 400):  # killed twice (during APGD-CE, then later in the cascade), then to the end
        handle, _ = killed_after(model, calls)
        try:
            with pytest.raises(Kill):
                run(model, x, y, chunk_size=8, batch_size=4, state=state)
        finally:
            handle.remove()
        chunks = CascadeState(state).all_chunks()
        assert chunks and not all(len(r["masks"]) == 4 for r in chunks.values())
    handle, count = killed_after(model, 10 ** 9)
    try:
        res = run(model, x, y, chunk_size=8, batch_size=4, state=state)
    finally:
        handle.remove()
    assert same(res, plain_chunked)
    assert json.loads((state / "result.json").read_text())["masks"] == plain_chunked["masks"]
    # a run on a finished folder attacks nothing: the only forwards left are the checks' (about 10)
    handle, again = killed_after(model, 10 ** 9)
    try:
        res2 = run(model, x, y, chunk_size=8, batch_size=4, state=state)
    finally:
        handle.remove()
    assert same(res2, plain_chunked) and again["n"] < 20


def test_partial_batches_are_resumed_not_redone(points, plain_chunked, tmp_path, monkeypatch):
    """Killed right after APGD-T's first batch was saved: the re-run starts at its second batch."""
    model, x, y = points
    save = CascadeState.save_chunk

    def save_then_die(self, rec):
        save(self, rec)
        if rec["partial"] and rec["partial"]["attack"] == "apgd-t":
            raise Kill()
    monkeypatch.setattr(CascadeState, "save_chunk", save_then_die)
    with pytest.raises(Kill):
        run(model, x, y, chunk_size=8, batch_size=4, state=tmp_path)
    monkeypatch.setattr(CascadeState, "save_chunk", save)
    partial = [r for r in CascadeState(tmp_path).all_chunks().values() if r["partial"]]
    assert len(partial) == 1 and partial[0]["partial"]["batches"] == 1
    calls = []
    perturb = official.perturb
    monkeypatch.setattr(official, "perturb", lambda aa, a, xb, yb: calls.append(a) or perturb(aa, a, xb, yb))
    assert same(run(model, x, y, chunk_size=8, batch_size=4, state=tmp_path), plain_chunked)
    # APGD-T's batches in the plain run: per chunk of 8, its points still robust after APGD-CE, in 4s
    after_ce = Masks.from_json(plain_chunked["masks"])["autoattack/apgd-ce"].reshape(4, 8).sum(1)
    assert calls.count("apgd-t") == int(np.ceil(after_ce / 4).sum()) - 1 and "apgd-ce" not in calls


def test_resume_refuses_other_settings(points, tmp_path):
    model, x, y = points
    run(model, x[:8], y[:8], state=tmp_path)
    with pytest.raises(ValueError, match=r"^state folder .* was written for seed=0, this run has seed=1; allowed") as e:
        run(model, x[:8], y[:8], state=tmp_path, seed=1)
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="was written for data_sha256="):
        run(model, x[8:16], y[8:16], state=tmp_path)


def test_two_shards_merged_equal_plain_run(points, plain_chunked, tmp_path):
    model, x, y = points
    parts = [run(model, x, y, chunk_size=8, batch_size=4, shard=f"{i}/2", state=tmp_path / f"s{i}") for i in (0, 1)]
    a, b = (Masks.from_json(p["masks"]) for p in parts)
    assert set(a.ids) & set(b.ids) == set() and a.n + b.n == 32 and not parts[0]["complete"]
    assert list(a.ids[:8]) == list(range(8)) and list(b.ids[:8]) == list(range(8, 16))  # strided chunks
    with pytest.raises(ValueError, match=r"^2 of 4 chunks are missing or unfinished: \[1, 3\]"):
        merge_states(tmp_path / "s0")
    assert same(merge_states(tmp_path / "s0", tmp_path / "s1"), plain_chunked)
    # one shared folder works the same
    for i in (0, 1):
        run(model, x, y, chunk_size=8, batch_size=4, shard=(i, 2), state=tmp_path / "shared")
    assert same(merge_states(tmp_path / "shared"), plain_chunked)


WORKER = textwrap.dedent("""
    import json, sys, torch
    from robustfront.models import create_model
    from robustfront.eval.cascade import autoattack_cascade
    torch.set_num_threads(1)
    d = torch.load(sys.argv[1], weights_only=True)
    model = create_model("small_cnn", 10, in_channels=1, input_size=8, width=16)
    model.load_state_dict(d["state"])
    model.eval()
    res = autoattack_cascade(model, d["x"], d["y"], eps=d["eps"], batch_size=4, chunk_size=8, shard="env",
                             budgets=d["budgets"], progress=False, echo_warnings=False)
    json.dump(res, open(sys.argv[2], "w"))
""")


def test_torchrun_style_two_processes_gather_the_plain_result(points, plain_chunked, tmp_path):
    model, x, y = points
    torch.save({"state": model.state_dict(), "x": x, "y": y, "eps": EPS, "budgets": BUDGETS}, tmp_path / "in.pt")
    (tmp_path / "worker.py").write_text(WORKER)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = []
    for rank in (0, 1):
        env = dict(os.environ, RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                   MASTER_PORT=str(port), OMP_NUM_THREADS="1",
                   PYTHONPATH=os.pathsep.join([os.path.dirname(os.path.dirname(__file__)), os.environ.get("PYTHONPATH", "")]))
        procs.append(subprocess.Popen([sys.executable, str(tmp_path / "worker.py"), str(tmp_path / "in.pt"),
                                       str(tmp_path / f"out{rank}.json")], env=env, stderr=subprocess.PIPE))
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()[-2000:]
    for rank in (0, 1):
        res = json.loads((tmp_path / f"out{rank}.json").read_text())
        assert res["shard"] is None and same(res, plain_chunked)


KILLED = textwrap.dedent("""
    import sys, time, torch
    from robustfront.models import create_model
    from robustfront.eval.cascade import autoattack_cascade
    torch.set_num_threads(1)
    d = torch.load(sys.argv[1], weights_only=True)
    model = create_model("small_cnn", 10, in_channels=1, input_size=8, width=16)
    model.load_state_dict(d["state"])
    model.eval().register_forward_pre_hook(lambda m, a: time.sleep(0.005))  # slow enough to be killed mid-run
    autoattack_cascade(model, d["x"], d["y"], eps=d["eps"], batch_size=4, chunk_size=8, state=sys.argv[2],
                       budgets=d["budgets"], progress=False, echo_warnings=False)
""")


def test_sigkill_mid_run_then_resume_equals_plain_run(points, plain_chunked, tmp_path):
    """A real kill -9 of a running evaluation: the state it leaves is readable and the re-run completes it."""
    import signal
    import time
    model, x, y = points
    torch.save({"state": model.state_dict(), "x": x, "y": y, "eps": EPS, "budgets": BUDGETS}, tmp_path / "in.pt")
    (tmp_path / "run.py").write_text(KILLED)
    state = tmp_path / "aa"
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([os.path.dirname(os.path.dirname(__file__)), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, str(tmp_path / "run.py"), str(tmp_path / "in.pt"), str(state)], env=env,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if any(r["masks"] for r in CascadeState(state).all_chunks().values()):  # some attack finished on a chunk
            break
        time.sleep(0.02)
    assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    left = CascadeState(state).all_chunks()
    assert not (state / "result.json").exists() and not all(len(r["masks"]) == 4 for r in left.values())
    assert same(run(model, x, y, chunk_size=8, batch_size=4, state=state), plain_chunked)


def test_exact_fp32_and_batch_size_recorded(points, tmp_path):
    model, x, y = points
    old = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high")
    try:
        res = run(model, x[:8], y[:8], batch_size=None, state=tmp_path)
        assert torch.get_float32_matmul_precision() == "high"  # restored afterwards
    finally:
        torch.set_float32_matmul_precision(old)
    assert res["precision"]["float32_matmul_precision"] == "highest"
    assert res["batch_size"] == 500  # auto_batch_size on a CPU
    assert json.loads((tmp_path / "meta.json").read_text())["batch_size"] == 500


def test_randomised_model_is_flagged_with_the_rand_recommendation(points):
    model, x, y = points
    noisy = torch.nn.Sequential(torch.nn.Dropout(0.3), model).train()
    model.eval()
    res = run(noisy, x[:8], y[:8], budgets={"n_iter": 1, "n_queries": 5})
    assert res["flags"]["randomized"]
    assert any("randomized defense" in w for w in res["warnings"])  # the official check
    mine = [w for w in res["warnings"] if w.startswith("robustfront:")]
    assert mine and "version='rand'" in mine[0] and "\n" not in mine[0]
    assert not run(model, x[:8], y[:8], budgets={"n_iter": 1, "n_queries": 5})["flags"]["randomized"]


@pytest.mark.parametrize("kw, match", [
    ({"version": "fast"}, r"^version='fast' is unknown; allowed: standard, plus, rand$"),
    ({"shard": "2/2"}, r"^shard='2/2' is out of range; allowed: i/N with 0 <= i < N"),
    ({"shard": "a/b"}, r"^shard='a/b' is invalid; allowed: i/N"),
    ({"chunk_size": 0.5}, r"^chunk_size=0.5 is invalid; allowed: an integer >= 1$"),
    ({"budgets": {"steps": 3}}, r"^budget='steps' is unknown; allowed: n_iter, n_queries$"),
    ({"eps": 0}, r"^eps=0 is invalid; allowed: a finite number > 0$"),
])
def test_bad_requests_are_one_line(points, kw, match):
    model, x, y = points
    with pytest.raises(ValueError, match=match):
        run(model, x[:4], y[:4], **kw)


def test_merge_refuses_folders_of_different_runs(points, tmp_path):
    model, x, y = points
    tiny = {"n_iter": 1, "n_queries": 5}
    for seed in (0, 1):
        run(model, x[:4], y[:4], seed=seed, budgets=tiny, state=tmp_path / f"seed{seed}")
    with pytest.raises(ValueError, match=r"^state folders .*seed0 and .*seed1 differ in seed; allowed: shards of one run$"):
        merge_states(tmp_path / "seed0", tmp_path / "seed1")
    with pytest.raises(ValueError, match=r"has no meta\.json"):
        merge_states(tmp_path / "nothing")

"""kill -9 a real `python -m robustfront.cli train` (and `eval`) at random and at chosen points, then
`--resume` (re-run): the weights are bit-identical to an uninterrupted run on CPU, metrics.jsonl
holds every epoch exactly once with the same numbers, and no temporary file is left in checkpoints/.

Chosen points use the test hooks of robustfront.checkpoint.save_atomic: ROBUSTFRONT_TEST_SLOW_SAVE
(sleep with the temporary file written, before the rename: a kill during a checkpoint write) and
ROBUSTFRONT_TEST_SLOW_SAVE_AFTER (sleep after the rename: a kill between a checkpoint and the
metrics line). Random points are seeded, so CI kills at the same offsets every run.

Tiny runs: digits, small_cnn width 8, 3 epochs, PGD-2, batch 64 (about 0.6 s per epoch on one core).
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from robustfront.checkpoint import TMP_SUFFIX

from cli_harness import run_main

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["train", "--data", "digits", "--model", "small_cnn", "--model-arg", "width=8", "--epochs", "3",
        "--attack-steps", "2", "--batch-size", "64", "--no-progress"]
EVAL = ["--attacks", "fgsm,pgd10,pgd20x2,cw", "--eps", "32/255", "--n", "360", "--device", "cpu"]
VOLATILE = {"epoch_time_s", "time_s"}  # wall-clock fields; everything else must match exactly


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "ROBUSTFRONT_CACHE": str(cache)}


@pytest.fixture(scope="module")
def reference(tmp_path_factory, env):
    """The uninterrupted run (in-process: bit-identical to a subprocess on CPU, and cheaper)."""
    out = tmp_path_factory.mktemp("ref") / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ROBUSTFRONT_CACHE", env["ROBUSTFRONT_CACHE"])
        torch.set_num_threads(1)
        res = run_main([*ARGS, "--out", str(out)], timeout=300)
    assert res.rc == 0, res.err + res.tb
    return out


def start(cmd, env, log: Path, **extra_env) -> subprocess.Popen:
    f = open(log, "w")
    return subprocess.Popen([sys.executable, "-m", "robustfront.cli", *cmd], env={**env, **extra_env}, stdout=f,
                            stderr=subprocess.STDOUT, cwd=log.parent)


def wait_for(cond, proc, timeout=120.0) -> bool:
    """Poll cond() every few ms until it holds (True), or the process ends or time runs out (False)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if cond():
            return True
        if proc.poll() is not None:
            return cond()
        time.sleep(0.003)
    return False


def kill(proc) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)


def finish(cmd, env, log: Path):
    proc = start(cmd, env, log)
    assert proc.wait(300) == 0, log.read_text()[-2000:]


def metrics(out: Path) -> list[dict]:
    path = out / "metrics.jsonl"
    return [json.loads(l) for l in path.read_text().splitlines() if l.strip()] if path.is_file() else []


def temp_files(out: Path) -> list[str]:
    d = out / "checkpoints"
    return sorted(p.name for p in d.iterdir() if p.name.endswith(".tmp")) if d.is_dir() else []


def same_as_reference(out: Path, ref: Path) -> None:
    got, want = metrics(out), metrics(ref)
    assert [m["epoch"] for m in got] == [1, 2, 3], f"metrics epochs {[m['epoch'] for m in got]}"
    for g, w in zip(got, want):
        assert {k: v for k, v in g.items() if k not in VOLATILE} == {k: v for k, v in w.items() if k not in VOLATILE}
    for name in ("last.pt", "best.pt"):
        a = torch.load(out / "checkpoints" / name, weights_only=True)["model"]
        b = torch.load(ref / "checkpoints" / name, weights_only=True)["model"]
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), f"{name} differs"
    assert temp_files(out) == [], f"temp files left in checkpoints/: {temp_files(out)}"


def test_kill_twice_at_random_points_then_resume(tmp_path, env, reference):
    """Two kills at seeded random offsets (mid-epoch, in validation or in a save), each followed by --resume."""
    rng = random.Random(13)
    out = tmp_path / "run"
    proc = start([*ARGS, "--out", str(out)], env, tmp_path / "a.log")
    assert wait_for(lambda: len(metrics(out)) >= 1, proc), (tmp_path / "a.log").read_text()[-2000:]
    time.sleep(rng.uniform(0.05, 0.5))
    kill(proc)
    killed_at = [m["epoch"] for m in metrics(out)]
    proc = start(["train", "--resume", "--out", str(out), "--no-progress"], env, tmp_path / "b.log")
    n = len(metrics(out))
    wait_for(lambda: len(metrics(out)) > n, proc)
    time.sleep(rng.uniform(0.05, 0.4))
    kill(proc)
    finish(["train", "--resume", "--out", str(out), "--no-progress"], env, tmp_path / "c.log")
    assert killed_at and killed_at[-1] < 3, f"the first kill came after the run ended ({killed_at})"
    same_as_reference(out, reference)


def hook_lines(log: Path, var: str, needle: str) -> int:
    """How many times the hook `var` announced itself for a file containing `needle`."""
    return sum(l.startswith(f"robustfront test hook: {var} ") and needle in l for l in log.read_text().splitlines())


def test_kill_during_a_checkpoint_write_then_resume(tmp_path, env, reference):
    """Killed while epoch 2's last.pt is written: epoch 1's last.pt is intact, the stray temp file is
    removed by the resume, and the result is the uninterrupted one."""
    out, log = tmp_path / "run", tmp_path / "a.log"
    proc = start([*ARGS, "--out", str(out)], env, log, ROBUSTFRONT_TEST_SLOW_SAVE="1")
    seen = wait_for(lambda: hook_lines(log, "ROBUSTFRONT_TEST_SLOW_SAVE", ".last.pt.") == 2, proc, timeout=90)
    kill(proc)
    assert seen, "never killed inside a write of last.pt: the trainer does not save through checkpoint.save_atomic"
    assert any(n.startswith(".last.pt.") for n in temp_files(out)), temp_files(out)
    torch.load(out / "checkpoints" / "last.pt", weights_only=True)  # the previous epoch's, complete
    finish(["train", "--resume", "--out", str(out), "--no-progress"], env, tmp_path / "b.log")
    same_as_reference(out, reference)


def test_kill_between_checkpoint_and_metrics_then_resume(tmp_path, env, reference):
    out, log = tmp_path / "run", tmp_path / "a.log"
    proc = start([*ARGS, "--out", str(out)], env, log, ROBUSTFRONT_TEST_SLOW_SAVE_AFTER="1")
    seen = wait_for(lambda: hook_lines(log, "ROBUSTFRONT_TEST_SLOW_SAVE_AFTER", "last.pt") == 1, proc, timeout=90)
    kill(proc)
    assert seen, "the window after a last.pt save was never reached (hook not honoured)"
    finish(["train", "--resume", "--out", str(out), "--no-progress"], env, tmp_path / "b.log")
    same_as_reference(out, reference)


def _accuracies(res: dict) -> dict:
    return {"clean": res["clean_acc"], **res["robust_acc"], "n": res["n"]}


def _left_over(out: Path) -> list[str]:
    """What an eval leaves beside --out besides the result: only its resumable state folder
    (OUT.state/, per-sample masks written atomically), never a temporary file, there or inside it."""
    state = out.parent / (out.stem + ".state")
    extra = [p.name for p in out.parent.iterdir() if p.name not in (out.name, state.name)]
    return extra + [str(p) for p in state.rglob("*") if p.name.endswith(TMP_SUFFIX)] if state.exists() else extra


def test_kill_a_long_eval_then_rerun(tmp_path, env, reference, monkeypatch):
    """A killed eval leaves no --out file (or a complete one) and no temp file; the re-run writes the
    result an uninterrupted evaluation gives."""
    ck = reference / "checkpoints" / "best.pt"
    out = tmp_path / "res" / "eval.json"
    log = tmp_path / "a.log"
    proc = start(["eval", "--checkpoint", str(ck), *EVAL, "--out", str(out)], env, log)
    assert wait_for(lambda: "clean:" in log.read_text(), proc), log.read_text()[-2000:]
    time.sleep(0.2)
    kill(proc)
    assert "cw:" not in log.read_text(), "the evaluation ended before the kill; make it longer"
    if out.exists():
        json.loads(out.read_text())  # complete, never half-written
    if out.parent.exists():
        assert not _left_over(out), "temp files left beside --out"
    finish(["eval", "--checkpoint", str(ck), *EVAL, "--out", str(out)], env, tmp_path / "b.log")
    rerun = json.loads(out.read_text())
    assert not _left_over(out), "temp files left beside --out"
    direct = tmp_path / "direct.json"
    monkeypatch.setenv("ROBUSTFRONT_CACHE", env["ROBUSTFRONT_CACHE"])
    res = run_main(["eval", "--checkpoint", str(ck), *EVAL, "--out", str(direct)], timeout=300)
    assert res.rc == 0, res.err + res.tb
    assert _accuracies(rerun) == _accuracies(json.loads(direct.read_text()))

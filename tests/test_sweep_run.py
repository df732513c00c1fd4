"""Running sweeps: skip/resume/refuse on re-runs, failures, the local pool with 2 processes, a SIGKILLed
sweep that completes on re-run with identical results, and submitit's local executor with a preemption.

Tiny digits runs (small_cnn width 8, attack_steps 2, PGD-10 on 50 test images): seconds per point.
"""
import copy
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from robustfront.sweep import (
    evaluate_point,
    expand,
    point_results,
    run_sweep,
    sweep_fronts,
)
from robustfront.sweep.executors import cpu_cores

ROOT = Path(__file__).resolve().parents[1]
TINY = yaml.safe_load((ROOT / "configs" / "sweeps" / "tiny_digits.yaml").read_text())
RESUME_SPEC = {**copy.deepcopy(TINY), "seeds": None, "base": {**TINY["base"], "epochs": 5},
               "methods": {"ca_at": {"grid": {"opts.gamma": [0.8]}, "set": {"epochs": 1}},
                           "vanilla": {"grid": {"opts.lam": [0.5]}}}}
SLOW = "method=vanilla,lam=0.5"   # the 5-epoch point the interruption tests stop half-way


def spec(**changes):
    s = copy.deepcopy(TINY)
    for k, v in changes.items():
        s[k] = v
    return s


def read(path):
    return json.loads(Path(path).read_text())


def weights(folder, name="best.pt"):
    return torch.load(Path(folder) / "checkpoints" / name, weights_only=True)["model"]


def same_weights(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The slow point trained in one go, in this process (1 torch thread, like the workers below)."""
    out = tmp_path_factory.mktemp("reference")
    one = {**RESUME_SPEC, "methods": {"vanilla": RESUME_SPEC["methods"]["vanilla"]}}
    s = run_sweep(one, out, executor="inline", threads=1, log=lambda m: None)
    assert s["counts"]["done"] == 1
    return out / "points" / SLOW


def test_inline_rerun_skips_refuses_a_changed_config_and_moves_it_only_when_asked(tmp_path):
    only = "method=vanilla,lam=0.25,seed=1"
    log = []
    s = run_sweep(spec(), tmp_path, executor="inline", only=only, log=log.append)
    folder = tmp_path / "points" / only
    assert s["counts"] == {"done": 1, "running": 0, "failed": 0, "pending": 7, "total": 8}   # `only` runs one
    ev, summary = read(folder / "eval.json"), read(tmp_path / "sweep.json")
    (row,) = [p for p in summary["points"] if p["status"] == "done"]
    assert row["name"] == only
    assert row["status"] == "done" and row["eval"]["clean_acc"] == ev["clean_acc"]
    assert row["eval"]["robust_acc"] == ev["robust_acc"] and ev["n"] == 50
    assert ev["config_hash"] == read(folder / "point.json")["config_hash"] == row["config_hash"]
    assert row["epochs_done"] == 2 and row["train_time_s"] > 0 and summary["counts"]["done"] == 1
    assert any("[sweep] done " + only in m for m in log)

    # the evaluation is the checkpoint's accuracy on the seeded subset of the split (independent check)
    from robustfront.data import load_dataset, subset_indices
    from robustfront.models import load_model
    model = load_model(str(folder / "checkpoints" / "best.pt"))
    ds = load_dataset("digits", seed=1)   # the TRAINING seed carves the val split
    idx = subset_indices(len(ds.y_test), 50, 0)
    x = torch.as_tensor(ds.x_test[idx]).float() / 255
    with torch.no_grad():
        assert ev["clean_acc"] == pytest.approx((model(x).argmax(1) == torch.as_tensor(ds.y_test[idx])).float().mean().item())
        val = evaluate_point(folder, {**ev["eval"], "split": "val", "n": None, "attacks": ["fgsm"]})
        want = (model(torch.as_tensor(ds.x_val).float() / 255).argmax(1) == torch.as_tensor(ds.y_val)).float().mean()
    assert val["n"] == len(ds.y_val) and val["clean_acc"] == pytest.approx(want.item())

    before = {p: p.read_bytes() for p in [folder / "eval.json", folder / "checkpoints" / "best.pt", folder / "status.json"]}
    s = run_sweep(spec(), tmp_path, executor="inline", only=only, log=log.append)
    assert s["counts"]["done"] == 1 and all(p.read_bytes() == b for p, b in before.items())  # skipped, untouched

    changed = spec(base={**TINY["base"], "lr": 0.04, "model_args": {"width": 6}})
    with pytest.raises(ValueError) as e:
        run_sweep(changed, tmp_path, executor="inline", only=only, log=log.append)
    msg = str(e.value)
    assert "\n" not in msg and "was written for " in msg and "move_stale" in msg
    for key, old, new in (("lr", "0.05", "0.04"), ("model_args.width", "8", "6")):   # each named with both values
        assert re.search(rf"{re.escape(key)}={old}(, this run has {re.escape(key)}=| -> ){new}", msg), msg
    assert all(p.read_bytes() == b for p, b in before.items())

    # another eval protocol: refused, then with move_stale only re-evaluated (the training is kept)
    other_eval = spec(eval={**TINY["eval"], "n": 40})
    with pytest.raises(ValueError, match=r"was written for eval.n=50, this run has eval.n=40"):
        run_sweep(other_eval, tmp_path, executor="inline", only=only, log=log.append)
    run_sweep(other_eval, tmp_path, executor="inline", only=only, move_stale=True, log=log.append)
    assert read(folder / "eval.json")["n"] == 40
    assert (folder / "checkpoints" / "best.pt").read_bytes() == before[folder / "checkpoints" / "best.pt"]
    old_hash = json.loads(before[folder / "eval.json"])["eval_hash"][:8]
    assert read(tmp_path / "_stale" / f"{only}.eval.{old_hash}.json")["n"] == 50

    run_sweep(changed, tmp_path, executor="inline", only=only, move_stale=True, log=log.append)
    stale = list((tmp_path / "_stale").glob(only + ".*"))
    assert any(p.is_dir() and (p / "checkpoints" / "best.pt").is_file() for p in stale)
    assert read(folder / "point.json")["config"]["lr"] == 0.04 and read(folder / "status.json")["attempt"] == 1


def test_local_pool_two_processes_a_failing_point_and_the_fronts(tmp_path):
    s = spec(seeds=None, methods={"vanilla": {"grid": {"opts.lam": [0.25]}}, "ca_at": {"grid": {"opts.gamma": [0.9]}},
                                  "pgd_at": {"set": {"data": str(tmp_path / "no_such_data")}}})
    log = []
    # GPU ids are handed out one per worker (ids that do not exist here: the workers fall back to the CPU)
    summary = run_sweep(s, tmp_path / "out", jobs=2, gpus=["7", "9"], log=log.append)
    assert summary["counts"] == {"done": 2, "running": 0, "failed": 1, "pending": 0, "total": 3}
    pts = tmp_path / "out" / "points"
    failed = read(pts / "method=pgd_at" / "status.json")
    assert failed["status"] == "failed" and "dataset path" in failed["error"] and "no_such_data" in failed["error"]
    row = next(p for p in summary["points"] if p["name"] == "method=pgd_at")
    assert row["status"] == "failed" and row["error"] == failed["error"]
    assert "Traceback" in (pts / "method=pgd_at" / "log.txt").read_text()
    done = [read(pts / p["name"] / "status.json") for p in summary["points"] if p["status"] == "done"]
    assert {d["threads"] for d in done} == {max(1, cpu_cores() // 2)}
    assert len({d["pid"] for d in done}) == 2 and {d["cuda_visible_devices"] for d in done} == {"7", "9"}
    spans = sorted((d["started"], d["finished"]) for d in done)
    assert spans[1][0] < spans[0][1]   # two workers ran at the same time
    assert any("failed method=pgd_at: FileNotFoundError: dataset path" in m for m in log)
    assert any("ETA" in m and "2/3 done" in m for m in log)

    results = point_results(tmp_path / "out")
    assert sorted((r["family"], r["knob"]) for r in results) == [("ca_at", "gamma=0.9"), ("vanilla", "lam=0.25")]
    ev = read(pts / "method=ca_at,gamma=0.9" / "eval.json")
    r = next(r for r in results if r["family"] == "ca_at")
    assert r["clean"] == ev["clean_acc"] and r["robust"] == ev["robust_acc"]["pgd10"] and r["eps"] == pytest.approx(32 / 255)
    files = sweep_fronts(tmp_path / "out")
    front = read(next(f for f in files if f.suffix == ".json"))
    assert set(front["families"]) == {"ca_at", "vanilla"} and front["group"]["protocol"] == "attacks=pgd10;n=50;seed=0"
    # `robustfront report SWEEP_DIR`: the points' rows (the failed one trained nothing: no row) and the fronts
    from robustfront.cli import main
    assert main(["report", str(tmp_path / "out"), "--out", str(tmp_path / "rep")]) == 0
    import csv
    rows = list(csv.DictReader(open(tmp_path / "rep" / "results.csv")))
    assert sorted(r["run"] for r in rows) == ["method=ca_at,gamma=0.9", "method=vanilla,lam=0.25"]
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "](fronts/front_" in md and (tmp_path / "rep" / "fronts" / "fronts.md").read_text() == \
        (tmp_path / "out" / "fronts" / "fronts.md").read_text()

    # a re-run retries the failed point only (unless told not to)
    summary = run_sweep(s, tmp_path / "out", jobs=2, retry_failed=False, log=log.append)
    assert read(pts / "method=pgd_at" / "status.json")["attempt"] == 1
    summary = run_sweep(s, tmp_path / "out", jobs=2, log=log.append)
    assert read(pts / "method=pgd_at" / "status.json")["attempt"] == 2 and summary["counts"]["failed"] == 1
    assert all(d["attempt"] == 1 for d in (read(pts / p["name"] / "status.json") for p in summary["points"]
                                            if p["status"] == "done"))


def _dead(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] == "Z"  # reaped late: a zombie
    except OSError:
        return True


def _wait(cond, timeout, what):
    t = time.time()
    while not cond():
        if time.time() - t > timeout:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def _epochs(folder):
    p = Path(folder) / "metrics.jsonl"
    return [json.loads(ln)["epoch"] for ln in p.read_text().splitlines() if ln.strip()] if p.is_file() else []


def test_sigkilled_sweep_completes_on_rerun_with_identical_results(tmp_path, reference):
    cfg = tmp_path / "sweep.yaml"
    cfg.write_text(yaml.safe_dump(RESUME_SPEC))
    out = tmp_path / "out"
    first, slow = out / "points" / "method=ca_at,gamma=0.8", out / "points" / SLOW
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-m", "robustfront", "sweep", "--config", str(cfg), "--out", str(out),
                             "--jobs", "1", "--threads", "1"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait(lambda: (first / "eval.json").is_file() and len(_epochs(slow)) >= 1 or proc.poll() is not None, 300,
              "the first point to finish and the second to pass an epoch")
        assert not (slow / "eval.json").is_file(), "the second point finished before it could be interrupted"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert read(first / "status.json")["cuda_visible_devices"] == ""   # CPU workers see no GPU
    worker = read(slow / "status.json")
    assert worker["status"] == "running" and worker["attempt"] == 1   # killed: no chance to write anything
    _wait(lambda: _dead(worker["pid"]), 20, "the orphaned worker to die with its parent")
    stopped_at = len(_epochs(slow))
    assert 1 <= stopped_at < 5
    kept = {p: p.read_bytes() for p in [first / "eval.json", first / "checkpoints" / "best.pt", first / "checkpoints" / "last.pt"]}

    log = []
    summary = run_sweep(cfg, out, jobs=1, threads=1, log=log.append)
    assert summary["counts"]["done"] == 2
    assert all(p.read_bytes() == b for p, b in kept.items())                 # the finished point: untouched
    st = read(slow / "status.json")
    assert st["attempt"] == 2 and st["resumed_from_epoch"] >= stopped_at      # resumed, not restarted
    assert _epochs(slow) == [1, 2, 3, 4, 5]
    assert any(f"start {SLOW} (resuming after epoch" in m for m in log)
    # and the resumed run is the uninterrupted one: same weights, same evaluation
    assert read(slow / "point.json")["config_hash"] == read(reference / "point.json")["config_hash"]
    assert same_weights(weights(slow), weights(reference)) and same_weights(weights(slow, "last.pt"), weights(reference, "last.pt"))
    a, b = read(slow / "eval.json"), read(reference / "eval.json")
    assert (a["clean_acc"], a["robust_acc"]) == (b["clean_acc"], b["robust_acc"])


def test_submitit_local_executor_requeues_a_preempted_point_and_resumes(tmp_path, reference):
    pytest.importorskip("submitit")
    from robustfront.sweep.slurm import run_submitit
    one = {**RESUME_SPEC, "methods": {"vanilla": RESUME_SPEC["methods"]["vanilla"]}}
    out = tmp_path / "out"
    run_sweep(one, out, executor="submitit-local", dry_run=True, log=lambda m: None)  # folders, point.json
    folder = out / "points" / SLOW
    events = []
    (job,) = run_submitit([folder], lambda f, e, i: events.append((e, i)), out=out, cluster="local",
                          params={"timeout_min": 60}, threads=1, wait=False)
    assert events[0][0] == "submitted"
    _wait(lambda: len(_epochs(folder)) >= 1 or job.done(), 300, "the point to pass its first epoch")
    assert not (folder / "eval.json").is_file(), "the point finished before it could be preempted"
    os.kill(read(folder / "status.json")["pid"], signal.SIGUSR2)   # what SLURM sends before preempting
    _wait(job.done, 300, "the requeued job to finish")
    assert job.result() == "done"
    st = read(folder / "status.json")
    assert st["status"] == "done" and st["attempt"] == 2 and st["resumed_from_epoch"] >= 1
    assert _epochs(folder) == [1, 2, 3, 4, 5]
    assert same_weights(weights(folder), weights(reference))
    assert read(folder / "eval.json")["robust_acc"] == read(reference / "eval.json")["robust_acc"]

    # the whole path through run_sweep: the finished point is skipped, a new one runs as an array task
    two = {**one, "methods": {**one["methods"], "pgd_at": {"set": {"epochs": 1}}}}
    summary = run_sweep(two, out, executor="submitit-local", threads=1, poll_s=0.2, slurm={"timeout_min": 60},
                        log=lambda m: None)
    assert summary["counts"]["done"] == 2 and read(folder / "status.json")["attempt"] == 2
    assert all(p.get("job_id") for p in summary["points"] if p["name"] != SLOW)


def test_missing_submitit_and_unknown_executor_are_one_line_errors(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match=r"executor='pbs' is unknown; allowed: local, inline, slurm"):
        run_sweep(spec(), tmp_path, executor="pbs", log=lambda m: None)
    monkeypatch.setitem(sys.modules, "submitit", None)   # import submitit now raises ImportError
    monkeypatch.delitem(sys.modules, "robustfront.sweep.slurm", raising=False)
    import robustfront.sweep
    monkeypatch.delattr(robustfront.sweep, "slurm", raising=False)
    with pytest.raises(ValueError, match=r"needs submitit, which is not installed; allowed: pip install"):
        run_sweep(spec(), tmp_path, executor="slurm", only="method=vanilla,lam=0.25,seed=0", log=lambda m: None)


def test_a_second_sweep_on_the_same_folder_is_refused(tmp_path):
    from robustfront.state import FolderLock
    with FolderLock(tmp_path, ".sweep.lock"):
        code = ("import sys; from robustfront.sweep import run_sweep\n"
                "try:\n    run_sweep(sys.argv[1], sys.argv[2], dry_run=True, log=lambda m: None)\n"
                "except ValueError as e:\n    print(e)\n")
        res = subprocess.run([sys.executable, "-c", code, str(ROOT / "configs" / "sweeps" / "tiny_digits.yaml"),
                              str(tmp_path)], capture_output=True, text=True,
                             env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert "is in use by another sweep" in res.stdout and f"(PID {os.getpid()})" in res.stdout
    assert len(expand(spec())) == 8

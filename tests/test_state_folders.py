"""One lock and one "written for other settings" message for every folder robustfront resumes: run
folders, sweep points and evaluation states (robustfront/state.py)."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from robustfront.eval import EvalConfig, evaluate
from robustfront.state import FolderLock
from robustfront.sweep.point import check_folder, config_hash, conflict, eval_hash, is_busy, point_lock, run_point
from robustfront.train import TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]
ONE_MESSAGE = re.compile(r"^(run|point|state) folder \S+ was written for (\S+)=[^,]+, this run has \2=[^;]+; allowed: ")
TINY = dict(data="digits", model="mlp", epochs=1, batch_size=128, train_n=256, eps="8/255", alpha="2/255",
            attack_steps=1, method="standard", progress=False)


def hold(folder: Path, name: str):
    """A subprocess holding FolderLock(folder, name) until killed."""
    code = ("import sys, time; from robustfront.state import FolderLock\n"
            "FolderLock(sys.argv[1], sys.argv[2]).__enter__(); print('locked', flush=True); time.sleep(120)\n")
    p = subprocess.Popen([sys.executable, "-c", code, str(folder), name], stdout=subprocess.PIPE, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert p.stdout.readline().strip() == "locked"
    return p


def point_folder(tmp_path: Path, lr: float = 0.05) -> tuple[Path, dict]:
    cfg = {**TINY, "lr": lr, "model_args": {"width": 8}}
    ev = {"attacks": ["fgsm"], "n": 50}
    rec = {"name": "p", "varied": {}, "config": cfg, "config_hash": config_hash(cfg), "eval": ev,
           "eval_hash": eval_hash(ev)}
    folder = tmp_path / "sweep" / "points" / "p"
    assert check_folder(folder, rec) == "new"
    return folder, rec


def test_a_sweep_point_held_by_another_process_is_refused_naming_its_pid(tmp_path):
    folder, _ = point_folder(tmp_path)
    holder = hold(folder, ".point.lock")
    try:
        assert is_busy(folder)
        assert run_point(folder) == "busy"          # the executors skip it, naming the holder
        assert f"(PID {holder.pid})" in point_lock(folder).refusal()
        with pytest.raises(ValueError) as e:
            point_lock(folder).__enter__()
        msg = str(e.value)
        assert msg.startswith(f"point folder {folder} is in use") and f"(PID {holder.pid})" in msg and "\n" not in msg
    finally:
        holder.kill()
        holder.wait()
    assert not is_busy(folder)
    with point_lock(folder):                          # released by the kernel when the holder died
        assert (folder / ".point.lock").read_text().strip() == str(os.getpid())


def test_a_run_folder_held_by_another_process_is_refused_naming_its_pid(tmp_path):
    out = tmp_path / "run"
    holder = hold(out, ".lock")
    try:
        with pytest.raises(ValueError, match=rf"^run folder {re.escape(str(out))} is in use by another robustfront "
                                             rf"process \(PID {holder.pid}\); allowed: "):
            train(TrainConfig(**TINY, out=str(out)))
    finally:
        holder.kill()
        holder.wait()
    assert not (out / "checkpoints").exists()


def test_a_lock_probe_takes_nothing(tmp_path):
    lock = FolderLock(tmp_path, ".x.lock")
    assert not lock.held_elsewhere() and not (tmp_path / ".x.lock").exists()
    with lock:
        assert FolderLock(tmp_path, ".x.lock").held_elsewhere()   # flock is per open file: a second lock waits too
        assert (tmp_path / ".x.lock").read_text().strip() == str(os.getpid())
    assert not lock.held_elsewhere()


def test_run_point_and_state_folders_written_for_other_settings_give_one_message(tmp_path):
    # a resumed run: the settings its checkpoint was trained with
    out = tmp_path / "run"
    train(TrainConfig(**TINY, out=str(out)))
    before = (out / "checkpoints" / "last.pt").read_bytes()
    with pytest.raises(ValueError) as e:
        train(TrainConfig(**{**TINY, "lr": 0.2, "seed": 3}, out=str(out)), resume=True)
    run_msg = str(e.value)
    assert ONE_MESSAGE.match(run_msg) and "lr=0.1, this run has lr=0.2 (also seed=0 -> 3)" in run_msg, run_msg
    assert "to resume" in run_msg and (out / "checkpoints" / "last.pt").read_bytes() == before
    assert train(TrainConfig(**{**TINY, "epochs": 2}, out=str(out)), resume=True)["epoch"] == 2   # epochs may change

    # a sweep point trained with another config
    folder, rec = point_folder(tmp_path)
    (folder / "config.yaml").write_text("lr: 0.05\n")   # as if training had started
    _, other = point_folder(tmp_path / "other", lr=0.04)
    kind, point_msg = conflict(folder, other)
    assert kind == "config" and ONE_MESSAGE.match(point_msg), point_msg
    assert "was written for lr=0.05, this run has lr=0.04; allowed: the same sweep config" in point_msg
    assert json.loads((folder / "point.json").read_text()) == rec   # refused, untouched
    (folder / "eval.json").write_text("{}")
    other_eval = {**rec, "eval": {"attacks": ["fgsm"], "n": 40}, "eval_hash": eval_hash({"attacks": ["fgsm"], "n": 40})}
    kind, eval_msg = conflict(folder, other_eval)
    assert kind == "eval" and ONE_MESSAGE.match(eval_msg) and "eval.n=50, this run has eval.n=40" in eval_msg

    # an evaluation state folder
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3)).eval()
    x, y = torch.rand(6, 4), torch.randint(0, 3, (6,))
    cfg = EvalConfig(attacks=["fgsm"], eps=["8/255"], state=str(tmp_path / "state"))
    evaluate(model, x, y, cfg)
    with pytest.raises(ValueError) as e:
        evaluate(model, x, y, cfg.replace(seed=1))
    assert ONE_MESSAGE.match(str(e.value)) and "seed=0, this run has seed=1" in str(e.value)

"""Issue 21 ("Nothing silent, nothing wrong"), one test per reported case, through the CLI in-process
(`cli.main`): a wrong result is refused before any work (exit 2, ONE line naming the value and the flag,
files untouched), a partial failure exits non-zero, files keep the process umask, progress is not
silent. Each test's name says the defect it was written against.
"""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import torch
import yaml

from cli_harness import error_line, isolated_root, json_out, run_main

pytestmark = pytest.mark.filterwarnings("ignore")

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--data", "digits", "--model", "small_cnn", "--model-arg", "width=4", "--epochs", "1", "--train-n", "64",
        "--attack-steps", "1", "--eval-steps", "1", "--eval-n", "16", "--batch-size", "32", "--no-progress"]


def one_error(res, *needles, rc=2):
    """Exit `rc`, exactly one error line on stderr, no traceback, containing every needle."""
    if rc == 2:
        line, why = error_line(res)
        assert line is not None, f"{why}\nargv: {res.argv}\nstderr: {res.err[-800:]}\n{res.tb[-800:]}"
    else:
        assert res.rc == rc and not res.exc, (res.rc, res.err[-800:], res.tb[-800:])
        line = res.lines()[-1]
    errors = [l for l in res.lines() if "error:" in l]
    assert len(errors) == 1, f"not one error line: {errors}"
    for n in needles:
        assert str(n) in line, f"{n!r} not in: {line}"
    return line


def snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != ".lock"}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    with isolated_root(tmp_path_factory, "issue21") as root:
        run = root / "run"
        res = run_main(["train", *TINY, "--out", str(run)], timeout=180)
        assert res.rc == 0, res.err + res.tb
        yield {"root": root, "run": run, "ck": run / "checkpoints" / "best.pt"}


# ------------------------------------------------------------------ silent wrong results

@pytest.mark.parametrize("value", ["nan", "inf"])
def test_non_finite_weights_are_refused_before_evaluation(world, tmp_path, value):
    state = torch.load(world["ck"], weights_only=True)
    key = "features.0.0.weight"
    state["model"][key].view(-1)[0] = float(value)
    bad = tmp_path / "bad.pt"
    torch.save(state, bad)
    torch.save(state["model"], tmp_path / "bare.pt")
    before = snapshot(tmp_path)
    res = run_main(["eval", "--checkpoint", str(bad), "--attacks", "fgsm", "--no-state"], timeout=120)
    one_error(res, "--checkpoint", "bad.pt", "non-finite", key)
    assert "clean" not in res.err   # refused before anything was measured
    res = run_main(["eval", "--weights", str(tmp_path / "bare.pt"), "--model", "small_cnn", "--data", "digits",
                    "--attacks", "fgsm", "--no-state"], timeout=120)
    one_error(res, "--weights", "bare.pt", "non-finite")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("classes", [5, 20000])
def test_model_and_data_class_counts_must_agree(tmp_path, world, classes):
    from robustfront.models import create_model
    torch.save(create_model("small_cnn", num_classes=classes, in_channels=1, input_size=8, width=4).state_dict(),
               tmp_path / "w.pt")
    res = run_main(["eval", "--weights", str(tmp_path / "w.pt"), "--model", "small_cnn", "--data", "digits",
                    "--attacks", "fgsm", "--no-state"], timeout=120)
    line = one_error(res, "--weights", f"{classes} outputs", "--data='digits'", "10 classes")
    assert "internal error" not in res.err and "clean" not in res.err, line


def test_report_card_eps_of_another_budget_is_refused_not_ignored(tmp_path):
    res_file = tmp_path / "eval.json"
    res_file.write_text(json.dumps({"clean_acc": 0.8, "robust_acc": {"autoattack": 0.5}, "worst_case_acc": 0.5,
                                    "n": 100, "eps": 8 / 255, "eps_str": "8/255", "norm": "Linf"}))
    base = ["report", "--card", str(res_file), "--card-name", "m", "--card-architecture", "a", "--out",
            str(tmp_path / "cards")]
    res = run_main([*base, "--card-eps", "1/255"], timeout=60)
    one_error(res, "card_eps", "1/255", "8/255")
    assert not (tmp_path / "cards").exists()
    res = run_main([*base, "--card-eps", "8/255"], timeout=60)   # its own budget: honoured
    assert res.rc == 0, res.err
    assert json.loads(Path(res.out.strip().splitlines()[-1]).read_text())["eps"] == "8/255"


def test_export_never_overwrites_a_file_beside_out_that_no_export_wrote(world, tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "best.pt").write_bytes(world["ck"].read_bytes())
    (run / "eval.json").write_text('{"clean_acc": 0.9}\n')
    before = snapshot(run)
    res = run_main(["export", str(run / "checkpoints" / "best.pt"), "--out", str(run / "eval")], timeout=60)
    one_error(res, "out=", "eval.json", "overwrite")
    assert snapshot(run) == before
    for _ in range(2):   # an earlier export's own files are replaced: the same command twice works
        res = run_main(["export", str(run / "checkpoints" / "best.pt"), "--out", str(tmp_path / "rel" / "m")])
        assert res.rc == 0, res.err


def test_export_of_a_bare_state_dict_says_give_model(world, tmp_path):
    torch.save(torch.load(world["ck"], weights_only=True)["model"], tmp_path / "sd.pt")
    res = run_main(["export", str(tmp_path / "sd.pt"), "--out", str(tmp_path / "x.pt")], timeout=60)
    one_error(res, "sd.pt", "bare state dict", "--model")
    assert not (tmp_path / "x.pt").exists()


def test_input_mean_of_three_values_on_one_channel_names_the_flag(world, tmp_path):
    sd = torch.load(world["ck"], weights_only=True)["model"]
    torch.save({k: v for k, v in sd.items() if not k.startswith("normalize.")}, tmp_path / "sd.pt")
    res = run_main(["export", str(tmp_path / "sd.pt"), "--model", "small_cnn", "--input-mean", "0.1,0.2,0.3",
                    "--input-std", "0.2,0.2,0.2", "--out", str(tmp_path / "x.pt")], timeout=60)
    line = one_error(res, "--input-mean", "[0.1, 0.2, 0.3]", "1 channels")
    assert "1 or 1" not in line


def test_atomically_written_files_follow_the_umask(world, tmp_path):
    old = os.umask(0o022)
    try:
        res = run_main(["train", *TINY, "--out", str(tmp_path / "run")], timeout=180)
        assert res.rc == 0, res.err
        res = run_main(["eval", "--checkpoint", str(tmp_path / "run" / "checkpoints" / "best.pt"), "--attacks",
                        "fgsm", "--out", str(tmp_path / "eval.json")], timeout=120)
        assert res.rc == 0, res.err
    finally:
        os.umask(old)
    files = [p for p in (tmp_path).rglob("*") if p.is_file() and p.name != ".lock"]
    modes = {str(p.relative_to(tmp_path)): stat.S_IMODE(p.stat().st_mode) for p in files}
    assert {"run/config.yaml", "run/checkpoints/best.pt", "eval.json"} <= set(modes)
    assert all(m == 0o644 for m in modes.values()), modes


def _sweep_file(tmp_path, methods) -> Path:
    spec = yaml.safe_load((ROOT / "configs" / "sweeps" / "tiny_digits.yaml").read_text())
    spec.update(seeds=None, methods=methods)
    spec["base"].update(epochs=1, train_n=64, model_args={"width": 4})
    spec["eval"].update(attacks=["fgsm"], n=20)
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_a_sweep_with_a_failed_point_exits_non_zero_and_names_it(tmp_path):
    cfg = _sweep_file(tmp_path, {"standard": {}, "pgd_at": {"set": {"data": str(tmp_path / "no_such_data")}}})
    res = run_main(["sweep", "--config", str(cfg), "--out", str(tmp_path / "out"), "--executor", "inline"],
                   timeout=300)
    line = one_error(res, "1 of 2", "method=pgd_at", "error.txt", rc=1)
    assert "method=standard" not in line
    assert json.loads(res.out.strip().splitlines()[0])["failed"] == 1
    # --fronts on the same folder: an unreadable eval.json is refused as `report` refuses it, not left out
    done = tmp_path / "out" / "points" / "method=standard" / "eval.json"
    assert done.is_file()
    done.write_text("{not json")
    res = run_main(["sweep", "--out", str(tmp_path / "out"), "--fronts"], timeout=120)
    one_error(res, "--fronts", "eval.json", "not a readable JSON")


def _digit_tree(folder: Path) -> None:
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits
    x, y = load_digits(return_X_y=True)
    for split, rows in (("train", range(0, 120)), ("test", range(1500, 1560))):
        for i in rows:
            d = folder / split / str(y[i])
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray((x[i].reshape(8, 8) * 15).astype(np.uint8)).save(d / f"{i}.png")


def test_a_run_trained_with_a_relative_data_path_evaluates_from_another_directory(tmp_path, monkeypatch):
    _digit_tree(tmp_path / "a" / "tree")
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    res = run_main(["train", *TINY[2:], "--data", "tree", "--out", "run"], timeout=180)
    assert res.rc == 0, res.err
    cfg = yaml.safe_load((tmp_path / "a" / "run" / "config.yaml").read_text())
    assert cfg["data"] == str(tmp_path / "a" / "tree") and cfg["as_typed"] == {"data": "tree"}
    monkeypatch.chdir(tmp_path / "b")
    ck = str(tmp_path / "a" / "run" / "checkpoints" / "best.pt")
    res = run_main(["eval", "--checkpoint", ck, "--attacks", "fgsm", "--no-state"], timeout=120)
    assert res.rc == 0 and json_out(res)["data"], res.err
    # a run recorded before this (the path as typed) or whose data moved: the error says where the path came
    # from and which flag overrides it
    state = torch.load(ck, weights_only=True)
    state["config"].update(data="tree", as_typed=None)
    torch.save(state, tmp_path / "b" / "old.pt")
    res = run_main(["eval", "--checkpoint", "old.pt", "--attacks", "fgsm", "--no-state"], timeout=120)
    one_error(res, "'tree'", "training config stored in old.pt", "--data PATH")
    res = run_main(["eval", "--checkpoint", "old.pt", "--data", "../a/tree", "--attacks", "fgsm", "--no-state"],
                   timeout=120)
    assert res.rc == 0, res.err


VIT = ["--data", "digits", "--model", "vit_tiny_patch4_32", "--model-arg", "embed_dim=24", "--model-arg", "depth=2",
       "--model-arg", "num_heads=3", "--epochs", "1", "--train-n", "32", "--batch-size", "32", "--no-progress"]


@pytest.mark.parametrize("flags, needles", [
    (["--finetune", "lora", "--lora-rank", "100000000"], ["lora_rank=100000000", "--lora-rank", "1 to 24"]),
    (["--finetune", "adapter", "--adapter-reduction", "1000"], ["adapter_reduction=1000", "--adapter-reduction"]),
    (["--model-arg", "mlp_ratio=100000000"], ["vit_tiny_patch4_32", "parameters", "memory available"]),
])
def test_sizes_are_bounded_before_anything_is_allocated(tmp_path, flags, needles):
    import resource
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    res = run_main(["train", *VIT, *flags, "--out", str(tmp_path / "run")], timeout=120)
    one_error(res, *needles)
    assert not (tmp_path / "run" / "checkpoints").exists()
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 500, f"peak memory grew by {grown_mb:.0f} MB before the refusal"


def test_a_class_count_beyond_memory_is_refused_before_allocating(tmp_path):
    from robustfront.models import create_model
    with pytest.raises(ValueError, match=r"num_classes=3000000000 .*memory available"):
        create_model("mlp", num_classes=3_000_000_000, input_dim=64, hidden=[8])
    # through the CLI the head follows the data: a num_classes option is one line, not a TypeError
    res = run_main(["train", "--data", "digits", "--model", "mlp", "--model-arg", "num_classes=3000000000",
                    "--epochs", "1", "--no-progress", "--out", str(tmp_path / "r")], timeout=60)
    one_error(res, "model_args.num_classes=3000000000", "--model-arg", "10 classes")


# ------------------------------------------------------------------ torchrun: ranks agree on the config

def _rank_main(rank, port, out, result_dir):
    """One rank of a 2-rank group (gloo) running the CLI in-process; rank 1 gets another seed and, in the
    second case, a bad flag value that only it parses."""
    import contextlib
    import io
    os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from robustfront.cli import main
    argv = ["train", "--data", "digits", "--model", "mlp", "--model-arg", "hidden=[8]", "--epochs", "1",
            "--train-n", "64", "--batch-size", "32", "--device", "cpu", "--no-progress", "--out", out,
            "--seed", str(rank)]
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = main(argv)
    Path(result_dir, f"rank{rank}.json").write_text(json.dumps({"rc": rc, "err": err.getvalue()}))


def test_torchrun_ranks_with_different_configs_are_refused_naming_the_key(tmp_path):
    import socket
    import torch.multiprocessing as mp
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.start_processes(_rank_main, args=(port, str(tmp_path / "run"), str(tmp_path)), nprocs=2,
                       start_method="spawn", join=True)
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["rc"] == 2 and r1["rc"] == 2
    errs = [l for l in r0["err"].splitlines() if l.startswith("robustfront: error:")]
    assert len(errs) == 1 and "rank 1 has seed=1" in errs[0] and "rank 0 has seed=0" in errs[0], r0["err"]
    assert "error" not in r1["err"], r1["err"]          # printed once, by rank 0
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_an_error_on_one_rank_before_the_ranks_meet_is_printed_naming_that_rank(monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    res = run_main(["train", "--data", "digits", "--epochs", "-3", "--out", "x"], timeout=60)
    one_error(res, "rank 1 of 2", "epochs=-3")


# ------------------------------------------------------------------ progress from inside a batch

def _between(lines, start, end):
    """The lines after the first holding `start` and before the next one matching the regex `end`."""
    import re
    i = next(i for i, l in enumerate(lines) if start in l)
    j = next(j for j, l in enumerate(lines) if re.search(end, l) and j > i)
    return lines[i + 1:j]


def test_a_single_batch_attack_prints_before_it_ends(world, monkeypatch):
    monkeypatch.setenv("ROBUSTFRONT_PROGRESS_EVERY", "0")   # every model pass, so the test does not wait
    res = run_main(["eval", "--checkpoint", str(world["ck"]), "--attacks", "pgd20,autoattack", "--n", "40",
                    "--aa-budget", "n_iter=2,n_queries=5", "--no-state"], timeout=300)
    assert res.rc == 0, res.err[-2000:]
    lines = res.lines()
    inside = _between(lines, "pgd20: starting on 40 images", r"pgd20: [\d.]+% \(")
    assert any("has run the model" in l and "0/40 images done" in l for l in inside), lines[:10]
    for attack in ("apgd-ce", "apgd-t", "fab-t", "square"):   # the official cascade, each attack from inside
        if any(f"{attack}: starting" in l for l in lines):
            inside = _between(lines, f"{attack}: starting", f"robust after {attack.upper()}")
            assert any("has run the model" in l for l in inside), (attack, lines)


# ------------------------------------------------------------------ a resumable quickstart

def test_an_interrupted_quickstart_resumes_and_writes_results_after_every_model(tmp_path):
    import signal
    import subprocess
    import sys
    out = tmp_path / "qs"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "ROBUSTFRONT_CACHE": str(tmp_path / "c")}
    cmd = [sys.executable, "-m", "robustfront", "quickstart", "--out", str(out), "--epochs", "1", "--n", "20"]
    p = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    try:
        for line in p.stderr:   # kill -9 once the first model is in results.json
            if "holds 1/4 model(s)" in line:
                p.send_signal(signal.SIGKILL)
                break
    finally:
        p.kill()
        p.wait()
    first = json.loads((out / "results.json").read_text())
    assert [r["method"] for r in first] == ["standard"]
    kept = (out / "standard" / "checkpoints" / "best.pt").read_bytes()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"kept: {out / 'standard'} has finished its 1 epochs" in r.stderr
    assert (out / "standard" / "checkpoints" / "best.pt").read_bytes() == kept
    res = json.loads((out / "results.json").read_text())
    assert [x["method"] for x in res] == ["standard", "pgd_at", "vanilla", "ca_at"]
    assert res[0] == first[0] | {"train_time_s": res[0]["train_time_s"], "eval_time_s": res[0]["eval_time_s"]}
    assert "holds 4/4 model(s)" in r.stderr

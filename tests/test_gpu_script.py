"""benchmarks/gpu/run.sh: the dry run exercises every stage on the CPU (so the GPU run cannot rot
between lendings) and leaves at most 8 files in $OUT (what the device tool brings back); the first
command plans AutoAttack; the budget skips what does not fit, an overrunning stage is killed, a
failing stage records its traceback and the run goes on; the device command in docs/gpu.md parses
and fits the tool."""
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "benchmarks" / "gpu" / "run.sh"
sys.path.insert(0, str(RUN.parent))   # the GPU run's scripts live outside the package

from gpu_plan import AA_MIN, SIZES, STAGES, plan_run  # noqa: E402
from gpu_run import MAX_OUT_FILES, Worker, build_parser, main  # noqa: E402


def _run(*args, timeout=600, **extra):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHON": sys.executable, **extra}   # the tests' interpreter
    return subprocess.run(["bash", str(RUN), *args], capture_output=True, text=True, timeout=timeout, env=env,
                          cwd=ROOT)


def _rows(rep):
    return {(r["method"], r["variant"]) for r in rep["results"]}


def test_dry_run_runs_every_stage_on_the_cpu(tmp_path):
    out = tmp_path / "out"
    t0 = time.monotonic()
    proc = _run("--dry-run", "--budget-s", "500", "--out", str(out), ROBUSTFRONT_COMMIT="0123abc-test")
    wall = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr[-3000:]
    files = [f for f in out.rglob("*") if f.is_file()]   # what the device tool brings back: 8 files, 2 folders down
    assert len(files) <= MAX_OUT_FILES == 8 and all(len(f.relative_to(out).parts) <= 3 for f in files)
    assert sorted(f.name for f in files) == ["gpu_run.json", "summary.txt"]
    run = json.loads((out / "gpu_run.json").read_text())
    assert run["schema"] == "robustfront-gpu-run/2" and run["mode"].startswith("dry-run")
    assert run["commit"] == "0123abc-test"
    assert [s["name"] for s in run["stages"]] == STAGES
    assert all(s["status"] == "ok" for s in run["stages"]), [(s["name"], s["message"]) for s in run["stages"]]
    assert run["elapsed_s"] <= run["budget_s"] and wall < 500
    assert [s["name"] for s in run["plan"]["stages"]] == STAGES and run["plan"]["aa_n"] > 0
    st = {s["name"]: s for s in run["stages"]}
    for s in run["stages"]:
        assert s["estimate_s"] > 0 and s["timeout_s"] > 0 and s["elapsed_s"] >= 0 and s["summary"] and s["result"]
    r = st["env"]["result"]
    assert r["device"] == "cpu" and r["torch"] == torch.__version__ and "float32_matmul_precision" in r["precision_flags"]
    assert r["robustfront_commit"] == "0123abc-test"
    r = st["tests"]["result"]       # no CUDA here: every CUDA test is collected and skipped
    assert r["failed"] == r["errors"] == r["passed"] == 0 and r["skipped"] >= 19
    assert "test_cuda.py" in r["files"] and all(t["outcome"] == "skipped" for t in r["tests"])
    r = st["data"]["result"]        # the generated archive: 10 classes × (8 train + 3 test), 10 % of train held out
    assert (r["train"], r["val"], r["test"], r["shape"]) == (72, 8, 30, [3, 32, 32])
    sizes = run["sizes"]
    for name, methods, variants, ref in (
            ("bench", ["pgd_at", "ca_at", "agr", "trades", "raat"], sizes["bench_variants"], True),
            ("bench_compile", sizes["compile_methods"], sizes["compile_variants"], False)):
        rep = st[name]["result"]
        assert rep["settings"]["batch_size"] == sizes["batch"] and rep["settings"]["model"] == "small_cnn"
        assert _rows(rep) == {(m, v) for m in methods for v in variants}
        assert (rep["reference"] is not None) == ref
        for row in rep["results"]:
            assert row["images_per_s"] > 0 and 0 < row["mfu"] < 1.5 and row["warmup_s"] >= row["first_step_s"] > 0
    compiled = [r for r in st["bench_compile"]["result"]["results"] if r["variant"] == "compiled"]
    assert compiled and all(r["compile"] and r["compile_fallback"] is None for r in compiled)
    assert st["bench_compile"]["result"]["settings"]["compile_backend"] == "eager"
    assert "compile ≈" in st["bench_compile"]["summary"]
    r = st["epoch"]["result"]
    assert r["n_train"] == 72 and r["epochs"] == 1 and r["epoch_time_s"][0] > 0 and r["config"]["bf16"] is True
    plan = st["schedule_pgd_at"]["plan"]
    for m in ("pgd_at", "ca_at"):
        r = st[f"schedule_{m}"]["result"]
        assert r["method"] == m and r["epochs"] == plan["epochs"] == len(r["epoch_time_s"])
        e = r["eval"]
        assert e["n"] == sizes["eval_n"] and 0 <= e["robust_acc"]["pgd20"] <= e["clean_acc"] <= 1
        assert e["precision"]["exact_fp32"] is True and e["time_s"]["pgd20"] > 0
    r = st["autoattack"]["result"]
    assert r["n"] == plan["aa_n"] > 0 and set(r["results"]) == {"pgd_at", "ca_at"}
    for v in r["results"].values():
        assert 0 <= v["robust_acc"]["autoattack"] <= v["clean_acc"] and v["time_s"]["autoattack"] > 0
    tp = run["throughput"]          # per-method epoch times for a reproduction planner
    assert tp["schema"] == "robustfront-gpu-throughput/1" and tp["images_per_epoch"] == sizes["n_train"]
    assert tp["epoch_s"]["fp32"].keys() == {"pgd_at", "ca_at", "agr", "trades", "raat"}
    assert tp["epoch_s"]["bf16_channels_last"] == {} and all(v > 0 for v in tp["epoch_s"]["fp32"].values())
    summary = (out / "summary.txt").read_text()
    assert all(name in summary for name in STAGES) and summary.strip() in proc.stdout


@pytest.mark.parametrize("budget", [470, 480])
def test_the_first_command_plans_autoattack_and_everything_within_eight_minutes(budget):
    """The device command's plan, from the H200 priors: every stage, short schedules, AutoAttack on
    at least 200 images, all inside the budget (<= 8 minutes)."""
    plan = plan_run(SIZES["cuda"], budget, STAGES)
    assert [s["name"] for s in plan["stages"]] == STAGES and plan["skipped"] == []
    assert plan["aa_n"] >= AA_MIN and plan["epochs"] >= 1 and plan["total_s"] <= budget <= 480


def test_the_ladder_shrinks_epochs_before_it_drops_autoattack():
    ladder = SIZES["cuda"]["ladder"]
    with_aa = [i for i, (_, n) in enumerate(ladder) if n]
    assert max(with_aa) < min(i for i, (_, n) in enumerate(ladder) if not n)     # AutoAttack goes last
    assert all(n >= AA_MIN for _, n in ladder if n)
    first = [e for e, n in ladder if n == ladder[0][1]]
    assert first == sorted(first, reverse=True) and len(first) > 1                 # epochs shrink first
    tight = plan_run(SIZES["cuda"], 380, STAGES)       # less time: fewer epochs or images, AutoAttack stays
    assert tight["aa_n"] >= AA_MIN and "autoattack" in [s["name"] for s in tight["stages"]]


def test_a_failing_stage_records_its_traceback_and_the_run_goes_on(tmp_path):
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not an archive")
    out = tmp_path / "out"
    assert main(["--dry-run", "--budget-s", "120", "--stages", "data,epoch", "--data", str(junk), "--out", str(out)]) == 1
    run = json.loads((out / "gpu_run.json").read_text())
    st = {s["name"]: s for s in run["stages"]}
    assert st["data"]["status"] == st["epoch"]["status"] == "failed"      # the epoch still ran after the failure
    for s in st.values():
        assert s["message"] and "Traceback (most recent call last)" in s["traceback"]


def test_budget_skips_the_stages_that_do_not_fit_with_a_message(tmp_path):
    out = tmp_path / "out"
    proc = _run("--dry-run", "--budget-s", "30", "--stages", "env,bench,bench_compile", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = json.loads((out / "gpu_run.json").read_text())
    st = {s["name"]: s for s in run["stages"]}
    assert list(st) == ["env", "bench", "bench_compile"] and st["env"]["status"] == "ok"
    for name in ("bench", "bench_compile"):   # estimates 40 s and 30 s: more than the 30 s budget leaves
        assert st[name]["status"] == "skipped" and "result" not in st[name]
        assert re.fullmatch(r"skipped: needs about \d+s, \d+s of the 30s budget left", st[name]["message"])
        assert f"{name}: skipped: needs about" in proc.stderr
    assert sorted(f.name for f in out.iterdir()) == ["gpu_run.json", "summary.txt"]


def test_no_budget_skips_everything_without_starting_a_worker(tmp_path, capsys):
    assert main(["--dry-run", "--budget-s", "1", "--out", str(tmp_path)]) == 0
    run = json.loads((tmp_path / "gpu_run.json").read_text())
    assert [s["status"] for s in run["stages"]] == ["skipped"] * len(STAGES)
    assert all(s["message"].startswith("skipped: ") for s in run["stages"])
    assert "skipped" in capsys.readouterr().out


def test_an_overrunning_stage_is_killed_and_a_dead_worker_is_reported():
    w = Worker(dict(os.environ), cmd=[sys.executable, "-c", "import sys, time; sys.stdin.readline(); time.sleep(120)"])
    t0 = time.monotonic()
    done = w.run({"stage": "x"}, timeout=1.0)
    assert done["timeout"] and not done["ok"] and "killed after 1s" in done["error"]
    assert time.monotonic() - t0 < 30 and w.proc is None
    w = Worker(dict(os.environ), cmd=[sys.executable, "-c", "import sys; sys.stdin.readline(); sys.exit(3)"])
    assert w.run({"stage": "x"}, timeout=60) == {"ok": False, "error": "the worker process exited with code 3"}
    w = Worker(dict(os.environ), cmd=[sys.executable, "-c", "import sys; sys.stdin.readline(); print('noise'); "
                                                            "print('@@done {\"stage\": \"x\", \"ok\": true}')"])
    assert w.run({"stage": "x"}, timeout=60) == {"stage": "x", "ok": True}
    w.close()


@pytest.mark.parametrize("args, match", [(["--stages", "env,nope"], "unknown stage"),
                                         (["--data", "/no/such/archive.tar.gz"], "does not exist"),
                                         (["--budget-s", "0"], "too small")])
def test_bad_arguments_are_one_line_errors(tmp_path, capsys, args, match):
    assert main(["--dry-run", "--out", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and match in err[0]


def _block(text, tag):
    return re.search(rf"<!-- {tag} -->\n```\n(.+?)\n```\n<!-- /{tag} -->", text, re.S).group(1)


def test_the_device_commands_in_the_docs_parse_and_fit_the_tool():
    text = (ROOT / "docs" / "gpu.md").read_text()
    call = re.search(r"<!-- device-call -->\n(.+?)\n<!-- /device-call -->", text, re.S).group(1)
    carry = json.loads(re.search(r"^carry: (\[.*\])$", call, re.M).group(1))
    timeout = int(re.search(r"^timeout_s: (\d+)$", call, re.M).group(1))
    first, second = _block(text, "device-command"), _block(text, "device-command-2")
    for block in (first, second):
        assert len(block) <= 2000 and "\n" not in block.strip()
    words = shlex.split(first.replace('"$OUT"', "OUT"))
    assert words[:2] == ["bash", "benchmarks/gpu/run.sh"] and (ROOT / words[1]).is_file()
    a = build_parser().parse_args(words[2:])
    assert a.data == ".data/cifar10-jpeg.tar.gz" and a.out == "OUT" and a.stages == "all"
    assert a.budget_s <= 480 and a.budget_s + 30 <= timeout <= 600        # <= 8 minutes, room to start and write
    assert carry == [".data", ".whl"] and a.data.split("/")[0] in carry
    plan = plan_run(SIZES["cuda"], a.budget_s, STAGES)                      # the first command plans AutoAttack
    assert "autoattack" in [s["name"] for s in plan["stages"]] and plan["aa_n"] >= AA_MIN
    b = build_parser().parse_args(shlex.split(second.replace('"$OUT"', "OUT").replace("--budget-s B", "--budget-s 200"))[2:])
    assert set(b.stages.split(",")) <= set(STAGES) and "autoattack" in b.stages
    assert subprocess.run(["bash", "-n", str(RUN)]).returncode == 0
    gitignore = (ROOT / ".gitignore").read_text().split()
    assert "/.data/" in gitignore and "/.whl/" in gitignore           # what `carry` brings is never committed
    readme = (ROOT / "README.md").read_text()
    assert first in readme and 'carry [".data", ".whl"]' in readme and f"timeout_s {timeout}" in readme

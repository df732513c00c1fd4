"""benchmarks/gpu/run.sh: the dry run exercises every stage on the CPU (so the GPU run cannot rot
between lendings), the budget skips what does not fit, an overrunning stage is killed, and the
device command in docs/gpu.md parses and fits the tool."""
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

from robustfront.bench.gpu import Worker, build_parser, main
from robustfront.bench.gpu_plan import STAGES

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "benchmarks" / "gpu" / "run.sh"


def _run(*args, timeout=600):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHON": sys.executable}   # the interpreter running the tests
    return subprocess.run(["bash", str(RUN), *args], capture_output=True, text=True, timeout=timeout, env=env,
                          cwd=ROOT)


def _rows(rep):
    return {(r["method"], r["variant"]) for r in rep["results"]}


def test_dry_run_runs_every_stage_on_the_cpu(tmp_path):
    out = tmp_path / "out"
    t0 = time.monotonic()
    proc = _run("--dry-run", "--budget-s", "500", "--out", str(out))
    wall = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = json.loads((out / "gpu_run.json").read_text())
    assert run["schema"] == "robustfront-gpu-run/1" and run["mode"].startswith("dry-run")
    assert [s["name"] for s in run["stages"]] == STAGES
    assert all(s["status"] == "ok" for s in run["stages"]), [(s["name"], s["message"]) for s in run["stages"]]
    assert run["elapsed_s"] <= run["budget_s"] and wall < 500
    st = {s["name"]: s for s in run["stages"]}
    for s in run["stages"]:
        assert s["estimate_s"] > 0 and s["timeout_s"] > 0 and s["elapsed_s"] >= 0 and s["summary"]
        assert json.loads((out / "stages" / f"{s['name']}.json").read_text()) == s["result"]
    r = st["env"]["result"]
    assert r["device"] == "cpu" and r["torch"] == torch.__version__ and "float32_matmul_precision" in r["precision_flags"]
    r = st["tests"]["result"]       # no CUDA here: every CUDA test is collected and skipped
    assert r["failed"] == r["errors"] == r["passed"] == 0 and r["skipped"] >= 19
    assert "test_cuda.py" in r["files"] and (out / "tests.xml").is_file()
    assert all(t["outcome"] == "skipped" for t in r["tests"])
    r = st["data"]["result"]        # the generated archive: 10 classes × (8 train + 3 test), 10 % of train held out
    assert (r["train"], r["val"], r["test"], r["shape"]) == (72, 8, 30, [3, 32, 32])
    sizes = run["sizes"]
    for name, batch, methods, variants, ref in (
            ("bench_large", sizes["large_batch"], ["pgd_at", "trades", "mart", "ca_at", "agr", "raat"],
             sizes["large_variants"], True),
            ("bench_small", sizes["small_batch"], sizes["small_methods"], sizes["small_variants"], True),
            ("bench_compile", sizes["large_batch"], sizes["compile_methods"], sizes["compile_variants"], False)):
        rep = st[name]["result"]
        assert rep["settings"]["batch_size"] == batch and rep["settings"]["model"] == "small_cnn"
        assert _rows(rep) == {(m, v) for m in methods for v in variants}
        assert (rep["reference"] is not None) == ref
        for row in rep["results"]:
            assert row["images_per_s"] > 0 and 0 < row["mfu"] < 1.5 and row["warmup_s"] > 0
    compiled = [r for r in st["bench_compile"]["result"]["results"] if r["variant"] == "compiled"]
    assert compiled and all(r["compile"] for r in compiled)
    assert st["bench_compile"]["result"]["settings"]["compile_backend"] == "eager"
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
    summary = (out / "summary.txt").read_text()
    assert all(name in summary for name in STAGES) and summary.strip() in proc.stdout


def test_budget_skips_the_stages_that_do_not_fit_with_a_message(tmp_path):
    out = tmp_path / "out"
    proc = _run("--dry-run", "--budget-s", "30", "--stages", "env,bench_large,bench_compile", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = json.loads((out / "gpu_run.json").read_text())
    st = {s["name"]: s for s in run["stages"]}
    assert list(st) == ["env", "bench_large", "bench_compile"] and st["env"]["status"] == "ok"
    for name in ("bench_large", "bench_compile"):   # estimates 30 s and 40 s: more than the 30 s budget leaves
        assert st[name]["status"] == "skipped" and "result" not in st[name]
        assert re.fullmatch(r"skipped: needs about \d+s, \d+s of the 30s budget left", st[name]["message"])
        assert f"{name}: skipped: needs about" in proc.stderr
    assert not (out / "stages" / "bench_large.json").exists()


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


def test_the_device_command_in_the_docs_parses_and_fits_the_tool():
    text = (ROOT / "docs" / "gpu.md").read_text()
    block = re.search(r"<!-- device-command -->\n```\n(.+?)\n```\n<!-- /device-command -->", text, re.S).group(1)
    assert len(block) <= 2000 and "\n" not in block.strip()
    words = shlex.split(block.replace('"$OUT"', "OUT"))
    assert words[:2] == ["bash", "benchmarks/gpu/run.sh"] and (ROOT / words[1]).is_file()
    a = build_parser().parse_args(words[2:])
    assert a.budget_s == 450 and a.data == ".data/cifar10-jpeg.tar.gz" and a.out == "OUT" and a.stages == "all"
    assert subprocess.run(["bash", "-n", str(RUN)]).returncode == 0
    gitignore = (ROOT / ".gitignore").read_text().split()
    assert "/.data/" in gitignore and "/.whl/" in gitignore           # what `carry` brings is never committed

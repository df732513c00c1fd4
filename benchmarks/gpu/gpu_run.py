"""The GPU run: `python benchmarks/gpu/gpu_run.py --budget-s 470 --data ARCHIVE --out DIR` (run.sh).

One command that tests, times and trains within a time budget, writing DIR/gpu_run.json after every
stage (so whatever finished survives a kill) and DIR/summary.txt at the end — two files: the device
tool brings back at most 8, so every stage's result, the CUDA tests' report and any failure's
traceback live inside gpu_run.json.

  env              GPU, driver, torch, CUDA, cuDNN, precision flags, packages, the commit
  tests            the CUDA-only tests (pytest -m cuda)
  data             the CIFAR-10 archive decoded into the cache (once per machine)
  bench            `robustfront bench` full mode: ResNet-18, batch 512, PGD-10, the reference loop vs
                   pgd_at, ca_at, agr, trades, raat in fp32 (TF32 off), bf16, bf16 + channels_last
  epoch            one epoch of PGD-AT over the full training split
  schedule_*       a short one-cycle schedule of PGD-AT and CA-AT; clean and PGD-20 on 1 000 test images
  autoattack       AutoAttack (standard, official code) on the schedules' checkpoints (>= 200 images)
  bench_compile    bf16 + channels_last with and without torch.compile (compile time measured)

Before anything runs the whole run is planned from priors (gpu_plan.plan_run, recorded as "plan");
before each stage its time is estimated again from what this run has measured; a stage that does
not fit the budget left is skipped with a message, and the schedules' length and AutoAttack's image
count are chosen to fit, the stages after them kept free. A stage that overruns is killed (its
worker process, this script's own child); a stage that fails records its traceback; either way the
run goes on. --dry-run runs every stage on a tiny model and a few images on the CPU (CI).

This script uses the standard library only; the stages run in a worker (gpu_stages.py).
"""
from __future__ import annotations

import argparse
import json
import os
import selectors
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gpu_plan import (AA_MIN, BENCH_METHODS, SCHEDULE_METHODS, SIZES, STAGES, choose_aa, estimate, pick_schedule, plan_run, reserve_s,
                      summarize, throughput)
from gpu_tests import run_tests

HERE = Path(__file__).resolve().parent
MAX_OUT_FILES = 8     # what the device tool brings back from $OUT (at most 2 folders down)

MARGIN_S = 5     # kept free for writing the results after the last stage


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=str))
    os.replace(tmp, path)


class Worker:
    """The stage worker (python gpu_stages.py), started on first use and again after a kill; its
    stdout carries one `@@done {...}` line per stage."""

    def __init__(self, env: dict, cmd: list[str] | None = None):
        self.env, self.proc, self.buf = env, None, b""
        self.cmd = cmd or [sys.executable, str(HERE / "gpu_stages.py")]

    def run(self, job: dict, timeout: float) -> dict:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = subprocess.Popen(self.cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=self.env)
            self.buf = b""
        try:
            self.proc.stdin.write((json.dumps(job) + "\n").encode())
            self.proc.stdin.flush()
        except BrokenPipeError:
            code = self.proc.wait()
            self.proc = None
            return {"ok": False, "error": f"the worker process exited with code {code}"}
        deadline = time.monotonic() + timeout
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        try:
            while True:
                while b"\n" in self.buf:
                    line, self.buf = self.buf.split(b"\n", 1)
                    if line.startswith(b"@@done "):
                        return json.loads(line[7:])
                left = deadline - time.monotonic()
                if left <= 0:
                    self.kill()
                    return {"ok": False, "timeout": True, "error": f"killed after {timeout:.0f}s (its time limit)"}
                if sel.select(left):
                    chunk = os.read(self.proc.stdout.fileno(), 65536)
                    if not chunk:
                        code = self.proc.wait()
                        self.proc = None
                        return {"ok": False, "error": f"the worker process exited with code {code}"}
                    self.buf += chunk
        finally:
            sel.close()

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()          # our own child, by its handle
            self.proc.wait()
            self.proc = None

    def close(self) -> None:
        if self.proc is not None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
            self.proc = None


def stage_params(name: str, a, size: dict, plan: dict) -> tuple[str, dict]:
    """(worker kind, params) of a worker stage."""
    dev = {"device": a.device}
    data = plan["data"] if plan["data"] and Path(plan["data"]).exists() else None   # bench: random images else
    train = {**dev, "data": plan["data"], "model": size["model"], "model_args": size["model_args"],
             "attack_steps": size["attack_steps"], "batch_size": size["train_batch"], "lr": size["lr"],
             "bf16": True, "channels_last": True, "runs": str(plan["runs"])}
    bench = {**dev, "data": data, "model": size["model"], "model_args": size["model_args"],
             "attack_steps": size["attack_steps"], "steps": size["bench_steps"], "warmup": size["bench_warmup"]}
    if name == "env":
        return "env", dev
    if name == "data":
        return "data", {**dev, "data": a.data, "tiny_archive": plan.get("tiny_archive")}
    if name == "bench":
        return "bench", {**bench, "batch_size": size["batch"], "methods": plan["methods"],
                         "variants": size["bench_variants"]}
    if name == "bench_compile":
        return "bench", {**bench, "batch_size": size["batch"], "methods": size["compile_methods"],
                         "variants": size["compile_variants"], "warmup": size["compile_warmup"], "reference": False,
                         "compile_mode": a.compile_mode, "compile_backend": size.get("compile_backend")}
    if name == "epoch":
        return "epoch", train
    if name in SCHEDULE_METHODS:
        return "schedule", {**train, "method": SCHEDULE_METHODS[name], "epochs": plan["epochs"],
                            "eval_n": size["eval_n"]}
    if name == "autoattack":
        return "autoattack", {**dev, "n": plan["aa_n"], "checkpoints": plan["checkpoints"]}
    raise ValueError(f"unknown stage {name}")


def _why_not(name: str, plan: dict) -> str | None:
    """A stage that cannot run whatever the budget: its input is missing."""
    if name in ("epoch", *SCHEDULE_METHODS) and not (plan["data"] and Path(plan["data"]).exists()):
        return "no training data: pass --data ARCHIVE (a dry run makes its own in the data stage)"
    if name == "autoattack":
        have = {m: c for m, c in plan["checkpoints"].items() if Path(c).is_file()}
        if not have:
            return "no schedule checkpoint to attack (the schedule stages did not run)"
        plan["checkpoints"] = have
    return None


def commit() -> str | None:
    """The checkout's commit: $ROBUSTFRONT_COMMIT (run.sh reads it from .whl/commit, written by
    prepare.sh: the device's copy has no .git), else git."""
    if os.environ.get("ROBUSTFRONT_COMMIT"):
        return os.environ["ROBUSTFRONT_COMMIT"]
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, cwd=HERE)
    except (OSError, subprocess.SubprocessError):
        return None
    return (out.stdout.strip() or None) if out.returncode == 0 else None


def run(a) -> dict:
    t_start = time.monotonic()
    kind = "dry" if a.dry_run else "cuda"
    size = dict(SIZES[kind])
    out = Path(a.out)
    tmp = Path(tempfile.mkdtemp(prefix="rf-dry-")) if a.dry_run else None
    env = dict(os.environ)
    if a.dry_run:   # the dry run writes nothing outside --out and a temp folder it removes
        env["ROBUSTFRONT_CACHE"] = str(tmp / "cache")
    runs = Path(a.runs) if a.runs else (tmp / "runs" if a.dry_run else Path("runs/gpu"))
    work = runs / "work"      # stage files and the JUnit report: read back into gpu_run.json, not in $OUT
    plan = {"data": a.data, "runs": runs, "epochs": a.epochs, "aa_n": a.aa_n, "methods": a.methods.split(","),
            "checkpoints": {m: str(runs / f"schedule_{m}" / "checkpoints" / "last.pt")
                            for m in SCHEDULE_METHODS.values()}}
    if a.dry_run and not a.data:
        plan["tiny_archive"] = str(tmp / "tiny-cifar.tar.gz")
        plan["data"] = plan["tiny_archive"]
    wanted = STAGES if a.stages == "all" else a.stages.split(",")
    report = {"schema": "robustfront-gpu-run/2", "mode": "dry-run (CPU, tiny)" if a.dry_run else "gpu",
              "device": a.device, "data": a.data, "commit": commit(),
              "command": sys.argv, "budget_s": a.budget_s, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "sizes": size, "plan": plan_run(size, a.budget_s, wanted, a.epochs, a.aa_n, MARGIN_S),
              "stages": [], "throughput": None, "elapsed_s": 0.0}
    results: dict = {}
    worker = Worker(env)

    def left() -> float:
        return a.budget_s - (time.monotonic() - t_start) - MARGIN_S

    def say(msg: str) -> None:
        print(f"[gpu-run {time.monotonic() - t_start:6.0f}s] {msg}", file=sys.stderr, flush=True)

    pl = report["plan"]
    planned = ", ".join(f"{x['name']} {x['estimate_s']:.0f}s" for x in pl["stages"])
    say(f"plan: {planned}; total {pl['total_s']:.0f}s "
        f"of {a.budget_s:.0f}s; schedules {pl['epochs']} epochs, AutoAttack on {pl['aa_n']} images"
        + (f"; not planned: {', '.join(pl['skipped'])}" if pl["skipped"] else ""))
    try:
        for name in STAGES:
            if name not in wanted:
                continue
            rec = run_stage(name, a, size, plan, results, wanted, worker, env, work, left, say)
            results[name] = rec
            report["stages"].append(rec)
            report["throughput"] = throughput(results, size)
            report["elapsed_s"] = round(time.monotonic() - t_start, 1)
            write_json(out / "gpu_run.json", report)
    finally:
        worker.close()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    report["elapsed_s"] = round(time.monotonic() - t_start, 1)
    report["summary"] = format_summary(report)
    write_json(out / "gpu_run.json", report)
    (out / "summary.txt").write_text(report["summary"] + "\n")
    files = [f for f in out.rglob("*") if f.is_file()]
    if len(files) > MAX_OUT_FILES:   # the device tool would drop some: say which were there
        print(f"gpu-run: {len(files)} files under {out}, more than the {MAX_OUT_FILES} that come back: "
              f"{sorted(str(f.relative_to(out)) for f in files)}", file=sys.stderr)
    return report


def run_stage(name, a, size, plan, results, wanted, worker, env, work, left, say) -> dict:
    """Plan, run and record one stage; never raises for the stage's own failure."""
    rec = {"name": name, "status": "skipped", "estimate_s": None, "elapsed_s": 0.0, "message": ""}
    if name == "schedule_pgd_at" or (name == "schedule_ca_at" and plan["epochs"] is None):
        todo = [m for n, m in SCHEDULE_METHODS.items() if n in wanted and n not in results]
        pick = pick_schedule(results, size, left(), reserve_s(results, size, wanted, plan), a.epochs, a.aa_n,
                             todo, "autoattack" in wanted)
        if pick:
            plan["epochs"], plan["aa_n"] = pick[0], pick[1] if a.aa_n is None else a.aa_n
            rec["plan"] = {"epochs": pick[0], "aa_n": pick[1], "estimate_s": round(pick[2], 1)}
    if name == "autoattack" and a.aa_n is None:
        models = sum(Path(c).is_file() for c in plan["checkpoints"].values()) or 2
        # the stages after it kept free if it can; else AutoAttack first (it is what the run is for)
        plan["aa_n"] = (choose_aa(results, size, left() - reserve_s(results, size, wanted, plan), models, None)
                        or choose_aa(results, size, left(), models, None) or 0)
    why = _why_not(name, plan)
    if name in SCHEDULE_METHODS and plan["epochs"] is None:
        shortest = a.epochs or size["ladder"][-1][0]
        why = why or f"no schedule of {shortest}{'' if a.epochs else '+'} epochs fits the {left():.0f}s left"
    if name == "autoattack" and a.aa_n == 0:
        why = "--aa-n 0"
    elif name == "autoattack" and not plan["aa_n"]:
        why = why or f"AutoAttack on {size['aa_sizes'][-1]} images does not fit the {left():.0f}s left"
    if why:
        rec["message"] = f"skipped: {why}"
        say(f"{name}: {rec['message']}")
        return rec
    est = estimate(name, results, size, plan)
    rec["estimate_s"] = round(est, 1)
    if est > left():
        rec["message"] = f"skipped: needs about {est:.0f}s, {max(0, left()):.0f}s of the {a.budget_s:.0f}s budget left"
        say(f"{name}: {rec['message']}")
        return rec
    limit = min(left(), 2 * est + 30)
    rec["timeout_s"] = round(limit, 1)
    say(f"{name}: starting (estimate {est:.0f}s, limit {limit:.0f}s)")
    t0 = time.monotonic()
    if name == "tests":
        done = run_tests(work, limit, env, a.dry_run)
    else:
        kind_, params = stage_params(name, a, size, plan)
        path = work / "stages" / f"{name}.json"
        done = worker.run({"stage": name, "kind": kind_, "params": params, "result_path": str(path)}, limit)
        if done.get("ok"):
            done["result"] = json.loads(path.read_text())
        elif not done.get("timeout"):
            worker.kill()      # a fresh process for the next stage after any failure
    rec["elapsed_s"] = round(time.monotonic() - t0, 1)
    rec["status"] = "ok" if done.get("ok") else ("timeout" if done.get("timeout") else "failed")
    rec["message"] = done.get("error") or ""
    rec["result"] = done.get("result")
    if done.get("traceback"):
        rec["traceback"] = done["traceback"]
    if rec["status"] == "ok":
        try:
            rec["summary"] = summarize(name, rec["result"])
        except (KeyError, TypeError, IndexError, ZeroDivisionError, ValueError) as e:
            rec["summary"] = f"(no summary: {type(e).__name__} {e})"
    say(f"{name}: {rec['status']} in {rec['elapsed_s']:.0f}s; {rec.get('summary') or rec['message']}")
    return rec


def format_summary(report: dict) -> str:
    lines = [f"robustfront GPU run ({report['mode']}): {report['elapsed_s']:.0f}s of a {report['budget_s']:.0f}s "
             f"budget", f"{'stage':<16}{'status':<9}{'est s':>7}{'took s':>8}  result"]
    for r in report["stages"]:
        est = "" if r["estimate_s"] is None else f"{r['estimate_s']:.0f}"
        lines.append(f"{r['name']:<16}{r['status']:<9}{est:>7}{r['elapsed_s']:>8.0f}  "
                     f"{r.get('summary') or r['message']}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="benchmarks/gpu/run.sh", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=os.environ.get("OUT") or "runs/gpu/out",
                   help="folder for gpu_run.json and summary.txt (default: $OUT, else runs/gpu/out)")
    p.add_argument("--budget-s", type=float, default=470, help="wall-clock budget in seconds (default: 470)")
    p.add_argument("--data", help="the CIFAR-10 archive or folder (e.g. .data/cifar10-jpeg.tar.gz)")
    p.add_argument("--device", default="cuda", help="default: cuda (cpu with --dry-run)")
    p.add_argument("--dry-run", action="store_true", help="every stage on a tiny model and a few images, on the CPU")
    p.add_argument("--stages", default="all", help=f"comma-separated subset of {','.join(STAGES)} (default: all)")
    p.add_argument("--methods", default=",".join(BENCH_METHODS), help="methods of the bench stage")
    p.add_argument("--epochs", type=int, help="schedule epochs (default: chosen to fit the budget, up to 10)")
    p.add_argument("--aa-n", type=int, help="AutoAttack test images (default: chosen to fit, 1000 if it can, "
                                            f"at least {AA_MIN}; 0: none)")
    p.add_argument("--compile-mode", help="torch.compile mode of bench_compile (default: torch's)")
    p.add_argument("--runs", help="folder for the training runs and stage files (default: runs/gpu; a temp "
                                  "folder with --dry-run)")
    p.add_argument("--plan", action="store_true", help="print the plan as JSON and exit (runs nothing)")
    return p


def main(argv=None) -> int:
    a = build_parser().parse_args(argv)
    if a.dry_run:
        a.device = "cpu"
    bad = [s for s in ([] if a.stages == "all" else a.stages.split(",")) if s not in STAGES]
    if bad:
        print(f"run.sh: --stages names unknown stage(s) {bad}; allowed: {', '.join(STAGES)}", file=sys.stderr)
        return 2
    for name, v, lo in (("budget-s", a.budget_s, 1), ("epochs", a.epochs, 1), ("aa-n", a.aa_n, 0)):
        if v is not None and v < lo:
            print(f"run.sh: --{name}={v} is too small; allowed: >= {lo}", file=sys.stderr)
            return 2
    if a.data and not Path(a.data).exists():
        print(f"run.sh: --data={a.data} does not exist; allowed: the CIFAR-10 archive (docs/gpu.md)", file=sys.stderr)
        return 2
    if a.plan:
        wanted = STAGES if a.stages == "all" else a.stages.split(",")
        print(json.dumps(plan_run(SIZES["dry" if a.dry_run else "cuda"], a.budget_s, wanted, a.epochs, a.aa_n,
                                  MARGIN_S), indent=1))
        return 0
    report = run(a)
    print(report["summary"])
    return 0 if all(r["status"] in ("ok", "skipped") for r in report["stages"]) else 1


if __name__ == "__main__":
    sys.exit(main())

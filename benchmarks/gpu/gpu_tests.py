"""The GPU run's `tests` stage: the CUDA-only tests (`pytest -m cuda`) in a subprocess, read back
from pytest's JUnit XML. Standard library only.

Only the test files that hold a `cuda` mark are collected: the others may import packages the GPU
machine lacks (hypothesis, scikit-learn), and their collection would fail the stage.
"""
from __future__ import annotations

import importlib.util
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

TESTS = Path(__file__).resolve().parents[2] / "tests"


def cuda_test_files(folder: Path = TESTS) -> list[str]:
    return sorted(str(f) for f in folder.glob("test_*.py") if "pytest.mark.cuda" in f.read_text())


def read_junit(path: Path) -> dict:
    """Counts and per-test outcomes from a JUnit XML file written by pytest."""
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    tests = []
    for case in (c for s in suites for c in s.iter("testcase")):
        outcome, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            el = case.find(tag)
            if el is not None:
                outcome, message = {"failure": "failed", "error": "error", "skipped": "skipped"}[tag], \
                    (el.get("message") or "")[:300]
                break
        tests.append({"name": f"{case.get('classname')}::{case.get('name')}", "outcome": outcome,
                      "time_s": float(case.get("time") or 0), "message": message})
    count = {k: sum(t["outcome"] == k for t in tests) for k in ("passed", "failed", "error", "skipped")}
    return {"passed": count["passed"], "failed": count["failed"], "errors": count["error"],
            "skipped": count["skipped"], "tests": tests}


def run_tests(out: Path, timeout: float, env: dict, dry_run: bool) -> dict:
    """`pytest -m cuda` over the files with CUDA tests; returns {"ok", "error", "result"} like a worker
    stage (ok: nothing failed, and on a GPU something passed)."""
    if importlib.util.find_spec("pytest") is None:
        return {"ok": False, "error": "pytest is not installed: carry it along (benchmarks/gpu/prepare.sh, docs/gpu.md)"}
    files = cuda_test_files()
    xml = out / "tests.xml"
    out.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider", f"--junitxml={xml}", *files]
    try:
        proc = subprocess.run(cmd, env=env, timeout=timeout, capture_output=True, text=True)
    except subprocess.TimeoutExpired:
        return {"ok": False, "timeout": True, "error": f"pytest killed after {timeout:.0f}s (its time limit)"}
    sys.stderr.write(proc.stdout[-4000:])
    if not xml.is_file():
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-1:] or ["(no output)"]
        return {"ok": False, "error": f"pytest wrote no report (exit {proc.returncode}): {tail[0][:300]}"}
    res = read_junit(xml)
    res.update(files=[Path(f).name for f in files], exit_code=proc.returncode, junit_xml=xml.name,
               note="no CUDA device: every CUDA test skipped" if dry_run else "")
    bad = res["failed"] or res["errors"] or (not dry_run and res["passed"] == 0)
    error = None
    if bad:
        first = next((t for t in res["tests"] if t["outcome"] in ("failed", "error")), None)
        error = (f"{res['failed']} failed, {res['errors']} errors" + (f"; first: {first['name']}: {first['message']}"
                                                                      if first else "; nothing passed"))
    return {"ok": not bad, "error": error, "result": res}


__all__ = ["cuda_test_files", "read_junit", "run_tests"]

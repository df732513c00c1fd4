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

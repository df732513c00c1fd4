"""A long `robustfront eval` survives a kill -9 and spreads over processes, through the command line:
killed and re-run, 2 shards merged (own folders, or one shared folder), and two real torchrun processes
all give the result of the plain run (everything but the timings); the per-sample masks give the
worst case and merge across runs; a randomised model is flagged with the rand recommendation.

Budgets are reduced (--aa-budget) to keep each run within seconds; every comparison uses the same ones.
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from robustfront.cli import main
from robustfront.data import subset_indices
from robustfront.eval.masks import Masks, from_bits, merge
from robustfront.models.info import info

ROOT = Path(__file__).resolve().parent.parent
ARGS = ["--attacks", "fgsm,pgd5,autoattack", "--eps", "32/255", "--n", "48", "--chunk-size", "16", "--batch-size", "8",
        "--aa-budget", "n_iter=3,n_queries=40"]
VOLATILE = {"time_s", "checkpoint", "foreign", "model"}

SLOW = """
import time
import torch
from robustfront.models import create_model

def build():
    net = create_model("small_cnn", 10, in_channels=1, input_size=8, width=16)
    net.register_forward_pre_hook(lambda m, a: time.sleep(0.003))  # slow enough to be killed mid-run
    return net
"""

NOISY = """
import torch
import torch.nn.functional as F
from torch import nn
from robustfront.models import create_model

class MCDropout(nn.Module):
    '''Dropout that stays on in eval mode, as a stochastic defence does.'''
    def __init__(self):
        super().__init__()
        self.net = create_model("small_cnn", 10, in_channels=1, input_size=8, width=16)
        self.net.load_state_dict(torch.load(WEIGHTS, weights_only=True))

    def forward(self, x):
        return self.net(F.dropout(x, 0.3, training=True))

def build():
    return MCDropout()
"""


def stable(res):
    if isinstance(res, dict):
        return {k: stable(v) for k, v in res.items() if k not in VOLATILE}
    return [stable(v) for v in res] if isinstance(res, list) else res


def env():
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))


def cli(*args):
    assert main([*map(str, args)]) == 0
    if "--out" in args and Path(args[args.index("--out") + 1]).is_file():
        return json.loads(Path(args[args.index("--out") + 1]).read_text())
    return None


@pytest.fixture(scope="module")
def setup(digits_model, tmp_path_factory):
    """A robustfront checkpoint of the digits model (in a run folder), the same weights for a
    --model-file, and the plain run every test compares with."""
    model, _, _ = digits_model
    d = tmp_path_factory.mktemp("resume")
    (d / "run" / "checkpoints").mkdir(parents=True)
    (d / "run" / "config.yaml").write_text("data: digits\n")
    torch.save({"model": model.state_dict(), "model_config": info(model).config, "config": {"data": "digits"}},
               d / "run" / "checkpoints" / "best.pt")
    torch.save(model.state_dict(), d / "w.pt")
    (d / "slow.py").write_text(SLOW)
    plain = cli("eval", "--checkpoint", d / "run" / "checkpoints" / "best.pt", *ARGS, "--out", d / "plain.json")
    return d, plain


def test_the_plain_run_is_resumable_by_default_and_its_masks_give_the_worst_case(setup):
    d, plain = setup
    state = d / "plain.state"                                   # beside --out
    assert (state / "suite.json").is_file() and (state / "result.json").is_file()
    assert sorted(p.name for p in (state / "eps-0").iterdir()) == ["autoattack", *[f"chunk-00000{i}.json"
                                                                                   for i in range(3)]]
    masks = Masks.from_json(plain["masks"])
    assert list(masks.ids) == list(subset_indices(360, 48, 0))  # keyed by the points' test-split indices
    attacks = ["fgsm", "pgd5", "autoattack"]
    assert masks.names == ["clean", *attacks, "autoattack/apgd_ce", "autoattack/apgd_t", "autoattack/fab_t",
                           "autoattack/square"]
    worst = np.ones(48, bool)
    for a in ["clean", *attacks]:
        worst &= from_bits(plain["masks"]["correct"][a])
    assert plain["worst_case_acc"] == worst.mean() <= min(plain["robust_acc"].values())
    assert 0 < plain["robust_acc"]["autoattack"] < plain["clean_acc"]
    # a checkpoint in a run folder, no --out: the state goes to the run folder, named by the request
    again = cli("eval", "--checkpoint", d / "run" / "checkpoints" / "best.pt", *ARGS)
    assert again is None
    folders = list((d / "run" / "eval-state").iterdir())
    assert len(folders) == 1 and len(folders[0].name) == 12
    assert stable(json.loads((folders[0] / "result.json").read_text())) == stable(plain)


def test_masks_of_separate_runs_merge_into_the_worst_case_of_one_run(setup, tmp_path):
    d, plain = setup
    common = ["--checkpoint", d / "run" / "checkpoints" / "best.pt", *ARGS]
    fast = cli("eval", *common[:-2], "--attacks", "fgsm,pgd5", "--out", tmp_path / "a.json")  # no --aa-budget
    aa = cli("eval", *common, "--attacks", "autoattack", "--out", tmp_path / "b.json")
    both = merge(Masks.from_json(fast["masks"]), Masks.from_json(aa["masks"]))
    assert both.accuracy(["clean", "fgsm", "pgd5", "autoattack"]) == plain["worst_case_acc"]
    assert aa["robust_acc"] == {"autoattack": plain["robust_acc"]["autoattack"]}


def test_killed_and_rerun_equals_the_plain_run(setup, tmp_path):
    d, plain = setup
    args = ["eval", "--model-file", f"{d / 'slow.py'}:build", "--weights", d / "w.pt", "--data", "digits", *ARGS,
            "--state", tmp_path / "st", "--out", tmp_path / "k.json"]
    proc = subprocess.Popen([sys.executable, "-m", "robustfront", *map(str, args)], env=env(), stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL)
    cascade = tmp_path / "st" / "eps-0" / "autoattack"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        chunks = [json.loads(p.read_text()) for p in cascade.glob("chunk-*.json")] if cascade.is_dir() else []
        if any(c["masks"] for c in chunks):                      # an attack finished on a chunk: mid-cascade
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert not (tmp_path / "st" / "result.json").exists() and not (tmp_path / "k.json").exists()
    res = cli(*args)
    assert stable(res) == stable(plain)


def test_two_shards_merged_or_in_one_folder_equal_the_plain_run(setup, tmp_path, capsys):
    d, plain = setup
    common = ["eval", "--checkpoint", d / "run" / "checkpoints" / "best.pt", *ARGS]
    cli(*common, "--shard", "0/2", "--state", tmp_path / "s0")
    part = json.loads(capsys.readouterr().out)
    assert part["n"] == 32 and not part["complete"] and part["shard"] == "0/2"   # chunks 0 and 2 of 3
    assert main(["eval", "--merge", str(tmp_path / "s0")]) == 2
    assert "1 of 3 chunks are missing or unfinished: [1]" in capsys.readouterr().err
    cli(*common, "--shard", "1/2", "--state", tmp_path / "s1")
    merged = cli("eval", "--merge", tmp_path / "s0", tmp_path / "s1", "--out", tmp_path / "m.json")
    assert stable(merged) == stable(plain)
    # one shared folder: the shard that finishes last writes the whole result to --out
    assert cli(*common, "--shard", "1/2", "--state", tmp_path / "shared", "--out", tmp_path / "x.json") is None
    assert stable(cli(*common, "--shard", "0/2", "--state", tmp_path / "shared", "--out", tmp_path / "x.json")) \
        == stable(plain)


def test_torchrun_two_processes_equal_the_plain_run(setup, tmp_path):
    d, plain = setup
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "robustfront",
           "--", "eval", "--checkpoint", str(d / "run" / "checkpoints" / "best.pt"), *ARGS, "--out",
           str(tmp_path / "t.json")]
    r = subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert stable(json.loads((tmp_path / "t.json").read_text())) == stable(plain)
    assert r.stdout.count('"clean_acc"') == 1                    # rank 0 alone prints the result
    assert "[1/2] evaluating" in r.stderr and "all 48 points" in r.stderr


def test_a_randomised_model_is_flagged_with_the_rand_recommendation(setup, tmp_path, capsys):
    d, _ = setup
    (tmp_path / "noisy.py").write_text(NOISY.replace("WEIGHTS", repr(str(d / "w.pt"))))
    spec = f"{tmp_path / 'noisy.py'}:build"
    res = cli("eval", "--model-file", spec, "--data", "digits", "--attacks", "pgd5", "--eps", "32/255", "--n", "16",
              "--no-state", "--out", tmp_path / "e.json")
    err = capsys.readouterr().err
    assert res["flags"]["randomized"] and any("randomised" in w for w in res["warnings"])
    assert "GUARD:" in err and "--attacks autoattack-rand" in err
    rand = cli("eval", "--model-file", spec, "--data", "digits", "--attacks", "autoattack_rand", "--eps", "32/255",
               "--n", "16", "--aa-budget", "n_iter=2", "--no-state", "--out", tmp_path / "r.json")
    assert list(rand["autoattack_log"]["autoattack_rand"]) == ["apgd_ce", "apgd_dlr"]
    assert rand["autoattack_budgets"]["autoattack_rand"]["apgd_ce"]["eot_iter"] == 20
    assert rand["robust_acc"]["autoattack_rand"] <= rand["clean_acc"]

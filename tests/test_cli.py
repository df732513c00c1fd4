"""The command line end to end: train, eval, data info, quickstart, and its one-line errors."""
import json
from pathlib import Path
import subprocess
import sys

import pytest

from robustfront.cli import main


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "robustfront.cli", *args], capture_output=True, text=True)


TRAIN = ["train", "--data", "digits", "--model", "small_cnn", "--model-arg", "width=8", "--epochs", "2",
         "--eps", "32/255", "--alpha", "8/255", "--attack-steps", "3", "--batch-size", "128", "--no-progress"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    assert main([*TRAIN, "--method", "vanilla", "--opt", "lam=0.3", "--out", str(out)]) == 0
    return out


def test_train_writes_the_promised_layout(run_dir):
    for rel in ("config.yaml", "metrics.jsonl", "checkpoints/last.pt", "checkpoints/best.pt"):
        assert (run_dir / rel).is_file(), rel
    text = (run_dir / "config.yaml").read_text()
    assert "lam: 0.3" in text and "eps: 32/255" in text


def test_eval_writes_json_with_official_autoattack(run_dir, tmp_path):
    out = tmp_path / "eval.json"
    rc = main(["eval", "--checkpoint", str(run_dir / "checkpoints" / "best.pt"), "--attacks", "fgsm,pgd20,autoattack",
               "--eps", "32/255", "--n", "40", "--out", str(out)])
    assert rc == 0
    res = json.loads(out.read_text())
    assert {"clean_acc", "robust_acc", "n", "eps", "norm", "seed"} <= res.keys()
    assert res["n"] == 40 and res["norm"] == "Linf" and abs(res["eps"] - 32 / 255) < 1e-12
    assert res["batch_size"] == 500                                  # chosen for the device: CPU
    ra = res["robust_acc"]
    assert set(ra) == {"fgsm", "pgd20", "autoattack"}
    # the official cascade logged per-attack accuracy, and AutoAttack is the strongest
    assert set(res["autoattack_log"]["autoattack"]) <= {"apgd_ce", "apgd_t", "fab_t", "square"}
    assert ra["autoattack"] <= ra["pgd20"] + 1e-9 <= res["clean_acc"] + 1e-9


def test_resume_from_the_command_line(tmp_path):
    out = tmp_path / "r"
    assert main([*TRAIN, "--method", "pgd_at", "--epochs", "1", "--out", str(out)]) == 0
    assert main(["train", "--resume", "--out", str(out), "--epochs", "2", "--no-progress"]) == 0
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(l)["epoch"] for l in lines] == [1, 2]


def test_data_info_prints_json(capsys):
    assert main(["data", "info", "--data", "digits"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["shape"] == [1, 8, 8] and info["classes"] == [str(i) for i in range(10)]
    assert info["train"] + info["val"] + info["test"] == 1797 and info["test"] == 360


@pytest.mark.parametrize("args,needle", [
    (["--method", "pgdat"], "unknown method 'pgdat'; allowed:"),
    (["--eps", "eight"], "eps='eight' is not a number; allowed: a finite number or a fraction like 8/255"),
    (["--schedule", "linear"], "argument --schedule: invalid choice: 'linear' (choose from"),
    (["--opt", "beta=6"], "option 'beta' is not a hyper-parameter of this method"),
    (["--batch-size", "0"], "batch_size=0 is invalid; allowed: an integer >= 1"),
    (["--data", "/nonexistent/data"], "/nonexistent/data"),
])
def test_train_errors_are_one_line(tmp_path, args, needle):
    r = run_cli(*TRAIN, "--method", "pgd_at", "--out", str(tmp_path / "x"), *args)
    assert r.returncode == 2
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and needle in lines[0], r.stderr


def test_eval_errors_are_one_line(run_dir):
    ck = str(run_dir / "checkpoints" / "best.pt")
    for args, needle in ((["--attacks", "pgd20,deepfool"], "unknown attack 'deepfool'; allowed:"),
                         (["--checkpoint", "/nonexistent.pt"], "/nonexistent.pt does not exist"),
                         (["--n", "0"], "n=0 is invalid; allowed: an integer >= 1")):
        r = run_cli("eval", "--checkpoint", ck, *args)
        lines = [l for l in r.stderr.splitlines() if l.strip() and not l.startswith("evaluating")]
        assert r.returncode == 2 and len(lines) == 1 and needle in lines[0], r.stderr


def test_train_needs_out():
    r = run_cli("train", "--data", "digits")
    assert r.returncode == 2 and "--out is required" in r.stderr


def test_quickstart_end_to_end_small(tmp_path):
    out = tmp_path / "qs"
    r = run_cli("quickstart", "--out", str(out), "--epochs", "1", "--n", "30")
    assert r.returncode == 0, r.stderr
    res = json.loads((out / "results.json").read_text())
    assert [r["method"] for r in res] == ["standard", "pgd_at", "vanilla", "ca_at"]
    for row in res:
        assert set(row["robust_acc"]) == {"pgd20", "autoattack"}
        assert row["robust_acc"]["autoattack"] <= row["robust_acc"]["pgd20"] + 1e-9 <= row["clean_acc"] + 1e-9
    assert "| pgd_at" in r.stdout and "| ca_at" in r.stdout
    png = Path(r.stdout.strip().splitlines()[-1].split("front:", 1)[1].strip())   # the front's path, printed last
    assert png.is_file() and png.suffix == ".png" and png.parent == out / "fronts"
    front = json.loads(png.with_suffix(".json").read_text())
    fams = front["families"]
    assert set(fams) == {"weighted average", "CA-AT"} and len(fams["weighted average"]["points"]) == 3
    aa = {row["method"]: row["robust_acc"]["autoattack"] for row in res}
    assert fams["CA-AT"]["points"][0]["robust"]["mean"] == aa["ca_at"]


def test_eval_on_val_uses_the_training_split_whatever_the_eval_seed(run_dir, tmp_path):
    """--split val is the run's own held-out split: carved with the training seed, not --seed."""
    import torch

    from robustfront import load_model
    from robustfront.data import load_dataset
    from robustfront.eval import correct_mask
    ck = run_dir / "checkpoints" / "best.pt"
    out = tmp_path / "val.json"
    assert main(["eval", "--checkpoint", str(ck), "--split", "val", "--seed", "5", "--attacks", "fgsm",
                 "--eps", "32/255", "--out", str(out)]) == 0
    ds = load_dataset("digits", seed=0)                        # the run's seed (TrainConfig default)
    x, y = torch.as_tensor(ds.x_val).float().div(255), torch.as_tensor(ds.y_val)
    res = json.loads(out.read_text())
    # accuracies are exact fractions of the per-sample masks
    assert res["n"] == len(y) and res["clean_acc"] == correct_mask(load_model(ck), x, y).sum().item() / len(y)


def test_analyze_writes_landscape_and_boundary(run_dir, tmp_path):
    ck = str(run_dir / "checkpoints" / "best.pt")
    assert main(["analyze", "landscape", "--checkpoint", ck, "--n", "30", "--eps", "0", "--out", str(tmp_path)]) == 0
    land = json.loads((tmp_path / "landscape.json").read_text())
    curve = land["curves"]["vanilla"]
    import torch
    import torch.nn.functional as F

    from robustfront import load_model
    from robustfront.data import load_dataset, subset_indices
    ds = load_dataset("digits")
    idx = subset_indices(len(ds.y_test), 30, 0)                  # the images `analyze --n 30` takes
    x, y = ds.x_test[idx], ds.y_test[idx]
    with torch.no_grad():
        ce = F.cross_entropy(load_model(ck)(torch.as_tensor(x).float().div(255)), torch.as_tensor(y)).item()
    assert curve["alpha"][10] == 0.0 and curve["loss"][10] == pytest.approx(ce, rel=1e-5)
    assert max(curve["loss"]) > curve["loss"][10]                # moving the weights away costs loss
    assert main(["analyze", "boundary", "--checkpoint", ck, "--n", "4", "--directions", "16", "--max-steps", "40",
                 "--out", str(tmp_path)]) == 0
    bd = json.loads((tmp_path / "boundary.json").read_text())["models"]["vanilla"]
    finite = [d for d in bd["min_distance"] if d is not None]
    assert len(bd["min_distance"]) == 4 and bd["never_changed"] == 4 - len(finite)
    assert all(abs(d * 255 - round(d * 255)) < 1e-4 and 0 < d <= 40 / 255 + 1e-6 for d in finite)
    assert (tmp_path / "landscape.png").stat().st_size > 0 and (tmp_path / "boundary.png").stat().st_size > 0

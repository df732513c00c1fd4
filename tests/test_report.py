"""`robustfront eval` over several checkpoints and an ε sweep, then `robustfront report` on real tiny runs."""
import csv
import json

import pytest
import torch

from robustfront.cli import main


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, _one_thread):
    from robustfront.train import TrainConfig, train
    root = tmp_path_factory.mktemp("runs")
    dirs = []
    for method, seed in (("pgd_at", 0), ("pgd_at", 1), ("standard", 0)):
        out = root / f"{method}_s{seed}"
        train(TrainConfig(data="digits", model="small_cnn", model_args={"width": 8}, method=method, epochs=2,
                          eps="32/255", alpha="8/255", attack_steps=3, progress=False, seed=seed, out=str(out)))
        dirs.append(out)
    return dirs


def test_multi_checkpoint_sweep_and_report(runs, tmp_path, capsys):
    a, b, std = runs
    ev = a / "eval.json"
    rc = main(["eval", "--checkpoint", str(a / "checkpoints/best.pt"), str(b / "checkpoints/best.pt"),
               "--attacks", "fgsm,pgd10,cw", "--eps", "0,16/255,32/255", "--n", "40", "--out", str(ev)])
    assert rc == 0
    res = json.loads(ev.read_text())
    assert len(res["checkpoints"]) == 2 and res["aggregate"]["eps"] == pytest.approx([0, 16 / 255, 32 / 255])
    agg = res["aggregate"]["sweep"][-1]
    vals = [c["sweep"][-1]["robust_acc"]["pgd10"] for c in res["checkpoints"]]
    assert agg["robust_acc"]["pgd10"]["mean"] == pytest.approx(sum(vals) / 2)
    assert agg["robust_acc"]["pgd10"]["std"] == pytest.approx(abs(vals[0] - vals[1]) / 2 ** 0.5)
    # a single-ε eval with sanity checks for the second run; the third run has none (falls back to metrics.jsonl)
    assert main(["eval", "--checkpoint", str(b / "checkpoints/best.pt"), "--attacks", "pgd10",
                 "--eps", "32/255", "--n", "30", "--sanity", "--out", str(b / "eval.json")]) == 0
    sanity = json.loads((b / "eval.json").read_text())["sanity"]
    assert len(sanity["checks"]) == 6 and {"name", "passed", "detail"} <= set(sanity["checks"][0])

    out = tmp_path / "report"
    assert main(["report", str(a), str(b), str(std), "--out", str(out)]) == 0
    for f in ("report.md", "results.csv", "training_curves.png", "robust_vs_eps.png", "pareto.png"):
        assert (out / f).is_file() and (out / f).stat().st_size > 0, f
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert [r["run"] for r in rows] == [a.name, b.name, std.name]
    assert rows[2]["attack_setting"].startswith("held-out PGD-") and rows[2]["source"].startswith("metrics.jsonl")
    assert rows[0]["eps"] == "32/255" and rows[0]["n"] == "40" and rows[0]["data"] == "digits"
    md = (out / "report.md").read_text()
    assert "Sanity checks" in md and "mean ± std over 2 checkpoints" in md and "![pareto](pareto.png)" in md

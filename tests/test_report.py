"""`robustfront eval` over several checkpoints and an ε sweep, then `robustfront report` on real tiny runs;
the report's table rules on eval JSONs and metrics.jsonl files written on disk as eval/train write them."""
import csv
import json
from pathlib import Path

import pytest
import torch
import yaml

from robustfront.fronts import report as rep  # the module: fronts/__init__ does not re-export report()
from robustfront.fronts import fmt_eps, read_run, run_rows, analyze
from robustfront.cli import main
from robustfront.eval import evaluate
from robustfront.eval.metrics import aggregate, mean_nrr
from robustfront.attacks import AUTOATTACK_NAMES as AA_NAMES
from robustfront.train import TrainConfig


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
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
    assert rows[0]["checkpoints"] == "2" and rows[0]["clean_std"] != "" and rows[1]["checkpoints"] == "1"
    md = (out / "report.md").read_text()
    assert "Sanity checks" in md and " ± " in md and "![pareto](pareto.png)" in md


# -- eval JSONs and run folders written as `evaluate` / `cmd_eval` / the trainer write them ----------------------

def _result(clean, ra, *, eps=8 / 255, worst=None, n=100, seed=0, norm="Linf"):
    """One single-ε result with evaluate()'s keys and its Mean/NRR/ra_source rule."""
    worst = min(ra.values()) if worst is None else worst
    aa = [a for a in AA_NAMES if a in ra]
    mean, nrr = mean_nrr(clean, ra[aa[-1]] if aa else worst)
    return {"clean_acc": clean, "robust_acc": dict(ra), "n": n, "eps": eps, "norm": norm, "seed": seed,
            "time_s": {a: 0.1 for a in ra}, "autoattack_log": {}, "worst_case_acc": worst, "mean": mean, "nrr": nrr,
            "ra_source": aa[-1] if aa else "worst_case"}


def _sweep(entries, n=100, seed=0, norm="Linf"):
    return {"eps": [e["eps"] for e in entries], "sweep": entries, "n": n, "norm": norm, "seed": seed}


def _eval_json(results, eps_str, data="digits", model="small_cnn", method="pgd_at"):
    """What cmd_eval writes for one checkpoint or several."""
    for i, r in enumerate(results):
        r.update({"checkpoint": f"runs/x{i}/checkpoints/best.pt", "data": data, "split": "test", "eps_str": eps_str,
                  "model": model, "method": method})
    if len(results) == 1:
        return results[0]
    return {"checkpoints": results, "aggregate": aggregate(results), "n": results[0]["n"],
            "norm": results[0]["norm"], "seed": results[0]["seed"], "data": data, "eps_str": eps_str}


def _run(root: Path, name, evals=(), eps="8/255", data="digits", method="pgd_at", val=None):
    d = root / name
    d.mkdir()
    cfg = TrainConfig(data=data, model="small_cnn", method=method, eps=eps, epochs=2, seed=0, out=str(d))
    (d / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    lines = [{"epoch": 1, "lr": 0.1, "n_train": 500, "train_loss": 1.2, "train_clean_acc": 0.6, "train_adv_acc": 0.3,
              "nonfinite_steps": 0, "cos": 0.2, "mu": 0.1, "epoch_time_s": 1.0},
             {"epoch": 2, "lr": 0.01, "n_train": 500, "train_loss": 0.9, "train_clean_acc": 0.8, "train_adv_acc": 0.4,
              "nonfinite_steps": 0, "cos": 0.1, "mu": 0.2, "epoch_time_s": 1.0}]
    if val is not None:
        lines[-1].update(val_clean_acc=val[0], val_pgd_acc=val[1])
    (d / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in lines))
    for i, e in enumerate(evals):
        (d / f"eval{i}.json").write_text(json.dumps(e, indent=2) + "\n")
    return d


def _report(tmp_path, *runs):
    out = tmp_path / "report"
    rep.report([str(r) for r in runs], str(out))
    rows = list(csv.DictReader(open(out / "results.csv")))
    md = (out / "report.md").read_text().splitlines()
    head = next(i for i, l in enumerate(md) if l.startswith("| run |"))
    cols = [c.strip() for c in md[head].strip("|").split("|")]
    table = [dict(zip(cols, (c.strip() for c in l.strip("|").split("|")))) for l in md[head + 2:] if l.startswith("|")]
    return rows, table


def test_fake_results_have_evaluate_keys():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    x, y = torch.rand(8, 4), torch.randint(0, 3, (8,))
    real = evaluate(model, x, y, ("fgsm", "pgd3"), eps=[0.0, 8 / 255], batch_size=8)
    fake = _sweep([_result(0.5, {"fgsm": 0.4, "pgd3": 0.3}, eps=e) for e in (0.0, 8 / 255)], n=8)
    assert set(fake) <= set(real) and set(fake["sweep"][1]) <= set(real["sweep"][1])  # no invented keys
    assert fake["sweep"][1]["ra_source"] == real["sweep"][1]["ra_source"] == "worst_case"


def test_multi_checkpoint_row_is_mean_and_std(tmp_path):
    ra = ({"pgd20": 0.50, "cw": 0.48, "autoattack": 0.45}, {"pgd20": 0.54, "cw": 0.50, "autoattack": 0.47})
    res = [_sweep([_result(0.95, {k: 0.9 for k in r}, eps=0.0), _result(c, r, eps=8 / 255)])
           for c, r in zip((0.80, 0.84), ra)]
    run = _run(tmp_path, "multi", [_eval_json(res, ["0", "8/255"], data="cifar10", model="resnet18")])
    rows, table = _report(tmp_path, run)
    (row,), (cell,) = rows, table
    assert float(row["clean"]) == pytest.approx(0.82) and float(row["clean_std"]) == pytest.approx(0.04 / 2 ** 0.5)
    assert float(row["aa"]) == pytest.approx(0.46) and float(row["mean_std"]) > 0 and row["checkpoints"] == "2"
    assert (row["data"], row["model"], row["eps"]) == ("cifar10", "resnet18", "8/255")  # from the eval JSON
    assert cell["clean"] == "82.00 ± 2.83" and cell["AA"] == "46.00 ± 1.41" and cell["ckpts"] == "2"
    assert cell["Mean"] == f"{100 * (0.82 + 0.46) / 2:.2f} ± {100 * 0.03 / 2 ** 0.5:.2f}"


def test_sweep_row_uses_largest_eps(tmp_path):
    ents = [_result(0.9, {"pgd10": p}, eps=e) for e, p in ((16 / 255, 0.5), (32 / 255, 0.2), (0.0, 0.9))]
    run = _run(tmp_path, "sweep", [_eval_json([_sweep(ents)], ["16/255", "32/255", "0"])])
    (row,), _ = _report(tmp_path, run)
    assert row["eps"] == "32/255" and float(row["pgd"]) == pytest.approx(0.2)


def test_aa_column_is_the_cascade_mean_and_nrr_use(tmp_path):
    r = _result(0.8, {"pgd20": 0.5, "autoattack": 0.45, "autoattack_plus": 0.43})
    assert r["ra_source"] == "autoattack_plus"
    run = _run(tmp_path, "aa", [_eval_json([r], "8/255")])
    (row,), _ = _report(tmp_path, run)
    assert float(row["aa"]) == pytest.approx(0.43) and row["ra_source"] == "autoattack_plus"
    assert float(row["mean"]) == pytest.approx((0.8 + float(row["aa"])) / 2)


def test_eps_is_a_budget_not_a_percentage(tmp_path):
    runs = [_run(tmp_path, "float_eps", [_eval_json([_result(0.8, {"pgd10": 0.5}, eps=0.031)], "0.031")]),
            _run(tmp_path, "val_only", eps=8 / 255, val=(0.7, 0.4))]
    rows, table = _report(tmp_path, *runs)
    assert [t.get("ε", t.get("eps")) for t in table] == ["0.031", "8/255"] and [r["eps"] for r in rows] == ["0.031", "8/255"]
    assert table[0]["clean"] == "80.00" and table[1]["source"] == "metrics.jsonl epoch 2"
    assert [fmt_eps(v) for v in (8 / 255, 0.031, "8/255", 128 / 255, 0.0, 12.0, 0.5)] == \
        ["8/255", "0.031", "8/255", "128/255", "0", "12", "0.5"]
    from robustfront.fronts import eps_with_decimal   # figures and the HTML: as written, the decimal beside it
    assert [eps_with_decimal(v) for v in ("8/255", 32 / 255, 0.031, 0.0)] == ["8/255 (0.03137)", "32/255 (0.1255)",
                                                                             "0.031", "0"]


def _groups(runs):
    return analyze(run_rows([read_run(r) for r in runs]))


def test_fronts_never_mix_robustness_sources(tmp_path):
    """An AutoAttack point and a PGD-only point are on different fronts, even at the same data and ε."""
    runs = [_run(tmp_path, "aa", [_eval_json([_result(0.9, {"autoattack": 0.4})], "8/255")]),
            _run(tmp_path, "pgd", [_eval_json([_result(0.8, {"pgd20": 0.6})], "8/255")]),
            _run(tmp_path, "val", val=(0.7, 0.5))]
    groups = _groups(runs)
    assert sorted(g["robust_name"] for g in groups) == ["AutoAttack", "held-out PGD-10 (val)", "pgd20"]
    assert all(len(p) == 1 for g in groups for p in [[q for f in g["families"].values() for q in f["points"]]])


def test_one_pareto_front_per_data_norm_eps(tmp_path):
    def ev(sa, ra, eps=8 / 255, data="digits", norm="Linf"):
        return _eval_json([_result(sa, {"autoattack": ra}, eps=eps, norm=norm)], "x", data=data)
    runs = [_run(tmp_path, "a", [ev(0.9, 0.4)]), _run(tmp_path, "b", [ev(0.8, 0.5)]), _run(tmp_path, "c", [ev(0.7, 0.3)]),
            _run(tmp_path, "d", [ev(0.85, 0.2, eps=16 / 255)]), _run(tmp_path, "e", [ev(0.6, 0.1, data="cifar10")]),
            _run(tmp_path, "f", [ev(0.5, 0.1, norm="L2")])]
    groups = {(g["group"]["data"], g["group"]["norm"], fmt_eps(g["group"]["eps"])): g for g in _groups(runs)}
    assert len(groups) == 4
    front = lambda g: sorted((p["clean"]["mean"], p["robust"]["mean"])  # noqa: E731
                             for f in g["families"].values() for p in f["points"] if p["pareto"])
    assert front(groups[("digits", "Linf", "8/255")]) == [(0.8, 0.5), (0.9, 0.4)]
    assert front(groups[("digits", "Linf", "16/255")]) == [(0.85, 0.2)]  # not dropped behind run a
    # the runs differ in nothing but their folders: each is its own point, labelled by its name
    assert sorted(p["knob"] for f in groups[("digits", "Linf", "8/255")]["families"].values() for p in f["points"]) \
        == ["a", "b", "c"]
    _report(tmp_path, *runs)
    from matplotlib.image import imread
    assert imread(tmp_path / "report" / "pareto.png").shape[1] > 1000  # one panel per group, 2 columns

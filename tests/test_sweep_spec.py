"""Sweep files: schema validation (one line naming the value), expansion into points, folder names, hashes."""
import itertools
import json
from pathlib import Path

import pytest
import yaml

from robustfront.sweep import config_hash, eval_hash, expand, parse_spec
from robustfront.sweep.names import canonical, format_value
from robustfront.state import differences, flat

TINY = Path(__file__).resolve().parents[1] / "configs" / "sweeps" / "tiny_digits.yaml"
DEMO = TINY.with_name("digits_ca_at_vs_weighted.yaml")
BASE = {"data": "digits", "model": "small_cnn", "epochs": 1, "eps": "32/255"}


def one_line_error(raw, *words):
    with pytest.raises(ValueError) as e:
        expand(raw)
    msg = str(e.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg, (w, msg)
    return msg


def test_tiny_config_expands_in_order_with_seeds_outermost():
    points = expand(TINY)
    assert [p.name for p in points[:4]] == ["method=vanilla,lam=0.25,seed=0", "method=vanilla,lam=0.75,seed=0",
                                           "method=ca_at,gamma=0.7,seed=0", "method=ca_at,gamma=0.9,seed=0"]
    assert [p.config["seed"] for p in points] == [0] * 4 + [1] * 4
    p = points[2]
    assert p.varied == {"method": "ca_at", "opts.gamma": 0.7, "seed": 0}
    assert p.config["method"] == "ca_at" and p.config["opts"] == {"gamma": 0.7}
    raw = yaml.safe_load(TINY.read_text())
    assert all(p.config[k] == v for k, v in raw["base"].items() for p in points)
    assert "out" not in p.config
    assert [p.name for p in expand(TINY)] == [p.name for p in points]  # deterministic


def test_demo_config_is_the_issue_grid():
    points = expand(DEMO)
    assert len(points) == 30
    lams = sorted({p.config["opts"]["lam"] for p in points if p.config["method"] == "vanilla"})
    gammas = sorted({p.config["opts"]["gamma"] for p in points if p.config["method"] == "ca_at"})
    assert lams == [0, 0.25, 0.5, 0.75, 1] and gammas == [0.6, 0.7, 0.8, 0.9, 1]
    assert sorted({p.config["seed"] for p in points}) == [0, 1, 2]
    spec = parse_spec(yaml.safe_load(DEMO.read_text()))
    assert spec.eval["attacks"] == ["pgd20", "autoattack"] and spec.eval["n"] is None


def test_grid_is_a_product_and_zip_goes_together():
    raw = {"base": BASE, "grid": {"lr": [0.1, 0.05, 0.01], "batch_size": [32, 64]},
           "zip": {"opts.lam": [0.2, 0.4, 0.6], "weight_decay": [0.0, 1e-4, 5e-4]},
           "methods": {"vanilla": {}}, "seeds": [3, 7]}
    points = expand(raw)
    assert len(points) == 2 * 3 * 2 * 3
    combos = {(p.config["lr"], p.config["batch_size"], p.config["opts"]["lam"], p.config["weight_decay"], p.config["seed"])
              for p in points}
    want = {(lr, bs, lam, wd, s) for lr, bs, (lam, wd), s in
            itertools.product([0.1, 0.05, 0.01], [32, 64], [(0.2, 0.0), (0.4, 1e-4), (0.6, 5e-4)], [3, 7])}
    assert combos == want
    assert len({p.name for p in points}) == len(points)


def test_zip_lists_may_repeat_a_value_when_the_tuples_differ():
    points = expand({"base": BASE, "zip": {"lr": [0.1, 0.1, 0.2], "momentum": [0.8, 0.9, 0.9]}})
    assert [(p.config["lr"], p.config["momentum"]) for p in points] == [(0.1, 0.8), (0.1, 0.9), (0.2, 0.9)]
    assert len({p.name for p in points}) == 3


def test_zip_groups_multiply_and_method_blocks_have_their_own_grids():
    raw = {"base": BASE, "zip": [{"lr": [0.1, 0.2], "momentum": [0.8, 0.9]}, {"batch_size": [16, 32, 64]}],
           "methods": {"vanilla": {"grid": {"opts.lam": [0, 1]}}, "ca_at": {"set": {"epochs": 2}}, "pgd_at": None}}
    points = expand(raw)
    by = {m: [p for p in points if p.config["method"] == m] for m in ("vanilla", "ca_at", "pgd_at")}
    assert [len(v) for v in by.values()] == [2 * 3 * 2, 2 * 3, 2 * 3]
    assert all(p.config["epochs"] == 2 for p in by["ca_at"]) and all(p.config["epochs"] == 1 for p in by["pgd_at"])
    assert {p.config["lr"]: p.config["momentum"] for p in points} == {0.1: 0.8, 0.2: 0.9}


def test_names_are_filesystem_safe_unique_and_label_clashes_keep_the_whole_key():
    raw = {"base": BASE, "grid": {"eps": ["8/255", "16/255"], "milestones": [[0.5, 0.75]]}, "methods": ["pgd_at"]}
    names = [p.name for p in expand(raw)]
    assert names == ["method=pgd_at,eps=8_255,milestones=0.5+0.75", "method=pgd_at,eps=16_255,milestones=0.5+0.75"]
    assert all("/" not in n and " " not in n for n in names)
    raw = {"base": BASE, "grid": {"opts.width": [1], "model_args.width": [8, 16]}}
    names = [p.name for p in expand({**raw, "grid": {"model_args.width": [8, 16]}})]
    assert names == ["width=8", "width=16"]
    clash = parse_spec(raw)  # two keys end in "width": both keep their dotted names
    assert {k for _, g, _ in clash.axes for k in g} == {"opts.width", "model_args.width"}
    # values that only differ in characters a file name cannot hold get a hash suffix, stay unique
    names = [p.name for p in expand({"base": BASE, "grid": {"data": ["set/a", "set_a", "set-b"]}})]
    assert names[0] != names[1] and names[0].startswith("data=set_a~") and names[1].startswith("data=set_a~")
    assert names[2] == "data=set-b"
    assert format_value("8/255") == format_value("8_255") == "8_255"
    assert format_value(1.0) == "1" and format_value(0.25) == "0.25" and format_value(True) == "true"


def test_schema_errors_are_one_line_and_name_the_problem():
    one_line_error({"base": BASE, "grd": {}}, "sweep key='grd'", "allowed: name, base")
    one_line_error({"base": {**BASE, "epochz": 3}}, "base key='epochz'", "unknown")
    one_line_error({"base": {**BASE, "out": "x"}}, "out", "reserved")
    one_line_error({"base": BASE, "grid": {"lr": []}}, "grid.lr=[]", "empty")
    one_line_error({"base": BASE, "grid": {"lr": 0.1}}, "grid.lr=0.1", "not a list")
    one_line_error({"base": BASE, "grid": {"lr": [0.1, 0.1]}}, "grid.lr", "repeating 0.1")
    one_line_error({"base": BASE, "grid": {"learning_rate": [0.1]}}, "grid key='learning_rate'", "unknown")
    one_line_error({"base": BASE, "grid": {"opts.a.b": [1]}}, "opts.a.b", "one level")
    one_line_error({"base": BASE, "zip": {"lr": [0.1, 0.2], "momentum": [0.9]}}, "zip lengths=", "is unequal", "'lr': 2",
                   "'momentum': 1")
    one_line_error({"base": BASE, "zip": {"lr": [0.1, 0.1], "momentum": [0.9, 0.9]}}, "zip=", "repeating a tuple")
    one_line_error({"base": BASE, "seeds": 2, "grid": {"seed": [0, 1]}}, "key='seed'", "varied twice (seeds and grid)")
    one_line_error({"base": BASE, "grid": {"opts": [{"lam": 0.5}]}, "zip": {"opts.lam": [0.1]}},
                   "key='opts.lam'", "varied twice (grid and zip)")
    one_line_error({"base": BASE, "grid": {"method": ["pgd_at"]}, "methods": ["vanilla"]}, "key='method'",
                   "varied twice")
    one_line_error({"base": BASE, "grid": {"lr": [0.1]}, "methods": {"vanilla": {"grid": {"lr": [0.2]}}}},
                   "key='lr'", "varied twice (grid and methods.vanilla.grid)")
    one_line_error({"base": BASE, "grid": {"lr": [0.1]}, "methods": {"vanilla": {"set": {"lr": 0.2}}}},
                   "key='lr'", "varied twice")
    one_line_error({"base": BASE, "methods": {"vanilla": {"gird": {}}}}, "methods.vanilla key='gird'")
    one_line_error({"base": BASE, "methods": ["vanilla", "vanilla"]}, "distinct method names")
    one_line_error({"base": BASE, "seeds": 0}, "seeds=0", "an integer >= 1")
    one_line_error({"base": BASE, "eval": {"attack": ["pgd20"]}}, "eval key='attack'")
    one_line_error({"base": BASE, "eval": {"attacks": ["pgd0"]}}, "unknown attack 'pgd0'")
    one_line_error({"base": BASE, "eval": {"attacks": []}}, "eval.attacks")
    one_line_error({"base": BASE, "eval": {"norm": "L3"}}, "eval.norm='L3'")
    one_line_error({"base": BASE, "eval": {"n": 0}}, "eval.n=0")
    one_line_error({"base": BASE, "eval": {"split": "train"}}, "eval.split='train'")
    one_line_error({"base": BASE, "eval": {"eps": "-8/255"}}, "eval.eps", "negative")
    # values checked per point before anything trains, named by the point
    one_line_error({"base": BASE, "methods": {"vanilla": {"grid": {"opts.lam": [0.5, 2]}}}},
                   "point method=vanilla,lam=2:", "lam=2")
    one_line_error({"base": BASE, "methods": {"vanilla": {"grid": {"opts.gamma": [0.5]}}}},
                   "option 'gamma'", "allowed: clean_first, clean_weight, label_smoothing, lam")
    one_line_error({"base": BASE, "grid": {"epochs": [1, 0]}}, "point epochs=0:", "epochs=0")


def test_eval_defaults_follow_the_points_training_threat_model():
    spec = parse_spec({"base": BASE})
    assert spec.eval == {"attacks": ["pgd20", "autoattack"], "eps": None, "norm": None, "n": None, "seed": 0,
                         "split": "test", "batch_size": None}
    assert parse_spec({"base": BASE, "eval": {"attacks": "pgd10, fgsm"}}).eval["attacks"] == ["pgd10", "fgsm"]


def test_hashes_ignore_execution_details_and_see_every_setting():
    cfg = expand({"base": BASE})[0].config
    h = config_hash(cfg)
    assert config_hash({**cfg, "device": "cuda", "progress": False, "out": "/elsewhere", "tensorboard": True}) == h
    assert config_hash({**cfg, "epochs": 2}) != h
    assert config_hash({**cfg, "opts": {"lam": 0.5}}) != config_hash({**cfg, "opts": {"lam": 0.25}})
    assert config_hash({**cfg, "lr": 1}) == config_hash({**cfg, "lr": 1.0})  # one value, two spellings
    ev = parse_spec({"base": BASE}).eval
    assert eval_hash({**ev, "batch_size": 64}) == eval_hash(ev) != eval_hash({**ev, "n": 100})
    assert canonical({"b": 1.0, "a": [2.0]}) == '{"a":[2],"b":1}'
    diff = differences(flat({**cfg, "opts": {"lam": 0.5}}), flat({**cfg, "epochs": 3, "opts": {"lam": 0.25}}), ("out",))
    assert sorted(diff) == ["epochs", "opts.lam"]


def test_a_line_cut_short_is_skipped_and_a_resume_rebuilds_the_files(tmp_path):
    """A crash mid-append leaves half a line; the sweep's reader skips it and train(resume=True) starts
    from the checkpoint's history (metrics) and drops the cut-off step record, so nothing needs repair."""
    from robustfront.sweep.point import epochs_done, read_jsonl
    from robustfront.train import TrainConfig, train
    p = tmp_path / "metrics.jsonl"
    p.write_text('{"epoch": 1}\n{"epoch": 2}\n{"epo')
    assert [r["epoch"] for r in read_jsonl(p)] == [1, 2] and epochs_done(tmp_path) == 2
    run = tmp_path / "run"
    cfg = TrainConfig(data="digits", model="mlp", epochs=2, batch_size=128, train_n=256, method="standard",
                      log_every=1, progress=False, out=str(run))
    train(cfg, stop_after=1)
    for name in ("metrics.jsonl", "steps.jsonl"):
        with open(run / name, "a") as f:
            f.write('{"epoch": 2, "tra')
    train(cfg, resume=True)
    metrics = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [json.loads(l) for l in (run / "steps.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == [1, 2]
    assert [s["epoch"] for s in steps] == [1, 1, 2, 2] and [s["step"] for s in steps] == [1, 2, 1, 2]

"""Fuzz of YAML configs through `robustfront train --config FILE` (in-process `cli.main`).

Random documents - syntax errors, documents that are not a mapping, lists where strings belong,
`device: 3`, `bf16: 'no'`, huge numbers, NaN, nested garbage, unknown keys - on top of a cheap valid
config (digits, a tiny mlp, one epoch on 32 images). An example passes if it exits 0 with a valid run
(finite metrics and weights) or exits 2 with one error line naming the file or the key. `--out` is
always given on the command line (a flag overrides the file), so no document can write outside the
test's folders. Expensive valid values (compile, download, 10**30 epochs) are not generated.
"""
from __future__ import annotations

from itertools import count
from pathlib import Path

import pytest
import torch
import yaml
from hypothesis import HealthCheck, Phase, given, settings, strategies as st

from cli_harness import isolated_root, Fuzz, error_line, finite_tree, json_out, run_main

pytestmark = pytest.mark.filterwarnings("ignore")

BASE = {"data": "digits", "model": "mlp", "model_args": {"hidden": [8]}, "epochs": 1, "train_n": 32,
        "attack_steps": 1, "eval_steps": 1, "eval_n": 16, "batch_size": 32, "progress": False}
FIELDS = ["data", "data_root", "resize", "val_size", "train_n", "model", "model_args", "method", "opts", "epochs",
          "batch_size", "lr", "momentum", "nesterov", "weight_decay", "schedule", "milestones", "lr_decay", "warmup",
          "norm", "eps", "alpha", "attack_steps", "attack", "crop", "flip", "cutout", "ema", "ema_start", "bf16",
          "channels_last", "fused_sgd", "device", "seed", "eval_every", "eval_steps", "eval_n", "select_on",
          "log_every", "progress", "tensorboard"]
COSTLY = {"epochs", "attack_steps", "eval_steps"}     # a valid huge value would run for hours
SIZED = {"resize", "crop", "cutout"}                   # a valid middle value allocates gigabytes


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    with isolated_root(tmp_path_factory, "yamlfuzz") as root:   # own cache and cwd, one thread
        warm = run_main(["train", *CHEAP_FLAGS, "--out", str(root / "warm")], timeout=120)  # imports, first-call costs
        assert warm.rc == 0, warm.err + warm.tb
        yield {"root": root, "n": count(), "marker": root / "PAYLOAD-RAN"}
    assert not (root / "PAYLOAD-RAN").exists(), "a YAML tag ran code"


LEAF = st.one_of(st.none(), st.booleans(), st.integers(-3, 300), st.sampled_from([10**30, -(10**30), 2**63]),
                 st.floats(), st.text(max_size=6), st.sampled_from(["no", "yes", "off", "8/255", "1e999", "nan", ""]))
GARBAGE = st.recursive(LEAF, lambda kids: st.one_of(st.lists(kids, max_size=3),
                                                    st.dictionaries(st.text(max_size=4), kids, max_size=3)),
                       max_leaves=5)


def value_for(key: str):
    if key in COSTLY:
        return st.one_of(st.integers(-2, 2), st.text(max_size=3), st.floats(), st.lists(st.integers(0, 2), max_size=2))
    if key in SIZED:
        return st.one_of(st.integers(-2, 6), st.just(10**30), st.text(max_size=3), st.lists(st.integers(-1, 4),
                                                                                           max_size=3))
    if key == "model":
        return st.one_of(st.sampled_from(["mlp", "small_cnn", "vit", "", "MLP"]), GARBAGE)
    if key == "data":
        return st.one_of(st.sampled_from(["digits", "gaussian", "gaussian:dim=4", "cifar10", "/nonexistent", ""]),
                         GARBAGE)
    if key == "model_args":
        return st.one_of(st.fixed_dictionaries({"hidden": st.one_of(st.lists(st.integers(-1, 16), max_size=2), LEAF)}),
                         GARBAGE)
    return GARBAGE


DOC = st.dictionaries(st.one_of(st.sampled_from(FIELDS), st.sampled_from(["out_dir", "Epochs", "lr_rate"]),
                                st.integers(0, 3)), st.none(), min_size=1, max_size=3)


# merged after the cheap BASE (a later key wins in PyYAML), so a document that parses stays a cheap run
RAW = [
    "epochs: [1, 2\n", "a: b: c\n", "\tepochs: 1\n", "lr: 'unterminated\n", "{\n", "]]\n",
    "model: !!python/object/apply:os.system ['touch {marker}']\n", "epochs: !!python/name:os.system\n",
    "epochs: *nowhere\n", "a: &x [*x]\n", "? [a, b]\n: 1\n", "epochs: !!binary aGVsbG8=\n", "seed: 2020-01-01\n",
    "lr: 1_000\n", "eps: 0o17\n", "device: 3\n", "bf16: 'no'\n", "bf16: no\n", "bf16: 1\n",
    "method: [pgd_at, trades]\n", "model_args: 3\n", "opts: [1]\n", "epochs: .inf\n", "lr: .nan\n", "lr: .inf\n",
    "eps: .nan\n", "milestones: {a: 1}\n", "data: [digits]\n", "norm: {Linf: 1}\n", "lr: 1e999\n",
    "lr: 1.0e+400\n", "seed: -1\n", "seed: 1000000000000000000000000000000\n", "batch_size: 0\n", "val_size: 0\n",
    "epochs: 1\nepochs: 2\n",
]
# written alone: they must fail before any work (empty and null mean "all defaults": run with cheap flags)
ALONE = ["%YAML 9.9\n---\na: 1\n", "!!python/object/apply:os.system ['touch {marker}']\n",
         "---\nepochs: 1\n---\nepochs: 2\n", "- 1\n- 2\n", "42\n", "'a string'\n"]
EMPTY = ["", "null\n", "# only a comment\n"]
BINARY = [b"\xff\xfe\x00garbage", b"epochs: \x00\n", b"lr: 0.1\r\n\xc3\x28\n"]
CHEAP_FLAGS = ["--data", "digits", "--model", "mlp", "--model-arg", "hidden=[8]", "--epochs", "1", "--train-n", "32",
               "--attack-steps", "1", "--eval-steps", "1", "--eval-n", "16", "--batch-size", "32", "--no-progress"]


def fresh(w, name):
    return w["root"] / "outs" / f"{name}{next(w['n'])}"


def valid(res, out: Path):
    m = json_out(res)
    if not isinstance(m, dict) or not m.get("epoch"):
        return f"stdout is not the metrics of a trained epoch: {res.out.strip()[:80]!r}"
    if not finite_tree(m):
        return "non-finite metrics"
    last = out / "checkpoints" / "last.pt"
    if not last.is_file():
        return f"no {last}"
    state = torch.load(last, weights_only=True)
    if not all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point()):
        return "non-finite weights saved"
    return None


def judge(fuzz: Fuzz, res, path: Path, keys, out: Path) -> None:
    if res.rc == 0 and not res.exc and not res.timed_out:
        why = valid(res, out)
        fuzz.fail(f"exit 0 with an invalid result: {why}", res) if why else fuzz.ok("exit 0")
        return
    line, why = error_line(res)
    if line is None:
        fuzz.fail(why, res)
    elif str(path) not in line and not any(str(k).lower() in line.lower() for k in keys):
        fuzz.fail("error line names neither the file nor a key", res)
    else:
        fuzz.ok("exit 2")


def run_config(w, path: Path, keys, fuzz: Fuzz, flags=()) -> None:
    out = fresh(w, "yaml")
    res = run_main(["train", "--config", str(path), *flags, "--out", str(out)], timeout=10)
    judge(fuzz, res, path, keys, out)


SETTINGS = dict(deadline=None, derandomize=True, database=None, phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck))


def test_raw_documents(world):
    """Hand-picked documents that broke the loader in issue 13, each through `train --config`."""
    fuzz = Fuzz("yaml raw documents")
    base = yaml.safe_dump(BASE).encode()
    fill = lambda d: d.replace("{marker}", str(world["marker"])).encode()
    docs = ([(base + fill(d), ()) for d in RAW] + [(fill(d), ()) for d in ALONE] + [(base + d, ()) for d in BINARY]
            + [(fill(d), CHEAP_FLAGS) for d in EMPTY])
    for i, (doc, flags) in enumerate(docs):
        path = world["root"] / f"raw{i}.yaml"
        path.write_bytes(doc)
        try:
            parsed = yaml.safe_load(doc)
            keys = list(parsed) if isinstance(parsed, dict) else []
        except yaml.YAMLError:
            keys = []
        run_config(world, path, [k for k in keys if k not in BASE or k in doc.decode(errors="replace")[len(base):]],
                   fuzz, flags)
    print(fuzz.summary())
    assert fuzz.total == len(docs)
    assert not fuzz.failures, fuzz.summary()


def test_fuzz_random_documents(world):
    """A cheap valid config with 1-3 keys set to random values (or unknown / non-string keys)."""
    fuzz, n = Fuzz("yaml random documents"), 120

    @settings(max_examples=n, **SETTINGS)
    @given(data=st.data())
    def one(data):
        doc = dict(BASE)
        keys = list(data.draw(DOC))
        for k in keys:
            doc[k] = data.draw(value_for(k) if isinstance(k, str) else GARBAGE)
        path = world["root"] / f"doc{next(world['n'])}.yaml"
        try:
            path.write_text(yaml.safe_dump(doc, allow_unicode=True))
        except (yaml.YAMLError, ValueError):
            return
        run_config(world, path, keys, fuzz)

    one()
    print(fuzz.summary())
    assert fuzz.total >= n * 0.8, fuzz.summary()
    assert not fuzz.failures, fuzz.summary()

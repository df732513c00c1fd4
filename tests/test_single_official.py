"""A single official attack (square, fab_t, apgd_t, ...) runs as a cascade of one attack: per-sample masks
equal to the official runner's, resume after an interruption (from the batch in flight) and shards that
merge into the unsharded result, as the AutoAttack cascades do.

Budgets are reduced (Square 60 queries, FAB and APGD 3 iterations) to keep each run near a second; both
sides of every comparison use the same budgets, applied by the same function to the official object.
"""
import numpy as np
import pytest
import torch

from robustfront.attacks import official
from robustfront.eval import EvalConfig, evaluate
from robustfront.eval.masks import Masks
from robustfront.eval.suite_state import merge_evaluations

EPS = 0.12
SQUARE = dict(attacks=["square"], aa_budget={"n_queries": 60})


@pytest.fixture(scope="module")
def points(digits_model):
    model, x, y = digits_model
    return model, torch.cat([x[:12], x[100:112]]), torch.cat([y[:12], y[100:112]])


def request(**kw) -> EvalConfig:
    return EvalConfig(**{"eps": [EPS], "batch_size": 4, "chunk_size": 8, "no_state": True, **kw})


def runner_mask(model, x, y, name, budgets, batch_size):
    """The official runner's per-sample result of one attack (AutoAttack(...).attacks_to_run = [name])."""
    from pyautoattack import AutoAttack
    aa = AutoAttack(model, device="cpu", eps=EPS, norm="Linf", seed=0, version="standard")
    official.apply_budgets(aa, budgets)
    aa.attacks_to_run = [official.OFFICIAL[name]]
    aa.verbose = False
    _, y_adv = aa.run_standard_evaluation(x, y, batch_size=batch_size)
    return (y_adv == y).numpy()


@pytest.mark.parametrize("name, kw, budgets", [
    ("square", {"aa_budget": {"n_queries": 60}}, {"n_queries": 60}),
    ("fab_t", {"aa_budget": {"n_iter": 3}}, {"n_iter": 3}),
    ("apgd_t", {"steps": 3}, {"n_iter": 3}),            # APGD's iterations are the request's steps
])
def test_a_single_official_attack_equals_the_official_runner_per_sample(points, name, kw, budgets):
    model, x, y = points
    res = evaluate(model, x, y, request(attacks=[name], chunk_size="all", batch_size=8, **kw)).raw
    ok = runner_mask(model, x, y, name, budgets, 8)
    masks = Masks.from_json(res["masks"])
    assert masks.names == ["clean", name] and np.array_equal(masks[name], ok)
    assert res["robust_acc"][name] == ok.mean() < res["clean_acc"]      # the attack broke some points
    assert res["autoattack_log"] == {name: {name: res["robust_acc"][name]}}
    assert not res["official_budgets"] and res["autoattack_budgets"][name][name].items() >= budgets.items()


def test_a_single_official_attack_resumes_after_an_interruption(points, tmp_path, monkeypatch):
    model, x, y = points
    perturb, calls = official.perturb, []

    def counted(aa, attack, xb, yb):
        calls.append(attack)
        if stop_at and len(calls) == stop_at:
            raise KeyboardInterrupt   # as a Ctrl-C or a kill in the middle of a batch
        return perturb(aa, attack, xb, yb)

    monkeypatch.setattr(official, "perturb", counted)
    stop_at = 0
    plain = evaluate(model, x, y, request(**SQUARE)).raw
    batches = len(calls)                                   # 3 chunks of 8, batches of 4 on the robust points
    assert batches >= 4 and set(calls) == {"square"}

    calls.clear()
    stop_at = 3                                            # two batches saved, the third interrupted
    cfg = request(**SQUARE, state=str(tmp_path / "st"), no_state=False)
    with pytest.raises(KeyboardInterrupt):
        evaluate(model, x, y, cfg)
    folder = tmp_path / "st" / "eps-0" / "square"          # the attack's own cascade state
    assert (folder / "meta.json").is_file() and not (tmp_path / "st" / "result.json").exists()

    calls.clear()
    stop_at = 0
    resumed = evaluate(model, x, y, cfg).raw
    assert len(calls) == batches - 2                       # only the batch in flight and those after it
    for key in ("clean_acc", "robust_acc", "masks", "worst_case_acc", "autoattack_log", "n"):
        assert resumed[key] == plain[key], key
    assert (tmp_path / "st" / "result.json").is_file()


def test_two_shards_of_a_single_official_attack_merge_into_the_unsharded_result(points, tmp_path):
    model, x, y = points
    plain = evaluate(model, x, y, request(**SQUARE)).raw
    parts = [evaluate(model, x, y, request(**SQUARE, shard=f"{i}/2", state=str(tmp_path / f"s{i}"),
                                           no_state=False)).raw for i in range(2)]
    assert [p["n"] for p in parts] == [16, 8] and not any(p["complete"] for p in parts)   # chunks 0, 2 | 1
    merged = merge_evaluations(tmp_path / "s0", tmp_path / "s1")
    assert merged["complete"] and merged["n"] == len(y)
    for key in ("clean_acc", "robust_acc", "masks", "worst_case_acc", "autoattack_log", "official_budgets"):
        assert merged[key] == plain[key], key


def test_the_reduced_budget_is_taken_by_the_single_attacks_it_applies_to():
    assert EvalConfig(attacks=["fgsm", "square"], aa_budget={"n_queries": 5}).aa_budget == {"n_queries": 5}
    with pytest.raises(ValueError, match="given without one; allowed: with an official attack that takes it"):
        EvalConfig(attacks=["pgd20", "apgd_ce"], aa_budget={"n_iter": 5})

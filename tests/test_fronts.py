"""Fronts: Pareto sets, exact 2-D hypervolume, dominance beyond the seed noise, grouping, plot and its data."""
import csv
import json
import random
import statistics

import pytest

from robustfront.fronts import (
    analyze,
    dominance,
    group_results,
    hypervolume,
    pareto_mask,
    summarize,
    write_fronts,
)

G = {"data": "digits", "split": "test", "norm": "Linf", "eps": 32 / 255, "protocol": "attacks=pgd20+autoattack;n=360;seed=0",
     "model": "small_cnn", "schedule": "15 epochs cosine", "robust_name": "AutoAttack", "n": 360}


def res(family, knob, seed, clean, robust, **kw):
    return {**G, "family": family, "knob": knob, "seed": seed, "clean": clean, "robust": robust, "aa": robust,
            "pgd": min(1.0, robust + 0.02), **kw}


def union_area(points, ref):
    """Independent reference: the union of boxes [ref, p] cut into the cells of the coordinate grid."""
    xs = sorted({ref[0]} | {max(ref[0], p[0]) for p in points})
    ys = sorted({ref[1]} | {max(ref[1], p[1]) for p in points})
    area = 0.0
    for x0, x1 in zip(xs, xs[1:]):
        for y0, y1 in zip(ys, ys[1:]):
            if any(p[0] >= x1 and p[1] >= y1 for p in points):  # the cell lies inside some box
                area += (x1 - x0) * (y1 - y0)
    return area


def test_hypervolume_hand_computed_areas():
    assert hypervolume([(0.8, 0.5)]) == pytest.approx(0.4)
    # staircase: 0.8·0.2 + 0.5·(0.5-0.2) + 0.2·(0.8-0.5) = 0.16 + 0.15 + 0.06
    stair = [(0.8, 0.2), (0.5, 0.5), (0.2, 0.8)]
    assert hypervolume(stair) == pytest.approx(0.37)
    assert hypervolume(stair + [(0.4, 0.4), (0.5, 0.5)]) == pytest.approx(0.37)  # dominated and repeated points add nothing
    # against ref (0.3, 0.1): (0.8-0.3)·(0.2-0.1) + (0.5-0.3)·(0.5-0.2); (0.2, 0.8) lies left of the ref
    assert hypervolume(stair, ref=(0.3, 0.1)) == pytest.approx(0.05 + 0.06)
    assert hypervolume([(0.2, 0.9)], ref=(0.5, 0.0)) == 0.0 and hypervolume([]) == 0.0


def test_hypervolume_equals_the_union_of_boxes_on_random_fronts():
    rng = random.Random(0)
    for _ in range(200):
        pts = [(round(rng.random(), 2), round(rng.random(), 2)) for _ in range(rng.randint(1, 8))]
        ref = (round(rng.random() * 0.3, 2), round(rng.random() * 0.3, 2))
        assert hypervolume(pts, ref) == pytest.approx(union_area(pts, ref), abs=1e-12)


def test_pareto_set_on_hand_examples():
    pts = [(0.9, 0.3), (0.8, 0.5), (0.85, 0.2), (0.7, 0.5), (0.6, 0.6), (0.8, 0.5)]
    # (0.85,0.2) < (0.9,0.3); (0.7,0.5) < (0.8,0.5); the two (0.8,0.5) tie and neither beats the other
    assert pareto_mask(pts) == [True, True, False, False, True, True]
    assert pareto_mask([(0.5, 0.5)]) == [True]
    assert pareto_mask([(0.5, 0.4), (0.5, 0.5)]) == [False, True]  # equal in one coordinate, better in the other


def summary(family, knob, c, sc, r, sr):
    return {"family": family, "knob": knob, "clean": {"mean": c, "std": sc}, "robust": {"mean": r, "std": sr}}


def test_dominance_plain_and_beyond_the_seed_noise():
    a = [summary("A", "a1", 0.80, 0.01, 0.40, 0.01),   # b1 better by 0.05 in both, noise sqrt(.01²+.01²) = .014
         summary("A", "a2", 0.90, 0.03, 0.30, 0.03),   # b2 better by 0.02 in both, noise .042: plain only
         summary("A", "a3", 0.95, 0.00, 0.10, 0.00),   # nothing of B reaches 0.95 clean
         summary("A", "a4", 0.85, 0.00, 0.45, 0.00)]   # b1 ties clean and beats robust: plain only (not > in both)
    b = [summary("B", "b1", 0.85, 0.01, 0.45, 0.01), summary("B", "b2", 0.92, 0.03, 0.32, 0.03)]
    d = dominance(a, b)
    rows = {r["knob"]: r for r in d["points"]}
    assert rows["a1"]["dominated_by"] == ["b1"] and rows["a1"]["dominated_beyond_noise_by"] == ["b1"]
    assert rows["a2"]["dominated_by"] == ["b2"] and rows["a2"]["dominated_beyond_noise_by"] == []
    assert rows["a3"]["dominated_by"] == [] and rows["a4"]["dominated_by"] == []
    assert (d["n"], d["n_dominated"], d["n_dominated_beyond_noise"]) == (4, 2, 1)
    a5 = summary("A", "a5", 0.83, 0.0, 0.43, 0.0)  # 0.02 behind b1 in both; b1's noise alone is 0.01
    assert dominance([a5], b)["points"][0]["dominated_beyond_noise_by"] == ["b1"]
    assert dominance([a5], b, k=2.5)["points"][0]["dominated_beyond_noise_by"] == []   # margin 0.025 needed
    assert dominance(b, a)["n_dominated"] == 0


def test_summaries_are_mean_and_sample_std_over_seeds():
    rs = [res("ca_at", "gamma=0.8", s, c, r) for s, c, r in [(0, 0.90, 0.50), (1, 0.86, 0.46), (2, 0.88, 0.55)]]
    (p,) = summarize(rs)
    assert p["n_seeds"] == 3 and p["seeds"] == [0, 1, 2]
    assert p["clean"]["mean"] == pytest.approx(statistics.mean([0.90, 0.86, 0.88]))
    assert p["clean"]["std"] == pytest.approx(statistics.stdev([0.90, 0.86, 0.88]))
    assert p["robust"]["std"] == pytest.approx(statistics.stdev([0.50, 0.46, 0.55]))
    nrr = [2 * c * r / (c + r) for c, r in [(0.90, 0.50), (0.86, 0.46), (0.88, 0.55)]]
    assert p["nrr"]["mean"] == pytest.approx(statistics.mean(nrr))
    assert summarize(rs[:1])[0]["clean"]["std"] == 0.0
    with pytest.raises(ValueError, match=r"seed\(s\) \[1\] twice"):
        summarize(rs + [rs[1]])
    with pytest.raises(ValueError, match=r"clean=1.5 is not an accuracy"):
        summarize([dict(rs[0], clean=1.5)])


def test_grouping_never_mixes_data_eps_norm_or_protocol():
    base = [res("pgd_at", "", 0, 0.9, 0.5)]
    other = {"data": "cifar10", "eps": 8 / 255, "norm": "L2", "protocol": "attacks=pgd20;n=1000;seed=0",
             "split": "val", "model": "resnet18", "schedule": "110 epochs multistep"}
    rs = base + [res("pgd_at", "", 0, 0.8, 0.4, **{k: v}) for k, v in other.items()]
    groups = group_results(rs)
    assert len(groups) == 1 + len(other)
    assert all(len(g) == 1 for g in groups.values())
    with pytest.raises(ValueError, match="span 2 groups"):
        summarize(rs[:2])
    analyses = analyze(rs)
    assert len(analyses) == len(groups)
    for g in analyses:
        (p,) = g["families"]["pgd_at"]["points"]
        src = [r for r in rs if all(r[k] == g["group"][k] for k in ("data", "split", "norm", "eps", "protocol",
                                                                 "model", "schedule"))]
        assert len(src) == 1 and p["clean"]["mean"] == src[0]["clean"]


def two_fronts():
    rng, rs = random.Random(1), []
    for s in range(3):
        for g, (c, r) in zip((0.6, 0.8, 1.0), ((0.80, 0.60), (0.86, 0.58), (0.92, 0.45))):
            rs.append(res("ca_at", f"gamma={g}", s, c + rng.uniform(-0.01, 0.01), r + rng.uniform(-0.01, 0.01),
                          knob_value=g))
        for lam, (c, r) in zip((0.25, 0.5, 0.75), ((0.90, 0.40), (0.85, 0.50), (0.78, 0.55))):
            rs.append(res("vanilla", f"lam={lam}", s, c + rng.uniform(-0.01, 0.01), r + rng.uniform(-0.01, 0.01),
                          knob_value=lam))
    return rs


def test_write_fronts_plot_exists_and_its_data_matches(tmp_path):
    rs = two_fronts()
    files = write_fronts(rs, tmp_path)
    names = sorted(f.name for f in files)
    png = next(f for f in files if f.suffix == ".png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image
    assert matplotlib.image.imread(png).shape[0] > 300
    data = json.loads(png.with_suffix(".json").read_text())
    for fam in ("ca_at", "vanilla"):
        pts = data["families"][fam]["points"]
        for p in pts:
            mine = [r for r in rs if r["family"] == fam and r["knob"] == p["knob"]]
            assert p["clean"]["mean"] == pytest.approx(statistics.mean(r["clean"] for r in mine))
            assert p["robust"]["std"] == pytest.approx(statistics.stdev(r["robust"] for r in mine))
        means = [(p["clean"]["mean"], p["robust"]["mean"]) for p in pts]
        assert data["families"][fam]["hypervolume"] == pytest.approx(union_area(means, (0, 0)))
        assert [p["pareto"] for p in pts] == pareto_mask(means)
    assert "digits (test)" in data["note"] and "ε=32/255" in data["note"] and "n=360" in data["note"]
    with open(png.with_suffix(".csv")) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6 and {r["family"] for r in rows} == {"ca_at", "vanilla"}
    assert "fronts.md" in names and "fronts.csv" in names
    md = (tmp_path / "fronts.md").read_text().splitlines()
    assert md[0] == "| family | knob | clean | PGD | AA | Mean | NRR | seeds | n | ε | data | model | schedule |"
    assert len(md) == 2 + 6 and "±" in md[2]
    pairs = {(d["a"], d["b"]) for d in data["dominance"]}
    assert pairs == {("ca_at", "vanilla"), ("vanilla", "ca_at")}


def test_results_from_eval_json_pick_aa_the_strongest_pgd_and_split_eps_sweeps():
    from robustfront.fronts import rows_from_eval as results_from_eval
    cfg = {"method": "ca_at", "seed": 2, "model": "small_cnn", "model_args": {"width": 16}, "epochs": 15,
           "schedule": "cosine", "data": "digits"}
    one = {"clean_acc": 0.9, "robust_acc": {"pgd20": 0.6, "pgd100x2": 0.58, "autoattack": 0.55}, "worst_case_acc": 0.54,
           "n": 360, "eps": 32 / 255, "norm": "Linf", "seed": 0}
    (r,) = results_from_eval({**one, "data": "digits", "split": "test"}, cfg, knob="gamma=0.8", knob_value=0.8)
    assert (r["clean"], r["robust"], r["aa"], r["pgd"], r["robust_name"]) == (0.9, 0.55, 0.55, 0.58, "AutoAttack")
    assert (r["family"], r["seed"], r["model"], r["schedule"]) == ("ca_at", 2, "small_cnn (width=16)", "15 epochs cosine")
    assert r["protocol"] == "attacks=pgd20+pgd100x2+autoattack;n=360;seed=0"
    no_aa = {**one, "robust_acc": {"pgd20": 0.6, "cw": 0.57}}
    (r,) = results_from_eval(no_aa, cfg)
    assert r["robust"] == 0.54 and r["aa"] is None and r["robust_name"] == "worst case of pgd20+cw"
    sweep = {"eps": [8 / 255, 16 / 255], "sweep": [{**one, "eps": 8 / 255}, {**one, "eps": 16 / 255, "clean_acc": 0.8}], "data": "digits"}
    rs = results_from_eval(sweep, cfg)
    assert [r["eps"] for r in rs] == [8 / 255, 16 / 255] and len(group_results(rs)) == 2

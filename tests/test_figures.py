"""Every figure type of the report, drawn for 1, 8 and 30 runs: no text overprints another, every marker
is inside its axes, the legend and the footer stay off the axes, epochs are integers. The checks read
the drawn artists (robustfront/fronts/layout.py), and a figure built to overprint fails them."""
import math
import random

import pytest

from robustfront.eval.result import EvalResult
from robustfront.fronts import analyze, layout
from robustfront.fronts.plots import (CONFLICT_PANELS, curves_figure, dominance_line, fronts_figure,
                                      robust_vs_eps_figure, split_outliers)

pytest.importorskip("matplotlib")
SIZES = (1, 8, 30)


def row(family, knob, seed, clean, robust, knob_value=None, **kw):
    return {"family": family, "knob": knob, "knob_value": knob_value, "seed": seed, "clean": clean, "robust": robust,
            "aa": robust, "pgd": min(1.0, robust + 0.02), "data": "digits", "split": "test", "norm": "Linf",
            "eps": 32 / 255, "protocol": "attacks=pgd20+autoattack;n=360;seed=0", "model": "small_cnn (width=16)",
            "schedule": "15 epochs cosine", "robust_name": "AutoAttack", "n": 360, **kw}


def front_rows(n_points: int, seed: int = 0) -> list[dict]:
    """n_points (family, knob) cells over two families and 3 seeds, crowded into a few points of accuracy as
    the digits sweep is, plus one far-off standard-training point shared by both families."""
    rng, rows = random.Random(seed), []
    fams = ("ca_at", "vanilla") if n_points > 1 else ("ca_at",)
    for i in range(n_points):
        fam, v = fams[i % len(fams)], round(0.1 + i / max(1, n_points), 3)
        c, r = 0.985 + 0.01 * rng.random(), 0.73 + 0.07 * rng.random()
        for s in range(3):
            rows.append(row(fam, f"{'gamma' if fam == 'ca_at' else 'lam'}={v}", s, c + rng.uniform(-.004, .004),
                            r + rng.uniform(-.008, .008), v))
    if n_points >= 8:  # λ=0 and γ=1: the same standard-training run in both families
        for s in range(3):
            c, r = 0.94 + 0.01 * s, 0.25 + 0.003 * s
            rows += [row("ca_at", "gamma=1", s, c, r, 1.0), row("vanilla", "lam=0", s, c, r, 0.0)]
    return rows


def runs(n: int, *, conflict: bool = True, epochs: int = 6) -> list[dict]:
    rng, out = random.Random(n), []
    for i in range(n):
        metrics = []
        for e in range(1, epochs + 1):
            m = {"epoch": e, "train_loss": 2 / e + rng.random() * 0.1, "train_clean_acc": 1 - 0.5 / e,
                 "train_adv_acc": 0.6 - 0.3 / e, "val_clean_acc": 0.95 - 0.4 / e, "val_pgd_acc": 0.5 - 0.2 / e}
            if conflict and i % 2 == 0:
                m.update(cos=0.3 * math.exp(-e / 3) + 0.05 * rng.random(), mu=0.2 + 0.05 * e / epochs)
            metrics.append(m)
        pts = [{"eps": k / 255, "clean_acc": 0.9, "robust_acc": {"pgd20": 0.9 - k / 40, "autoattack": 0.88 - k / 40},
                "worst_case_acc": 0.88 - k / 40} for k in (0, 8, 16, 32)]
        ev = EvalResult.from_json({"eps": [p["eps"] for p in pts], "sweep": pts, "n": 100, "norm": "Linf", "seed": 0})
        out.append({"name": f"method=ca_at,gamma={0.5 + i / 100:g},seed={i % 3}", "path": None, "metrics": metrics,
                    "config": {"data": "digits", "model": "small_cnn", "eps": "32/255", "norm": "Linf", "seed": i % 3},
                    "evals": [("eval.json", ev)]})
    return out


def assert_clean(fig):
    assert layout.overlapping_texts(fig) == []
    assert layout.points_outside(fig) == []
    assert layout.texts_over_axes(fig) == []
    assert layout.texts_outside_figure(fig) == []
    r = fig.canvas.get_renderer()
    for lg in fig.legends:  # the legend is a key beside the axes, never over the data
        box = lg.get_window_extent(r)
        assert not any(layout._boxes_overlap(box, ax.bbox) for ax in fig.axes if ax.get_visible())


@pytest.mark.parametrize("n", SIZES)
def test_front_figure(n):
    (g,) = analyze(front_rows(n))
    fig = fronts_figure([g])
    assert_clean(fig)
    ax = fig.axes[0]
    x0, x1 = ax.get_xlim()
    if n >= 8:  # fitted to the points that matter: the far-off standard-training point is an arrow at the edge
        assert x1 - x0 < 5 and "(off axes)" in " ".join(t.get_text() for t in ax.texts)
        labels = [t.get_text() for t in ax.texts]
        assert sum("γ=1 = λ=0" in t for t in labels) + sum("γ=1 = λ=0" in t.get_text() for t in fig.legends[0].get_texts()) == 1
    if n == 1:
        assert [t.get_text() for t in ax.texts] == ["γ=0.1"]


def test_several_groups_one_panel_each():
    gs = analyze(front_rows(8) + [dict(r, eps=16 / 255) for r in front_rows(8, seed=1)])
    fig = fronts_figure(gs)
    assert len([a for a in fig.axes if a.get_visible()]) == 2
    assert_clean(fig)


def test_outliers_are_split_off_only_when_far_and_few():
    pts = [{"x": 99 + 0.1 * i, "y": 75 + 0.5 * i} for i in range(6)] + [{"x": 94, "y": 25}]
    inl, out = split_outliers(pts)
    assert out == [pts[-1]] and len(inl) == 6
    spread = [{"x": 60 + 5 * i, "y": 40 - 4 * i} for i in range(7)]   # a real trade-off: nothing is cut
    assert split_outliers(spread) == (spread, [])


def test_dominance_line_leaves_shared_points_aside():
    (g,) = analyze(front_rows(8))
    assert dominance_line(g).endswith("(γ=1 = λ=0, shared, left aside)")
    better = [dict(r, clean=r["clean"] - 0.02 if r["family"] == "ca_at" else r["clean"] - 0.2,
                   robust=r["robust"] + 0.1 if r["family"] == "ca_at" else r["robust"] - 0.1)
              for r in front_rows(4)]
    (g,) = analyze(better)
    assert dominance_line(g) == "ca_at dominates 2/2 of vanilla's points beyond the seed noise"


@pytest.mark.parametrize("n", SIZES)
def test_training_curves(n):
    fig = curves_figure(runs(n))
    assert_clean(fig)
    assert [a.get_title() for a in fig.axes] == ["clean accuracy (%)", "robust accuracy (%)", "training loss"]
    for ax in fig.axes:   # integer epochs
        assert all(float(t).is_integer() for t in ax.get_xticks())
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert len(labels) == n + 2   # one entry per run (its colour) and one per split (its line style)


@pytest.mark.parametrize("n", SIZES)
def test_conflict_only_for_runs_with_diagnostics(n):
    rs = runs(n)
    with_diag = [r for r in rs if any("cos" in m for m in r["metrics"])]
    fig = curves_figure(with_diag, CONFLICT_PANELS)
    assert_clean(fig)
    assert len(fig.legends[0].get_texts()) == len(with_diag)   # one split: no line-style key
    assert all(float(t).is_integer() for ax in fig.axes for t in ax.get_xticks())
    assert curves_figure(runs(n, conflict=False), CONFLICT_PANELS) is None


@pytest.mark.parametrize("n", SIZES)
def test_robust_vs_eps(n):
    fig = robust_vs_eps_figure(runs(n))
    assert_clean(fig)
    assert [a.get_title() for a in fig.axes] == ["clean", "pgd20", "autoattack"]


def test_the_checks_catch_overprinting_and_points_outside():
    from robustfront.plotting import figure
    fig, ax = figure()
    ax.plot([0, 1], [0, 1], "o")
    ax.text(0.5, 0.5, "gamma=0.7")
    ax.text(0.5, 0.5, "gamma=0.8")
    ax.set_xlim(0, 0.5)
    assert layout.overlapping_texts(fig) == [("gamma=0.7", "gamma=0.8")]
    assert len(layout.points_outside(fig)) == 1
    fig.text(0.5, 0.5, "a footer over the axes")
    assert layout.texts_over_axes(fig) == ["a footer over the axes"]

"""Per-sample masks (worst case, merge, JSON), shard splitting, the progress line."""
import numpy as np
import pytest

from robustfront.eval.masks import Masks, from_ranges, merge, to_ranges
from robustfront.eval.progress import Progress
from robustfront.eval.shards import chunk_bounds, parse_shard, shard_chunks, shard_from_env, shard_positions


def random_masks(ids, names, seed):
    rng = np.random.default_rng(seed)
    return Masks(ids, {k: rng.random(len(ids)) < 0.7 for k in names})


def test_worst_case_is_the_and_of_the_attacks():
    m = random_masks(np.arange(200), ["clean", "pgd20", "autoattack"], 0)
    by_hand = np.mean([all(m[k][i] for k in m.names) for i in range(200)])
    assert m.accuracy() == pytest.approx(by_hand)
    assert m.accuracy(["pgd20"]) == pytest.approx(m["pgd20"].mean())
    assert m.accuracy(["clean", "pgd20"]) <= min(m.accuracy(["clean"]), m.accuracy(["pgd20"]))


def test_merge_of_shards_and_of_runs():
    full = random_masks(np.arange(50), ["clean", "autoattack"], 1)
    a = Masks(full.ids[::2], {k: v[::2] for k, v in full.correct.items()})
    b = Masks(full.ids[1::2], {k: v[1::2] for k, v in full.correct.items()})
    assert merge(b, a) == full
    # another run on the same points adds its attacks; the same attack twice is ANDed (worst case)
    other = random_masks(np.arange(50), ["pgd20", "autoattack"], 2)
    both = merge(full, other)
    assert both.names == ["clean", "autoattack", "pgd20"]
    assert np.array_equal(both["autoattack"], full["autoattack"] & other["autoattack"])
    with pytest.raises(ValueError, match=r"^attack 'pgd20' has no result for 25 of the 50 points \(e\.g\. id 1\)"):
        merge(a, Masks(b.ids, {"clean": b["clean"], "autoattack": b["autoattack"]}),
              Masks(a.ids, {"pgd20": np.ones(a.n, bool)}))


def test_json_roundtrip_and_ids_out_of_order(tmp_path):
    m = Masks([9, 3, 4, 5, 100], {"clean": [1, 0, 1, 1, 0]})
    assert list(m.ids) == [3, 4, 5, 9, 100] and list(m["clean"]) == [False, True, True, True, False]
    d = m.to_json()
    assert d == {"ids": [[3, 6], [9, 10], [100, 101]], "correct": {"clean": "01110"}}
    assert Masks.from_json(d) == m
    m.save(tmp_path / "m.json")
    assert Masks.load(tmp_path / "m.json") == m
    with pytest.raises(ValueError, match="^Masks ids hold id 3 twice"):
        Masks([3, 3], {"clean": [1, 1]})
    with pytest.raises(ValueError, match=r"^mask 'clean' has 1 values for 2 ids"):
        Masks([1, 2], {"clean": [1]})


def test_ranges_roundtrip():
    ids = np.array([0, 1, 2, 7, 8, 20])
    assert to_ranges(ids) == [[0, 3], [7, 9], [20, 21]]
    assert np.array_equal(from_ranges(to_ranges(ids)), ids)


def test_shards_partition_the_points():
    n, size = 103, 10
    parts = [shard_positions(n, size, (i, 3)) for i in range(3)]
    assert sorted(np.concatenate(parts).tolist()) == list(range(n))
    assert shard_chunks(11, (1, 3)) == [1, 4, 7, 10] and chunk_bounds(25, 10) == [(0, 10), (10, 20), (20, 25)]
    assert parse_shard("2/4") == (2, 4) and parse_shard(" 0 / 1 ") == (0, 1)


@pytest.mark.parametrize("spec, match", [("4/4", "is out of range"), ("-1/4", "is invalid"), ("1/0", "shard count=0"),
                                         ("1of4", "is invalid")])
def test_bad_shards_are_one_line(spec, match):
    with pytest.raises(ValueError, match=match) as e:
        parse_shard(spec)
    assert "\n" not in str(e.value)


def test_shard_from_torchrun_environment():
    assert shard_from_env({}) is None and shard_from_env({"RANK": "0", "WORLD_SIZE": "1"}) is None
    assert shard_from_env({"RANK": "3", "WORLD_SIZE": "4"}) == (3, 4)
    with pytest.raises(ValueError, match="out of range"):
        shard_from_env({"RANK": "4", "WORLD_SIZE": "4"})


def test_progress_line_rate_and_eta():
    t = [0.0]
    lines = []
    p = Progress("apgd-t", 100, label="autoattack[1/2]", every=5, write=lines.append, clock=lambda: t[0])
    t[0] = 2.0
    p.update(20)  # before `every` seconds: silent
    t[0] = 10.0
    p.update(30)
    assert lines == ["autoattack[1/2] apgd-t: 50/100 images, 5.00 img/s, ETA 0m10s"]
    t[0] = 20.0
    p.update(50)
    p.done("robust after APGD-T: 40.00%")
    assert lines[-1] == "autoattack[1/2] apgd-t: 100/100 images in 0m20s (5.00 img/s); robust after APGD-T: 40.00%"
    assert len(lines) == 2


def test_device_for_rank_on_this_machine():
    import torch
    from robustfront.eval.shards import device_for_rank
    want = "cuda:1" if torch.cuda.device_count() > 1 else ("cuda:0" if torch.cuda.is_available() else "cpu")
    assert device_for_rank({"LOCAL_RANK": "1"}) == want

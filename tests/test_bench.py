"""`robustfront bench`: a tiny run gives the report schema with positive numbers (not a timing test)."""
import json
import statistics

import torch

from robustfront.bench import ReferenceImages, random_cifar, run_bench
from robustfront.cli import main


def test_tiny_bench_writes_the_json_schema(tmp_path, capsys):
    out = tmp_path / "bench.json"
    rc = main(["bench", "--quick", "--steps", "3", "--warmup", "1", "--batch-size", "8", "--attack-steps", "2",
               "--methods", "pgd_at,ca_at", "--variants", "fp32,fast", "--threads", "1", "--no-isolate",
               "--json", str(out)])
    assert rc == 0
    rep = json.loads(out.read_text())
    assert rep["device"].startswith("cpu")
    s = rep["settings"]
    assert s["threads"] == 1 and s["batch_size"] == 8 and s["steps"] == 3 and s["attack_steps"] == 2
    assert s["model"] == "small_cnn" and s["torch"] == torch.__version__ and len(s["loadavg_before"]) == 3
    assert [(r["method"], r["variant"]) for r in rep["results"]] == [
        ("pgd_at", "fp32"), ("ca_at", "fp32"), ("pgd_at", "fast"), ("ca_at", "fast")]
    for r in rep["results"]:
        assert {"method", "images_per_s", "reference_images_per_s", "speedup", "peak_mem_bytes",
                "step_time_vs_pgd_at"} <= r.keys()
        assert r["images_per_s"] > 0 and r["reference_images_per_s"] > 0 and r["peak_mem_bytes"] is None
        t, ref = r["step_times_s"], rep["reference"]["step_times_s"]
        assert len(t) == 3 and r["step_time_min_s"] <= r["step_time_s"] <= r["step_time_max_s"]
        assert r["images_per_s"] == 8 / statistics.median(t)
        # paired: the ratio of the two configurations' step times within each round, then the median
        assert r["speedup"] == statistics.median(a / b for a, b in zip(ref, t))
    assert rep["results"][0]["step_time_vs_pgd_at"] == 1.0
    assert "speedup" in capsys.readouterr().out


def test_unknown_method_is_a_one_line_error():
    import pytest
    with pytest.raises(ValueError, match="pgd_at"):
        run_bench(methods=("nope",), steps=1, isolate=False)


def test_reference_augmentation_is_a_crop_and_flip_of_the_image():
    ds = random_cifar(4)
    x, y = ReferenceImages(ds.x_train, ds.y_train)[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    assert y == int(ds.y_train[0])


def test_peak_memory_of_one_configuration():
    from robustfront.bench import QUICK, peak_memory
    spec = dict(QUICK, batch_size=8, device="cpu", attack_steps=2, seed=0, threads=1, compile=False, ref_workers=0,
                n_images=32, method="ca_at", variant="fp32", bf16=False, channels_last=False)
    m = peak_memory(spec)
    assert m["peak_mem_bytes"] >= m["base_mem_bytes"] > 0

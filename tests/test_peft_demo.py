"""The fine-tuning demonstration script end to end at toy size: it runs, its table and JSON agree, and the
PEFT checkpoints it writes reload (load_model: base file + delta) to the accuracies it reported."""
import importlib.util
import json
from pathlib import Path

import pytest
import torch

from robustfront.data import load_dataset
from robustfront.models import load_model

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def demo():
    spec = importlib.util.spec_from_file_location("peft_demo", ROOT / "benchmarks" / "peft_demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_demo_runs_and_its_checkpoints_reload(demo, tmp_path, monkeypatch):
    monkeypatch.setenv("ROBUSTFRONT_CACHE", str(tmp_path / "cache"))
    args = ["--preset", "tiny", "--out", str(tmp_path), "--modes", "lora,linear", "--methods", "clean,ca_at:0.8",
            "--pretrain-epochs", "1", "--finetune-epochs", "1", "--n-pretrain", "128", "--n-finetune", "128",
            "--n-test", "40", "--n-aa", "0", "--dim", "16", "--heads", "2", "--depth", "1"]
    result = demo.main(args)
    saved = json.loads((tmp_path / "peft_demo.json").read_text())
    assert saved["rows"] == json.loads(json.dumps(result["rows"]))
    assert [(r["mode"], r["method"]) for r in result["rows"]] == [("lora", "clean"), ("lora", "ca_at:0.8"),
                                                                  ("linear", "clean"), ("linear", "ca_at:0.8")]
    table = (tmp_path / "peft_demo.md").read_text().splitlines()
    assert len([line for line in table if line.startswith("| lora") or line.startswith("| linear")]) == 4
    ds = load_dataset("digits", resize=16, val_size=0)
    xt, yt = demo.task(ds.x_test, ds.y_test, demo.classes("5-9"), 40, 0)
    x, y = torch.as_tensor(xt).float() / 255, torch.as_tensor(yt)
    for row in result["rows"]:
        assert 0 < row["trainable"] < row["total"] and row["autoattack"] is None
        model = load_model(tmp_path / f"{row['mode']}_{row['method'].split(':')[0]}.pt")
        with torch.no_grad():
            assert (model(x).argmax(1) == y).float().mean().item() == pytest.approx(row["clean"])

"""Hub export and `hf-hub:` loading (offline, against a cache built here), Weights & Biases logging
(offline), and normalisers that are announced when assumed. The real timm/peft: test_timm_real.py."""
import json
from pathlib import Path

import pytest
import torch

import robustfront
from robustfront.cli import main
from robustfront.models import create_model, load_pretrained
from robustfront.models.info import info

TINY = ["--data", "digits", "--model", "small_cnn", "--model-arg", "width=4", "--epochs", "1", "--train-n", "64",
        "--batch-size", "32", "--attack-steps", "1", "--eps", "8/255", "--eval-n", "16", "--eval-steps", "1",
        "--method", "ca_at", "--no-progress"]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ROBUSTFRONT_CACHE", str(tmp_path / "cache"))
    return tmp_path


def put_in_hub_cache(root: Path, repo: str, folder: Path) -> None:
    """Files as huggingface_hub's cache holds a downloaded repository: blobs, a snapshot, refs/main."""
    base = root / ("models--" + repo.replace("/", "--"))
    commit = "0" * 40
    snap = base / "snapshots" / commit
    snap.mkdir(parents=True)
    for f in folder.iterdir():
        (snap / f.name).write_bytes(f.read_bytes())
    (base / "refs").mkdir()
    (base / "refs" / "main").write_text(commit)


def test_export_hub_dir_round_trips_through_hf_hub_offline(cache, monkeypatch, capsys):
    pytest.importorskip("huggingface_hub")
    run = cache / "run"
    assert main(["train", *TINY, "--out", str(run)]) == 0
    ck = run / "checkpoints" / "last.pt"
    assert main(["eval", "--checkpoint", str(ck), "--attacks", "pgd20", "--n", "16", "--no-state", "--out",
                 str(run / "eval.json")]) == 0
    capsys.readouterr()
    assert main(["export", str(ck), "--hub-dir", str(cache / "hub"), "--hub-name", "tiny-ca-at"]) == 0
    names = sorted(Path(p).name for p in capsys.readouterr().out.split())
    assert names == ["README.md", "config.json", "model.safetensors"]
    config = json.loads((cache / "hub" / "config.json").read_text())
    ev = json.loads((run / "eval.json").read_text())
    model = robustfront.load_model(ck)
    # the architecture AND its arguments: code without robustfront can rebuild small_cnn(width=4)
    assert config["architecture"] == "small_cnn" and config["robustfront"]["model_config"]["width"] == 4
    assert config["normalizer"]["mean"] == info(model).config["mean"] and config["normalizer"]["inside_weights"] is False
    assert config["threat_model"] == {"norm": "Linf", "eps": "8/255", "alpha": "2/255", "attack_steps": 1,
                                      "method": "ca_at"}
    assert config["evaluation"]["clean_acc"] == ev["clean_acc"] and config["evaluation"]["source"] == "eval.json"
    assert "robustbench_card_why_not" in config["evaluation"]   # no AutoAttack here: said, not faked
    card = (cache / "hub" / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: robustfront") and f"| clean | {100 * ev['clean_acc']:.2f} |" in card
    from safetensors.torch import load_file
    assert not any(k.startswith("normalize.") for k in load_file(str(cache / "hub" / "model.safetensors")))

    hub = cache / "hf"
    put_in_hub_cache(hub, "org/tiny-ca-at", cache / "hub")
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    again = robustfront.load_model("hf-hub:org/tiny-ca-at")
    x = torch.rand(5, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(again(x), model(x))
    assert main(["eval", "--checkpoint", "hf-hub:org/tiny-ca-at", "--attacks", "pgd20", "--n", "16", "--no-state",
                 "--out", str(cache / "hub_eval.json")]) == 0
    assert json.loads((cache / "hub_eval.json").read_text())["robust_acc"] == ev["robust_acc"]
    capsys.readouterr()
    assert main(["eval", "--checkpoint", "hf-hub:org/missing", "--attacks", "pgd20", "--n", "4"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("robustfront: error: hf-hub:org/missing cannot be read"), err


def wandb_records(path: Path) -> dict:
    """{record type: [records]} of an offline run's .wandb file (its block log of protobuf records),
    once wandb's service process has written the run's exit record."""
    import time
    for _ in range(100):
        out = read_records(path)
        if "exit" in out:
            return out
        time.sleep(0.1)
    return out


def read_records(path: Path) -> dict:
    import struct

    from wandb.proto import wandb_internal_pb2 as pb
    data, pos, buf, out, block = path.read_bytes(), 7, b"", {}, 32768   # 7 bytes: the file header
    while pos + 7 <= len(data):
        if block - pos % block < 7:   # a block's tail too short for a record header is padding
            pos += block - pos % block
            continue
        _, n, kind = struct.unpack("<IHB", data[pos:pos + 7])
        buf, pos = buf + data[pos + 7:pos + 7 + n], pos + 7 + n
        if kind in (1, 4):   # a full record, or the last piece of one
            r = pb.Record()
            r.ParseFromString(buf)
            out.setdefault(r.WhichOneof("record_type"), []).append(r)
            buf = b""
        elif kind == 0:
            break
    return out


def items(updates) -> dict:
    return {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in updates}


def test_wandb_offline_logs_epochs_diagnostics_config_and_evaluation(cache, monkeypatch, capsys):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run = cache / "run"
    assert main(["train", *TINY, "--epochs", "2", "--log-every", "1", "--wandb", "rf-test", "--out", str(run)]) == 0
    ids = json.loads((run / "wandb.json").read_text())
    assert ids["project"] == "rf-test" and ids["name"] == "run"
    assert main(["eval", "--checkpoint", str(run / "checkpoints" / "last.pt"), "--attacks", "pgd20", "--n", "16",
                 "--no-state", "--wandb", "rf-test", "--out", str(run / "eval.json")]) == 0
    folders = sorted((run / "wandb").glob("offline-run-*"))
    assert len(folders) == 2 and all(f.name.endswith(ids["id"]) for f in folders)  # eval continued the same run
    train_rec, eval_rec = (wandb_records(next(f.glob("run-*.wandb"))) for f in folders)
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    rows = [items(r.history.item) for r in train_rec["history"]]
    assert [r["epoch"] for r in rows] == [1, 2] and [r["_step"] for r in rows] == [1, 2]
    for row, m in zip(rows, metrics):   # the JSONL's numbers, copied: metrics and combiner diagnostics
        assert row["train_loss"] == m["train_loss"] and row["val_pgd_acc"] == m["val_pgd_acc"]
        assert "cos" in m and row["cos"] == m["cos"]
    config = items(train_rec["run"][0].run.config.update)
    config = {k: v["value"] if isinstance(v, dict) and "value" in v else v for k, v in config.items()}
    assert config["method"] == "ca_at" and config["wandb"] == "rf-test"
    ev = json.loads((run / "eval.json").read_text())
    assert "summary" in eval_rec, {k: len(v) for k, v in eval_rec.items()}
    summary = {k: v for r in eval_rec["summary"] for k, v in items(r.summary.update).items()}
    assert summary["eval/robust_acc/pgd20"] == ev["robust_acc"]["pgd20"] and summary["eval/clean_acc"] == ev["clean_acc"]
    assert not any(k.startswith("eval/masks") for k in summary)


def test_wandb_without_the_package_is_one_line(cache, monkeypatch, capsys):
    import sys
    monkeypatch.setitem(sys.modules, "wandb", None)   # the import-error path
    assert main(["train", *TINY, "--wandb", "p", "--out", str(cache / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["robustfront: error: wandb='p' needs the wandb package (ModuleNotFoundError); allowed: pip install "
                   "'robustfront[wandb]', or leave --wandb out"]


def test_assumed_normaliser_is_said_in_the_report_and_on_stderr(tmp_path, capsys):
    torch.manual_seed(0)
    vit = create_model("vit_tiny_patch16_224", 1000, embed_dim=24, depth=1, num_heads=3)
    assert info(vit).config["mean"] == [0.5, 0.5, 0.5] and info(vit).config["std"] == [0.5, 0.5, 0.5]
    torch.save({k: v for k, v in vit.state_dict().items() if not k.startswith("normalize.")}, tmp_path / "vit.pth")
    model = create_model("vit_tiny_patch16_224", 10, input_size=32, embed_dim=24, depth=1, num_heads=3)
    report = load_pretrained(model, tmp_path / "vit.pth")
    assert report["normalize"] == ("model default, assumed: timm pretrained_cfg of vit_tiny_patch16_224."
                                   "augreg_in21k_ft_in1k (mean = std = 0.5; ARES/RobustBench: imagenet) (the file "
                                   "holds no normaliser and input_mean/input_std were not given): mean=[0.5, 0.5, "
                                   "0.5], std=[0.5, 0.5, 0.5]")
    err = capsys.readouterr().err
    assert "vit.pth: normaliser mean=[0.5, 0.5, 0.5]" in err and "--input-mean/--input-std" in err
    ares = create_model("vit_tiny_patch16_224", 10, input_size=32, embed_dim=24, depth=1, num_heads=3)
    report = load_pretrained(ares, tmp_path / "vit.pth", input_mean="imagenet", input_std="imagenet")
    assert report["normalize"].startswith("from arguments: mean=[0.485, 0.456, 0.406]")
    assert capsys.readouterr().err == ""   # nothing assumed, nothing said


def test_wandb_sweep_logs_one_run_per_point_grouped_by_the_sweep(cache, monkeypatch):
    pytest.importorskip("wandb")
    import yaml

    from robustfront.sweep import run_sweep
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    spec = yaml.safe_load((Path(__file__).resolve().parents[1] / "configs" / "sweeps" / "tiny_digits.yaml").read_text())
    spec.update(seeds=None, methods={"ca_at": {"grid": {"opts.gamma": [0.7, 0.9]}}}, eval={**spec["eval"], "n": 16})
    spec["base"].update(epochs=1, wandb="rf-sweep")
    s = run_sweep(spec, cache / "mysweep", executor="inline", threads=1, log=lambda m: None)
    assert s["counts"]["done"] == 2
    points = sorted((cache / "mysweep" / "points").iterdir())
    ids = [json.loads((p / "wandb.json").read_text()) for p in points]
    assert [i["group"] for i in ids] == ["mysweep", "mysweep"] and ids[0]["id"] != ids[1]["id"]
    for p, i in zip(points, ids):
        train_rec, eval_rec = (wandb_records(next(f.glob("run-*.wandb")))
                               for f in sorted((p / "wandb").glob("offline-run-*")))
        assert train_rec["run"][0].run.run_group == "mysweep" and train_rec["run"][0].run.display_name == p.name
        summary = {k: v for r in eval_rec["summary"] for k, v in items(r.summary.update).items()}
        assert summary["eval/clean_acc"] == json.loads((p / "eval.json").read_text())["clean_acc"]

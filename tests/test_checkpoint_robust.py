"""Bad checkpoints and weights files: one ValueError/FileNotFoundError line naming the file, for
`checkpoint.load`, `models.load_model` and `weights.read_state_dict`; a pickle payload never runs;
atomic saves leave the old file or the new one, and the test hooks slow them down for kill tests.
Explicit cases, then a hypothesis fuzzer (bit flips, truncation, random bytes, random objects)."""
import io
import json
import os
import pickle
import tempfile
import time
import zipfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

from robustfront import checkpoint as ckpt
from robustfront.models import create_model, load_model
from robustfront.models.weights import read_state_dict
from robustfront.models.info import info
from robustfront.state import FolderLock

LOADERS = {"load": ckpt.load, "load_model": load_model, "read_state_dict": read_state_dict}


def tiny():
    torch.manual_seed(0)
    return create_model("small_cnn", 3, in_channels=1, input_size=8, width=2)


def good_checkpoint(path: Path) -> Path:
    m = tiny()
    torch.save({"model": m.state_dict(), "model_config": info(m).config, "epoch": 1}, path)
    return path


def check_one_line(e: BaseException, path: Path) -> str:
    msg = str(e)
    assert msg and "\n" not in msg, repr(msg)
    assert str(path) in msg, (str(path), msg)
    return msg


def refused(fn, path, *needles):
    with pytest.raises((ValueError, FileNotFoundError)) as e:
        fn(path)
    msg = check_one_line(e.value, path)
    for n in needles:
        assert n in msg, (n, msg)
    return msg


class Payload:
    """Unpickling this runs Path.write_text(marker): the test asserts it never happens."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.write_text, (Path(self.marker), "code ran"))


def test_bad_files_are_one_line_for_every_loader(tmp_path):
    good = good_checkpoint(tmp_path / "good.pt")
    raw = good.read_bytes()
    files = {
        "random.pt": (os.urandom(256), "not a torch checkpoint"),
        "empty.pt": (b"", "empty (0 bytes)"),
        "half.pt": (raw[: len(raw) // 2], "truncated or not a torch checkpoint"),
        "head.pt": (raw[:10], "truncated or not a torch checkpoint"),
        "text.pt": (b"<html><body>404 Not Found</body></html>\n", ""),
    }
    for name, (data, needle) in files.items():
        (tmp_path / name).write_bytes(data)
        for which, fn in LOADERS.items():
            msg = refused(fn, tmp_path / name, "allowed:")
            if which != "read_state_dict":  # the reader sniffs first and names the kind (an HTML page ...)
                assert needle in msg, (which, name, msg)
    for fn in LOADERS.values():
        refused(fn, tmp_path / "missing.pt", "does not exist")
        refused(fn, tmp_path, "is a folder")


def test_non_dict_payloads(tmp_path):
    for name, obj, kind in (("list.pt", [1, 2, 3], "list"), ("tensor.pt", torch.zeros(3), "Tensor"),
                            ("int.pt", 7, "int"), ("none.pt", None, "NoneType"), ("tuple.pt", (torch.ones(1),), "tuple")):
        torch.save(obj, tmp_path / name)
        for fn in LOADERS.values():
            refused(fn, tmp_path / name, f"holds a {kind}", "allowed: a dict")


@pytest.mark.parametrize("proto", [2, 4])
def test_pickle_payload_is_refused_and_never_runs(tmp_path, proto):
    marker = tmp_path / "MARKER"
    raw_pickle = tmp_path / "raw.pt"
    raw_pickle.write_bytes(pickle.dumps({"model": Payload(marker)}, protocol=proto))
    zipped = tmp_path / "zip.pt"
    torch.save({"model": Payload(marker), "model_config": {"name": "mlp"}}, zipped)  # save does not run it
    assert not marker.exists()
    for fn in LOADERS.values():
        refused(fn, raw_pickle, "allowed:")
        msg = refused(fn, zipped, "refuses to run", "allowed: tensors, numbers")
        assert "Path" in msg or "write_text" in msg or "GLOBAL" in msg, msg
    assert not marker.exists(), "unpickling ran code from the file"


def test_zip_that_is_not_a_torch_file(tmp_path):
    path = tmp_path / "notes.pt"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("notes.txt", "hello")
        z.writestr("dir/data.pkl", b"\x80\x02}q\x00.")
    for fn in LOADERS.values():
        refused(fn, path, "not a torch checkpoint", "allowed:")


def test_robustfront_checkpoints_missing_or_damaged_keys(tmp_path):
    m = tiny()
    sd, cfg = m.state_dict(), info(m).config
    other = create_model("small_cnn", 5, in_channels=1, input_size=8, width=2).state_dict()
    cases = {
        "no_config.pt": ({"model": sd}, "lacks ['model_config']"),
        "no_model.pt": ({"model_config": cfg}, "lacks ['model']"),
        "nothing.pt": ({"epoch": 3}, "lacks ['model', 'model_config']"),
        "cfg_list.pt": ({"model": sd, "model_config": [1, 2]}, "model_config=[1, 2]"),
        "cfg_noname.pt": ({"model": sd, "model_config": {"width": 2}}, "allowed: a dict with a model 'name'"),
        "cfg_unknown.pt": ({"model": sd, "model_config": {**cfg, "name": "vit_huge"}}, "unknown model 'vit_huge'"),
        "cfg_badtype.pt": ({"model": sd, "model_config": {**cfg, "width": "abc"}}, "width='abc' is invalid"),
        "cfg_hidden.pt": ({"model": sd, "model_config": {**cfg, "num_classes": "3"}}, "num_classes='3' is invalid"),
        "cfg_badopt.pt": ({"model": sd, "model_config": {**cfg, "depth": 3}}, "unknown option 'depth'"),
        "cfg_huge.pt": ({"model": sd, "model_config": {**cfg, "width": 10**7}}, "allowed: smaller sizes"),  # refused before allocating
        "sd_list.pt": ({"model": [1], "model_config": cfg}, "not a state dict of tensors"),
        "sd_values.pt": ({"model": {"x": 1}, "model_config": cfg}, "not a state dict of tensors"),
        "sd_shapes.pt": ({"model": other, "model_config": cfg}, "shape mismatch(es): classifier.weight"),
        "sd_missing.pt": ({"model": {k: v for k, v in sd.items() if "classifier" not in k}, "model_config": cfg},
                          "2 missing key(s): classifier.bias, classifier.weight"),
    }
    for name, (obj, needle) in cases.items():
        torch.save(obj, tmp_path / name)
        t0 = time.perf_counter()
        refused(load_model, tmp_path / name, needle)
        assert time.perf_counter() - t0 < 5, "a damaged config must be refused before building a huge model"


def test_load_refuses_a_device_that_is_not_there(tmp_path):
    good = good_checkpoint(tmp_path / "good.pt")
    with pytest.raises(ValueError) as e:
        ckpt.load(good, "gpu7")
    assert "device='gpu7'" in str(e.value) and "\n" not in str(e.value)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="device='cuda' is not available"):
            ckpt.load(good, "cuda")


def test_read_state_dict_names_the_file_when_no_state_dict_is_inside(tmp_path):
    path = tmp_path / "meta.pt"
    torch.save({"epoch": 3, "note": "no tensors"}, path)
    refused(read_state_dict, path, "found no state dict", "allowed:")
    loop = {"epoch": 1}
    loop["model"] = loop  # a dict holding itself: must not loop forever
    torch.save(loop, tmp_path / "loop.pt")
    refused(read_state_dict, tmp_path / "loop.pt", "found no state dict")
    torch.save({"model": {"model": {"net": {"x": 1}}}}, tmp_path / "deep.pt")
    refused(read_state_dict, tmp_path / "deep.pt", "found no state dict")


def test_good_files_load(tmp_path):
    good = good_checkpoint(tmp_path / "good.pt")
    legacy = tmp_path / "legacy.pt"
    torch.save(torch.load(good, weights_only=True), legacy, _use_new_zipfile_serialization=False)
    for p in (good, legacy):
        assert set(ckpt.load(p)) == {"model", "model_config", "epoch"}
        model = load_model(p)
        assert not model.training and model(torch.zeros(2, 1, 8, 8)).shape == (2, 3)
        assert set(read_state_dict(p)) == set(tiny().state_dict())


# ---------------------------------------------------------------- atomic saves and their test hooks

def test_save_atomic_leaves_old_file_and_no_temp_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "ck" / "last.pt"
    ckpt.save_atomic({"v": torch.ones(1)}, path)

    def boom(obj, f):
        Path(f).write_bytes(b"half")
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError):
        ckpt.save_atomic({"v": torch.zeros(1)}, path)
    monkeypatch.undo()
    assert torch.equal(ckpt.load(path)["v"], torch.ones(1))
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]


def test_slow_save_hooks_and_temp_cleanup(tmp_path, monkeypatch, capsys):
    """ROBUSTFRONT_TEST_SLOW_SAVE holds the finished temp file before the rename (a kill there leaves
    the old file and a stray temp, which clean_temp_files removes); ..._AFTER sleeps after it."""
    path = tmp_path / "last.pt"
    monkeypatch.setenv("ROBUSTFRONT_TEST_SLOW_SAVE", "0.3")
    seen = []
    real_replace = os.replace

    def spy(src, dst):
        seen.append((Path(src).name, Path(src).exists(), path.exists()))
        return real_replace(src, dst)
    monkeypatch.setattr(os, "replace", spy)
    t0 = time.perf_counter()
    ckpt.save_atomic({"a": 1}, path)
    assert time.perf_counter() - t0 >= 0.3
    (name, existed, final_existed), = seen
    assert name.startswith(".last.pt.") and name.endswith(ckpt.TMP_SUFFIX) and existed and not final_existed
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("robustfront test hook: ROBUSTFRONT_TEST_SLOW_SAVE holding ") and name in line
    monkeypatch.delenv("ROBUSTFRONT_TEST_SLOW_SAVE")
    monkeypatch.setenv("ROBUSTFRONT_TEST_SLOW_SAVE_AFTER", "0.2")
    t0 = time.perf_counter()
    ckpt.write_text_atomic(tmp_path / "metrics.txt", "x")  # text writes are not slowed
    assert time.perf_counter() - t0 < 0.2
    ckpt.save_atomic({"a": 2}, path)
    assert time.perf_counter() - t0 >= 0.2 and ckpt.load(path)["a"] == 2
    assert capsys.readouterr().err.strip() == f"robustfront test hook: ROBUSTFRONT_TEST_SLOW_SAVE_AFTER after writing {path}"
    stray = tmp_path / ".last.pt.abc123.tmp"
    stray.write_bytes(b"partial")
    assert ckpt.clean_temp_files(tmp_path) == [stray] and not stray.exists() and path.exists()


# ---------------------------------------------------------------- fuzz

FUZZ = settings(deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
_TEMPLATE = {}


def template() -> bytes:
    if not _TEMPLATE:
        with tempfile.TemporaryDirectory() as d:
            _TEMPLATE["raw"] = good_checkpoint(Path(d) / "t.pt").read_bytes()
    return _TEMPLATE["raw"]


def outcome(path: Path) -> None:
    """Each loader gives a valid result or one line naming the file."""
    for name, fn in LOADERS.items():
        try:
            r = fn(path)
        except (ValueError, FileNotFoundError) as e:
            check_one_line(e, path)
            continue
        if name == "load":
            assert isinstance(r, dict)
        elif name == "load_model":
            assert isinstance(r, torch.nn.Module) and not r.training
        else:
            assert isinstance(r, dict) and all(isinstance(v, torch.Tensor) for v in r.values())


def _write(data: bytes) -> Path:
    fd, name = tempfile.mkstemp(suffix=".pt", prefix="rf-fuzz-")
    os.write(fd, data)
    os.close(fd)
    return Path(name)


@settings(FUZZ, max_examples=150)
@given(flips=st.lists(st.tuples(st.integers(0, 10**9), st.integers(0, 7)), min_size=1, max_size=6),
       cut=st.one_of(st.none(), st.integers(0, 10**9)))
def test_fuzz_bit_flips_and_truncation(flips, cut):
    raw = bytearray(template())
    for pos, bit in flips:
        raw[pos % len(raw)] ^= 1 << bit
    if cut is not None:
        raw = raw[: cut % len(raw)]
    path = _write(bytes(raw))
    try:
        outcome(path)
    finally:
        path.unlink()


@settings(FUZZ, max_examples=60)
@given(data=st.binary(max_size=300), prefix=st.sampled_from([b"", b"PK\x03\x04", b"\x80\x02", b"\x80\x04",
                                                             b"<html>", b"\x08\x00\x00\x00\x00\x00\x00\x00{"]))
def test_fuzz_random_bytes(data, prefix):
    path = _write(prefix + data)
    try:
        outcome(path)
    finally:
        path.unlink()


LEAF = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(), st.text(max_size=5),
                 st.builds(torch.zeros, st.integers(0, 3)), st.sampled_from(["small_cnn", "mlp", "model", "name"]))
OBJ = st.recursive(LEAF, lambda kids: st.one_of(
    st.lists(kids, max_size=3), st.tuples(kids, kids),
    st.dictionaries(st.sampled_from(["model", "model_config", "name", "state_dict", "width", "num_classes",
                                     "in_channels", "input_size", "hidden", "x"]), kids, max_size=4)), max_leaves=8)


@settings(FUZZ, max_examples=100)
@given(obj=OBJ, wrap=st.booleans())
def test_fuzz_torch_save_of_random_objects(obj, wrap):
    """Valid torch files holding random objects, alone or as the model_config / model of a checkpoint."""
    m = tiny()
    if wrap:
        obj = {"model": m.state_dict(), "model_config": obj} if isinstance(obj, dict) else {"model": obj,
                                                                                            "model_config": info(m).config}
    buf = io.BytesIO()
    torch.save(obj, buf)
    path = _write(buf.getvalue())
    try:
        outcome(path)
    finally:
        path.unlink()


# ---------------------------------------------------------------- outputs, the run lock, results that cannot be lost

def test_output_paths_are_checked_before_any_work(tmp_path):
    (tmp_path / "file.txt").write_text("x")
    for bad, needle in (("", "non-empty"), ("   ", "non-empty"), (None, "non-empty"), (tmp_path / "file.txt", "is a file"),
                        (tmp_path / "file.txt" / "run", "is not a folder"), ("/dev/null/run", "is not a folder")):
        with pytest.raises(ValueError) as e:
            ckpt.check_out_dir(bad)
        assert needle in str(e.value) and "\n" not in str(e.value) and "out=" in str(e.value), str(e.value)
    for bad, needle in ((tmp_path, "is a folder"), ("/dev/full", "not a regular file"), ("/dev/null", "not a regular"),
                        ("/dev/null/x.json", "is not a folder"), ("", "non-empty")):
        with pytest.raises(ValueError) as e:
            ckpt.check_out_file(bad)
        assert needle in str(e.value) and "\n" not in str(e.value), str(e.value)
    assert ckpt.check_out_dir(tmp_path / "a" / "b") == tmp_path / "a" / "b" and not (tmp_path / "a").exists()
    assert ckpt.check_out_file(tmp_path / "r" / "x.json").name == "x.json" and not (tmp_path / "r").exists()


def test_atomic_writes_never_replace_a_device(tmp_path):
    with pytest.raises(ValueError, match="not a regular file"):
        ckpt.write_text_atomic("/dev/null", "x")
    assert Path("/dev/null").is_char_device()


def test_run_lock_refuses_a_second_writer_with_the_holders_pid(tmp_path):
    """flock conflicts between two open files even in one process, so the second writer is simulated here."""
    with FolderLock(tmp_path / "run"):
        assert (tmp_path / "run" / ".lock").read_text().strip() == str(os.getpid())
        with pytest.raises(ValueError) as e:
            FolderLock(tmp_path / "run").__enter__()
        msg = str(e.value)
        assert f"(PID {os.getpid()})" in msg and "in use" in msg and str(tmp_path / "run") in msg and "\n" not in msg
    with FolderLock(tmp_path / "run"):  # released on exit
        pass


def test_run_lock_of_a_killed_holder_is_not_stale(tmp_path):
    import signal
    import subprocess
    import sys
    code = ("import sys, time; from robustfront.state import FolderLock\n"
            "FolderLock(sys.argv[1]).__enter__(); print('locked', flush=True); time.sleep(60)\n")
    p = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "run")], stdout=subprocess.PIPE, text=True,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert p.stdout.readline().strip() == "locked"
    with pytest.raises(ValueError, match=f"PID {p.pid}"):
        FolderLock(tmp_path / "run").__enter__()
    p.send_signal(signal.SIGKILL)
    p.wait(30)
    with FolderLock(tmp_path / "run"):
        assert (tmp_path / "run" / ".lock").read_text().strip() == str(os.getpid())


def test_save_result_falls_back_and_says_where(tmp_path):
    res = {"clean_acc": 0.5}
    assert json.loads(ckpt.save_result(res, tmp_path / "out" / "r.json", tmp_path).read_text()) == res
    with pytest.raises(ValueError) as e:
        ckpt.save_result(res, "/dev/null/r.json", tmp_path / "run")
    msg = str(e.value)
    saved = list((tmp_path / "run").glob("r-*.json"))   # a new name: an earlier result is never overwritten
    assert "\n" not in msg and "/dev/null/r.json" in msg and len(saved) == 1 and str(saved[0]) in msg
    assert json.loads(saved[0].read_text()) == res


def test_model_options_of_the_wrong_type_are_one_line():
    """Found by the CLI fuzz: width=2.5 reached nn.Conv2d ('out_channels must be divisible by groups'),
    width='abc' a comparison (TypeError), width=10**30 torch.empty (TypeError)."""
    cases = (("small_cnn", {"width": 2.5}, "width=2.5 is invalid"), ("small_cnn", {"width": "abc"}, "width='abc'"),
             ("small_cnn", {"width": True}, "width=True"), ("mlp", {"hidden": "abc"}, "hidden='abc'"),
             ("mlp", {"hidden": [8, -1]}, "hidden=[8, -1]"), ("mlp", {"dropout": "x"}, "dropout='x'"),
             ("small_cnn", {"width": 10**30}, "cannot be built"), ("mlp", {"hidden": [10**30]}, "cannot be built"))
    for name, kw, needle in cases:
        with pytest.raises(ValueError) as e:
            create_model(name, 10, **kw)
        assert needle in str(e.value) and "\n" not in str(e.value), str(e.value)
    assert info(create_model("mlp", 10, hidden=[], dropout=0)).config["hidden"] == []


def test_load_maps_cpu_n_and_refuses_meta_and_absent_mps(tmp_path):
    """Found by the CLI fuzz: map_location 'cpu:0' failed inside torch.load, 'meta' loaded tensors the
    model could not take, 'mps' crashed on a machine without it."""
    good = good_checkpoint(tmp_path / "good.pt")
    assert load_model(good, "cpu") is not None and "model" in ckpt.load(good, "cpu:0")
    for device in ("meta", "xla", "") + (() if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
                                         else ("mps",)):
        with pytest.raises(ValueError) as e:
            ckpt.load(good, device)
        assert f"device={device!r}" in str(e.value) and "\n" not in str(e.value)

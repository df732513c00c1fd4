"""Bad data files and archives: every one ends in ONE ValueError/FileNotFoundError line naming the
file and what is allowed; unsafe archives write nothing outside the cache; an interrupted
extraction or decode never leaves anything that looks complete. Explicit cases first, then a
hypothesis fuzzer over random trees, archives and CIFAR pickles (derandomized, tiny examples)."""
import io
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from PIL import Image

import robustfront.data as D
from robustfront.data import _cache, images, load_dataset
from robustfront.data.images import check_memory
from robustfront.models.weights import check_input_fits

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def cache(tmp_path_factory, monkeypatch):
    d = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("ROBUSTFRONT_CACHE", str(d))
    return d


def one_line(excinfo, *needles):
    """The error is one line and names every needle (the file, the value, what is allowed)."""
    msg = str(excinfo.value)
    assert "\n" not in msg and msg.strip() == msg and msg, msg
    for n in needles:
        assert str(n) in msg, (n, msg)
    return msg


def png_bytes(value=100, size=(4, 4)):
    buf = io.BytesIO()
    Image.new("RGB", size, (value, 0, 255 - value)).save(buf, "PNG")
    return buf.getvalue()


def tree(root: Path, classes=("a", "b"), n=2, size=(4, 4), test="test"):
    for split in ("train", test):
        for i, c in enumerate(classes):
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for j in range(n):
                (root / split / c / f"{j}.png").write_bytes(png_bytes(40 * (i + 1), size))
    return root


def tgz(src: Path, out: Path, arcname="mini", mode="w:gz"):
    with tarfile.open(out, mode) as t:
        t.add(src, arcname=arcname)
    return out


def zipped(src: Path, out: Path):
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for f in sorted(src.rglob("*")):
            z.write(f, f.relative_to(src.parent))
    return out


def nothing_complete(cache_dir: Path):
    """No cache entry looks finished unless it carries the completion marker, and no build dirs remain."""
    for kind in ("extracted", "arrays"):
        for d in (cache_dir / kind).glob("*") if (cache_dir / kind).is_dir() else []:
            assert d.name.startswith(".tmp-") is False, f"build dir left: {d}"
            assert (d / _cache.MARKER).is_file(), f"incomplete entry looks final: {d}"


# ---------------------------------------------------------------- archives

def test_truncated_empty_and_random_tgz(tmp_path, cache):
    good = tgz(tree(tmp_path / "src" / "mini"), tmp_path / "good.tar.gz")
    raw = good.read_bytes()
    cases = {"trunc.tar.gz": raw[: len(raw) // 2], "empty.tar.gz": b"", "tgz-tail.tgz": raw[:-40],
             "random.tar.gz": np.random.default_rng(0).bytes(500), "text.tar": b"hello, I am not a tar\n" * 30}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ValueError) as e:
            load_dataset(tmp_path / name)
        msg = one_line(e, tmp_path / name, "allowed:")
        assert any(w in msg for w in ("truncated", "empty", "not an archive")), msg
    nothing_complete(cache)


def test_corrupt_and_fake_zip(tmp_path, cache):
    good = zipped(tree(tmp_path / "src" / "mini"), tmp_path / "good.zip")
    raw = bytearray(good.read_bytes())
    with zipfile.ZipFile(good) as z:  # flip a byte inside the first member's compressed data
        info = z.infolist()[-1]
        start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    raw[start + 2] ^= 0xFF
    (tmp_path / "crc.zip").write_bytes(bytes(raw))
    (tmp_path / "fake.zip").write_text("PK but not really a zip\n")
    (tmp_path / "half.zip").write_bytes(bytes(raw[: len(raw) // 2]))
    for name in ("crc.zip", "fake.zip", "half.zip"):
        with pytest.raises(ValueError) as e:
            load_dataset(tmp_path / name)
        one_line(e, tmp_path / name, "allowed:")
    nothing_complete(cache)


def _evil_tar(path: Path, sentinel: Path, kind: str):
    with tarfile.open(path, "w") as t:
        t.add(tree(path.parent / f"src-{kind}" / "mini"), arcname="mini")
        if kind == "abs-symlink":
            m = tarfile.TarInfo("mini/train/a/evil.png")
            m.type, m.linkname = tarfile.SYMTYPE, "/etc/passwd"
            t.addfile(m)
        elif kind == "rel-symlink-out":
            m = tarfile.TarInfo("mini/out")
            m.type, m.linkname = tarfile.SYMTYPE, "../../../../../../../../" + str(sentinel).lstrip("/")
            t.addfile(m)
            data = b"pwned"
            m = tarfile.TarInfo("mini/out/pwned.txt")
            m.size = len(data)
            t.addfile(m, io.BytesIO(data))
        elif kind == "hardlink-out":
            m = tarfile.TarInfo("mini/train/a/hard.png")
            m.type, m.linkname = tarfile.LNKTYPE, str(sentinel / "target")
            t.addfile(m)
        else:
            name = {"dotdot": "../../pwned.txt", "abs-path": str(sentinel / "pwned.txt"),
                    "inner-dotdot": "mini/../../../pwned.txt"}[kind]
            data = b"pwned"
            m = tarfile.TarInfo(name)
            m.size = len(data)
            t.addfile(m, io.BytesIO(data))
    return path


@pytest.mark.parametrize("kind", ["abs-symlink", "rel-symlink-out", "hardlink-out", "dotdot", "abs-path",
                                  "inner-dotdot"])
def test_unsafe_tar_members_are_refused_and_nothing_escapes(tmp_path, cache, kind):
    sentinel = tmp_path / "sentinel"
    sentinel.mkdir()
    (sentinel / "target").write_text("secret")
    before = sorted(p.name for p in cache.parent.iterdir())
    archive = _evil_tar(tmp_path / f"{kind}.tar", sentinel, kind)
    with pytest.raises(ValueError) as e:
        load_dataset(archive)
    msg = one_line(e, archive, "unsafe member", "allowed:")
    assert "nothing outside the cache was written" in msg
    assert sorted(p.name for p in sentinel.iterdir()) == ["target"]
    assert (sentinel / "target").read_text() == "secret"
    assert not list(cache.rglob("pwned.txt")) and not (cache.parent / "pwned.txt").exists()
    assert sorted(p.name for p in cache.parent.iterdir()) == before
    nothing_complete(cache)


@pytest.mark.parametrize("member", ["../pwned.txt", "/tmp/robustfront-pwned.txt", "mini/../../pwned.txt"])
def test_unsafe_zip_members_are_refused(tmp_path, cache, member):
    archive = zipped(tree(tmp_path / "src" / "mini"), tmp_path / "evil.zip")
    with zipfile.ZipFile(archive, "a") as z:
        z.writestr(member, b"pwned")
    with pytest.raises(ValueError) as e:
        load_dataset(archive)
    one_line(e, archive, "unsafe member", repr(member))
    assert not list(cache.parent.rglob("pwned.txt")) and not Path("/tmp/robustfront-pwned.txt").exists()
    nothing_complete(cache)


def test_interrupted_extraction_leaves_nothing_complete_and_is_redone(tmp_path, cache, monkeypatch):
    archive = tgz(tree(tmp_path / "src" / "mini"), tmp_path / "mini.tar.gz")
    real = _cache._unpack

    def dies_halfway(a, dest, tick=None):
        real(a, dest, tick)
        (dest / "half").write_text("x")
        raise KeyboardInterrupt  # like Ctrl-C after the members were written, before the marker
    monkeypatch.setattr(_cache, "_unpack", dies_halfway)
    with pytest.raises(KeyboardInterrupt):
        load_dataset(archive)
    assert not list((cache / "extracted").iterdir())  # neither a final dir nor a build dir
    monkeypatch.setattr(_cache, "_unpack", real)
    ds = load_dataset(archive)
    assert ds.classes == ["a", "b"] and len(ds.y_test) == 4
    nothing_complete(cache)


KILL_DRIVER = """
import sys, time
from robustfront.data import images
real = images._read
def slow(p, size):
    print("decoding", flush=True)
    time.sleep(0.5)
    return real(p, size)
images._read = slow
from robustfront.data import load_dataset
load_dataset(sys.argv[1])
"""


def test_kill_during_decode_leaves_nothing_complete_and_the_next_load_works(tmp_path, cache):
    """kill -9 a process mid-decode: its build folder never looks complete, the next load removes it
    (its pid is gone) and decodes everything again, equal to a load never interrupted."""
    src = tree(tmp_path / "t", n=3)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ROBUSTFRONT_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
    p = subprocess.Popen([sys.executable, "-c", KILL_DRIVER, str(src)], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "decoding"
        time.sleep(0.3)
        p.send_signal(signal.SIGKILL)
    finally:
        p.wait(30)
    builds = list((cache / "arrays").glob(".tmp-*"))
    assert builds and not any((b / _cache.MARKER).exists() for b in builds)
    assert not [d for d in (cache / "arrays").iterdir() if not d.name.startswith(".tmp-")]
    ds = load_dataset(src, val_size=0)
    assert not list((cache / "arrays").glob(".tmp-*"))  # the dead process's build dir is gone
    nothing_complete(cache)
    fresh = load_dataset(src, val_size=0, cache_dir=tmp_path / "other-cache")
    np.testing.assert_array_equal(ds.x_train, fresh.x_train)
    np.testing.assert_array_equal(ds.y_test, fresh.y_test)


def test_stale_build_of_a_live_process_is_kept(tmp_path):
    final = tmp_path / "arrays" / "x"
    live = tmp_path / "arrays" / f"{_cache._tmp_prefix(final)}{os.getppid()}-abc"
    dead = tmp_path / "arrays" / f"{_cache._tmp_prefix(final)}999999999-abc"
    live.mkdir(parents=True)
    dead.mkdir()
    assert _cache.clean_stale_builds(final) == [dead]
    assert live.is_dir() and not dead.exists()


def test_damaged_cache_entry_is_rebuilt(tmp_path, cache):
    src = tree(tmp_path / "t")
    first = load_dataset(src, val_size=0)
    (entry,) = (cache / "arrays").iterdir()
    (entry / "x_train.npy").write_bytes((entry / "x_train.npy").read_bytes()[:60])  # marker still there
    again = load_dataset(src, val_size=0)
    np.testing.assert_array_equal(again.x_train, first.x_train)


def test_unwritable_cache_is_one_line(tmp_path, monkeypatch):
    src = tgz(tree(tmp_path / "src" / "mini"), tmp_path / "mini.tar.gz")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("ROBUSTFRONT_CACHE", str(blocker / "cache"))
    with pytest.raises(ValueError) as e:
        load_dataset(src)
    one_line(e, "cannot write the cache folder", blocker, "ROBUSTFRONT_CACHE")


# ---------------------------------------------------------------- image trees

def test_truncated_png_and_text_named_jpg(tmp_path):
    a = tree(tmp_path / "a", size=(16, 16))
    big = a / "train" / "b" / "1.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(big)
    big.write_bytes(big.read_bytes()[:-60])  # header intact, pixel data cut: "image file is truncated"
    with pytest.raises(ValueError) as e:
        load_dataset(a)
    one_line(e, big, "truncated or not an image", "allowed:")
    b = tree(tmp_path / "b")
    (b / "test" / "a" / "0.jpg").write_text("I am text, not a JPEG\n")
    with pytest.raises(ValueError) as e:
        load_dataset(b)
    one_line(e, b / "test" / "a" / "0.jpg", "not an image")
    c = tree(tmp_path / "c")
    (c / "train" / "a" / "0.png").write_bytes(b"")
    with pytest.raises(ValueError) as e:
        load_dataset(c)
    one_line(e, c / "train" / "a" / "0.png")


def test_image_folders_without_images_one_class_or_inconsistent_splits(tmp_path):
    cases = {}
    (tmp_path / "none" / "train" / "a").mkdir(parents=True)
    (tmp_path / "none" / "train" / "b").mkdir(parents=True)
    (tmp_path / "none" / "test" / "a").mkdir(parents=True)
    (tmp_path / "none" / "train" / "a" / "notes.txt").write_text("not an image")
    cases["none"] = ("hold no images", "allowed:")
    tree(tmp_path / "one", classes=("only",))
    cases["one"] = ("1 class folder", "at least 2")
    t = tree(tmp_path / "extra")
    (t / "test" / "zebra").mkdir()
    cases["extra"] = ("'zebra'", "not in")
    t = tree(tmp_path / "sizes")
    for f in (t / "test" / "a").iterdir():
        f.write_bytes(png_bytes(size=(5, 5)))
    for f in (t / "test" / "b").iterdir():
        f.write_bytes(png_bytes(size=(5, 5)))
    cases["sizes"] = ("train examples are [3, 4, 4] but test examples [3, 5, 5]", "resize")
    t = tree(tmp_path / "notest")
    shutil.rmtree(t / "test")
    cases["notest"] = ("no test/ or val/ folder", "allowed:")
    t = tree(tmp_path / "emptytest")
    for f in (t / "test").rglob("*.png"):
        f.unlink()
    cases["emptytest"] = ("no images found", "test")
    for name, needles in cases.items():
        with pytest.raises(ValueError) as e:
            load_dataset(tmp_path / name)
        one_line(e, tmp_path / name, *needles)


def test_missing_path_is_said_not_to_exist_and_a_typo_is_an_unknown_name(tmp_path):
    for spec in (tmp_path / "nope", str(tmp_path / "nope" / "data"), "./no-such-folder", "~/no-such-robustfront-dir",
                 "missing.tar.gz"):
        with pytest.raises(FileNotFoundError) as e:
            load_dataset(spec)
        msg = one_line(e, "does not exist", "allowed:")
        assert "unknown dataset" not in msg
    with pytest.raises(ValueError) as e:
        load_dataset("digts")
    one_line(e, "unknown dataset 'digts'", "allowed: digits, gaussian")
    for bad in ("", "   ", None, 3):
        with pytest.raises(ValueError) as e:
            load_dataset(bad)
        one_line(e, "data=", "allowed:")


def _permissions_apply() -> bool:
    """False for root (or CAP_DAC_OVERRIDE), which reads files whatever their mode."""
    with tempfile.NamedTemporaryFile() as f:
        os.chmod(f.name, 0)
        try:
            open(f.name).close()
        except PermissionError:
            return True
        return False


@pytest.mark.skipif(not _permissions_apply(), reason="this user reads files whatever their permissions (root)")
def test_unreadable_file_and_folder(tmp_path):
    t = tree(tmp_path / "t")
    f = t / "train" / "a" / "0.png"
    f.chmod(0)
    try:
        with pytest.raises(ValueError) as e:
            load_dataset(t)
        one_line(e, f, "cannot be read")
    finally:
        f.chmod(0o644)
    folder = t / "train" / "b"
    folder.chmod(0)
    try:
        with pytest.raises(ValueError) as e:
            load_dataset(t, cache_dir=tmp_path / "c2")
        one_line(e, folder, "Permission denied")
    finally:
        folder.chmod(0o755)


def test_permission_errors_are_one_line_even_as_root(tmp_path, monkeypatch):
    """The same paths as above with the error injected, so they are checked on a root CI runner too."""
    t = tree(tmp_path / "t")
    real_open = Image.open

    def refuse(path, *a, **k):
        if str(path).endswith("1.png"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *a, **k)
    monkeypatch.setattr(Image, "open", refuse)
    with pytest.raises(ValueError) as e:
        load_dataset(t)
    one_line(e, "1.png", "cannot be read (Permission denied)")
    monkeypatch.setattr(Image, "open", real_open)
    real_walk = os.walk

    def walk(top, *a, **k):
        if str(top).endswith(os.path.join("train", "b")):
            k["onerror"](PermissionError(13, "Permission denied", str(top)))
        return real_walk(top, *a, **k)
    monkeypatch.setattr(os, "walk", walk)
    with pytest.raises(ValueError) as e:
        load_dataset(t, cache_dir=tmp_path / "c2")
    one_line(e, t / "train" / "b", "Permission denied")


@pytest.mark.parametrize("resize", [0, -1, (0, 4), (4, -2), True, 2.5, "8", [4], (4, 4, 4)])
def test_bad_resize_is_refused_before_any_work(tmp_path, resize, monkeypatch):
    t = tree(tmp_path / "t")
    monkeypatch.setattr(D, "decode_files", lambda *a, **k: pytest.fail("decoded before validating resize"))
    for spec in (t, "digits"):
        with pytest.raises(ValueError) as e:
            load_dataset(spec, resize=resize)
        one_line(e, "resize=", "allowed:")


def test_a_resize_that_cannot_fit_in_memory_is_refused_before_decoding(tmp_path, monkeypatch):
    monkeypatch.setattr(images, "available_memory", lambda: 10**9)
    with pytest.raises(ValueError) as e:
        load_dataset("digits", resize=2000)   # 1797 x 2000 x 2000 bytes = 7.2 GB > 1 GB
    one_line(e, "need", "GB, more than the 1 GB", "allowed: a smaller resize")
    with pytest.raises(ValueError) as e:
        load_dataset(tree(tmp_path / "t"), resize=(20000, 20000))
    one_line(e, "GB")
    with pytest.raises(ValueError) as e:
        check_memory(10**12, (3, 32, 32), "x")
    one_line(e, "1000000000000 examples")


def test_seed_val_size_and_gaussian_values(tmp_path):
    for kw, needle in (({"seed": -1}, "seed=-1"), ({"seed": 1.5}, "seed=1.5"), ({"val_size": 1437}, "val_size=1437"),
                       ({"val_size": -1}, "val_size=-1"), ({"val_size": True}, "val_size=True")):
        with pytest.raises(ValueError) as e:
            load_dataset("digits", **kw)
        msg = one_line(e, needle, "allowed:")
        assert "expected non-negative integer" not in msg
    for spec, needle in (("gaussian:sigma=nan", "gaussian sigma='nan'"), ("gaussian:mean_norm=inf", "mean_norm"),
                         ("gaussian:data_seed=-1", "gaussian data_seed=-1"), ("gaussian:dim=abc", "gaussian dim='abc'"),
                         ("gaussian:dim", "gaussian option='dim'"), ("gaussian:sigma=0", "sigma"),
                         ("gaussian:n_train=10000000000000", "need")):
        with pytest.raises(ValueError) as e:
            load_dataset(spec)
        one_line(e, needle)


def test_data_of_another_shape_is_refused_for_a_model():
    small_cnn = {"name": "small_cnn", "num_classes": 10, "in_channels": 1, "input_size": 8}
    check_input_fits(small_cnn, (1, 8, 8), 10)
    for shape, classes, needle in (((3, 32, 32), 10, "shape [3, 32, 32]"), ((1, 16, 16), 10, "built for [1, 8, 8]"),
                                   ((1, 8, 8), 100, "100 classes")):
        with pytest.raises(ValueError) as e:
            check_input_fits(small_cnn, shape, classes, what="dataset 'x'")
        one_line(e, "dataset 'x'", needle, "allowed:")
    flat = {"name": "mlp", "num_classes": 2, "input_shape": [10]}
    check_input_fits(flat, (10,), 2)
    with pytest.raises(ValueError) as e:
        check_input_fits(flat, (1, 8, 8), 2)
    one_line(e, "[1, 8, 8]", "[10]")
    rect = {"name": "small_cnn", "num_classes": 10, "in_channels": 3, "input_size": 16}
    check_input_fits(rect, (3, 16, 8), 10)  # trained on resize=(16, 8): input_size records the height


# ---------------------------------------------------------------- CIFAR pickles

def cifar_folder(root: Path, n=2, **replace):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)

    def batch():
        return {"data": rng.integers(0, 255, (n, 3072), dtype=np.uint8), "labels": list(rng.integers(0, 10, n))}
    files = {f"data_batch_{i}": batch() for i in range(1, 6)}
    files["test_batch"] = batch()
    files["batches.meta"] = {"label_names": [f"c{i}" for i in range(10)]}
    for name, obj in files.items():
        data = replace.get(name)
        (folder / name).write_bytes(data if isinstance(data, bytes) else pickle.dumps(obj, protocol=2))
    return folder


class Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (Path(self.marker), "code ran"))


def test_cifar_pickles_truncated_or_of_the_wrong_structure(tmp_path):
    good = pickle.dumps({"data": np.zeros((2, 3072), np.uint8), "labels": [0, 1]}, protocol=2)
    marker = tmp_path / "MARKER"
    cases = {
        "truncated": (good[: len(good) // 2], "is truncated or not a CIFAR pickle"),
        "empty": (b"", "is truncated or not a CIFAR pickle"),
        "random": (np.random.default_rng(1).bytes(300), "is truncated or not a CIFAR pickle"),
        "a list": (pickle.dumps([1, 2, 3]), "holds a list, not a dict"),
        "no data": (pickle.dumps({"labels": [0, 1]}), "lacks 'data'"),
        "no labels": (pickle.dumps({"data": np.zeros((2, 3072), np.uint8)}), "lacks 'labels'"),
        "wide": (pickle.dumps({"data": np.zeros((2, 100), np.uint8), "labels": [0, 1]}), "not N x 3072 uint8"),
        "floats": (pickle.dumps({"data": np.zeros((2, 3072)), "labels": [0, 1]}), "not N x 3072 uint8"),
        "labels short": (pickle.dumps({"data": np.zeros((2, 3072), np.uint8), "labels": [0]}), "1 labels"),
        "label 10": (pickle.dumps({"data": np.zeros((2, 3072), np.uint8), "labels": [0, 10]}), "outside [0, 9]"),
        "label text": (pickle.dumps({"data": np.zeros((2, 3072), np.uint8), "labels": ["a", "b"]}), "labels of type"),
        "payload": (pickle.dumps({"data": Payload(marker), "labels": [0]}), "refused to load global"),
    }
    for i, (name, (data, needle)) in enumerate(cases.items()):
        folder = cifar_folder(tmp_path / str(i), data_batch_3=data)
        with pytest.raises(ValueError) as e:
            load_dataset(folder)
        one_line(e, folder / "data_batch_3", needle, "allowed:")
        assert not marker.exists(), "the pickle ran code"
    meta = cifar_folder(tmp_path / "meta", **{"batches.meta": pickle.dumps({"label_names": "abc"})})
    with pytest.raises(ValueError) as e:
        load_dataset(meta)
    one_line(e, meta / "batches.meta", "class names")
    ok = load_dataset(cifar_folder(tmp_path / "ok"), val_size=0)
    assert ok.shape == (3, 32, 32) and len(ok.y_train) == 10


# ---------------------------------------------------------------- fuzz: random trees, archives, pickles

FUZZ = settings(deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
NAMES = st.text(alphabet="abcAB01._- é", min_size=1, max_size=6).filter(lambda s: s not in (".", ".."))


def _content(kind: str, rng_bytes: bytes, size: int) -> bytes:
    good = png_bytes(size * 20 % 255, (size, size))
    if kind == "png":
        return good
    if kind == "truncated":
        return good[: max(1, len(good) * 2 // 3)]
    if kind == "jpeg":
        buf = io.BytesIO()
        Image.new("L", (size, size), 128).save(buf, "JPEG")
        return buf.getvalue()
    if kind == "text":
        return b"hello\n"
    if kind == "empty":
        return b""
    return rng_bytes


FILES = st.lists(st.tuples(NAMES, st.sampled_from([".png", ".jpg", ".JPEG", ".txt", ".gif", ""]),
                           st.sampled_from(["png", "png", "png", "jpeg", "truncated", "text", "empty", "random"]),
                           st.binary(max_size=40), st.integers(1, 5)), max_size=4)
TREE = st.dictionaries(st.sampled_from(["train", "test", "val", "extra", "Train"]),
                       st.dictionaries(NAMES, FILES, max_size=3), max_size=3)


def _write_tree(root: Path, spec: dict) -> None:
    for split, classes in spec.items():
        for c, files in classes.items():
            d = root / split / c
            d.mkdir(parents=True, exist_ok=True)
            for stem, ext, kind, raw, size in files:
                (d / f"{stem}{ext}").write_bytes(_content(kind, raw, size))


def _valid(ds) -> None:
    assert len(ds.classes) >= 2 and ds.x_train.dtype == np.uint8
    for x, y in ((ds.x_train, ds.y_train), (ds.x_val, ds.y_val), (ds.x_test, ds.y_test)):
        assert len(x) == len(y) and x.shape[1:] == ds.shape
        assert len(y) == 0 or (0 <= y.min() and y.max() < len(ds.classes))
    assert len(ds.y_test) > 0 and len(ds.y_train) + len(ds.y_val) > 0


def _outcome(call, *names) -> str:
    """Run a load: a valid dataset, or an error that is one line and names one of `names`."""
    try:
        _valid(call())
        return "ok"
    except (ValueError, FileNotFoundError) as e:
        msg = str(e)
        assert "\n" not in msg and msg, repr(msg)
        assert any(str(n) in msg for n in names), (names, msg)
        return "error"


@settings(FUZZ, max_examples=150)
@given(base=st.booleans(), spec=TREE, damage=st.lists(st.tuples(st.integers(0, 100), st.sampled_from(
    ["truncated", "text", "empty", "random", "jpeg", "big"]), st.binary(max_size=40)), max_size=2),
    resize=st.sampled_from([None, None, 3, (2, 5), 0]), val=st.sampled_from([None, 0, 1]))
def test_fuzz_random_image_trees(base, spec, damage, resize, val):
    """A valid tree (or none) with random folders and files added and random files damaged."""
    root = Path(tempfile.mkdtemp(prefix="rf-tree-"))
    try:
        if base:
            tree(root / "data")
        _write_tree(root / "data", spec)
        files = sorted(p for p in (root / "data").rglob("*") if p.is_file())
        for i, kind, raw in damage:
            if files:
                files[i % len(files)].write_bytes(png_bytes(size=(6, 6)) if kind == "big" else _content(kind, raw, 3))
        _outcome(lambda: load_dataset(root / "data", resize=resize, val_size=val, cache_dir=root / "cache"),
                 root / "data", "resize=", "val_size=")
    finally:
        shutil.rmtree(root, ignore_errors=True)


MEMBER = st.tuples(st.sampled_from(["file", "file", "file", "dir", "symlink", "hardlink"]),
                   st.one_of(st.lists(NAMES, min_size=1, max_size=3).map("/".join),
                             st.sampled_from(["../x", "/abs/x", "mini/../../x", "mini/./a", "./y", "a//b"])),
                   st.sampled_from(["png", "text", "random", "empty"]), st.binary(max_size=30),
                   st.sampled_from(["target.png", "../../out", "/etc/passwd", "mini/train"]))


def _write_archive(path: Path, fmt: str, good: Path, members, damage, at: int, junk: bytes) -> None:
    if fmt == "zip":
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
            for f in sorted(good.rglob("*")):
                z.write(f, "mini/" + str(f.relative_to(good)))
            for kind, name, content, raw, _ in members:
                if kind in ("file", "symlink", "hardlink"):
                    z.writestr(name, _content(content, raw, 3))
    else:
        with tarfile.open(path, {"tar": "w", "tgz": "w:gz"}[fmt]) as t:
            t.add(good, arcname="mini")
            for kind, name, content, raw, link in members:
                m = tarfile.TarInfo(name)
                if kind == "file":
                    data = _content(content, raw, 3)
                    m.size = len(data)
                    t.addfile(m, io.BytesIO(data))
                else:
                    m.type = {"dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE, "hardlink": tarfile.LNKTYPE}[kind]
                    m.linkname = link
                    t.addfile(m)
    raw = bytearray(path.read_bytes())
    if damage == "truncate":
        raw = raw[: at % max(1, len(raw))]
    elif damage == "flip" and raw:
        for i in range(3):
            raw[(at * (i + 7)) % len(raw)] ^= 1 << (at + i) % 8
    elif damage == "random":
        raw = bytearray(junk)
    path.write_bytes(bytes(raw))


@pytest.mark.filterwarnings("ignore:Duplicate name")
@settings(FUZZ, max_examples=150)
@given(fmt=st.sampled_from(["tar", "tgz", "zip"]), members=st.lists(MEMBER, max_size=3),
       damage=st.sampled_from(["none", "none", "truncate", "flip", "random"]), at=st.integers(0, 10**6),
       junk=st.binary(max_size=200))
def test_fuzz_random_archives(fmt, members, damage, at, junk):
    """Random members (incl. '..', absolute names and links) in a valid tree, then damage: a valid
    dataset or one line naming the archive; never a file outside the extraction folder."""
    root = Path(tempfile.mkdtemp(prefix="rf-arc-"))
    try:
        good = tree(root / "src" / "mini")
        archive = root / "in" / f"set.{'tar.gz' if fmt == 'tgz' else fmt}"
        archive.parent.mkdir()
        _write_archive(archive, fmt, good, members, damage, at, junk)
        cache_dir = root / "cache"
        _outcome(lambda: load_dataset(archive, cache_dir=cache_dir), archive.name)
        outside = [p for p in root.rglob("*") if p.name in ("x", "y", "out") and cache_dir not in p.parents]
        assert not outside and not Path("/abs/x").exists()
        nothing_complete(cache_dir)
    finally:
        shutil.rmtree(root, ignore_errors=True)


LEAF = st.one_of(st.none(), st.booleans(), st.integers(-2, 300), st.floats(allow_nan=True), st.text(max_size=4),
                 st.binary(max_size=8), st.builds(lambda n, w: np.zeros((n, w), np.uint8), st.integers(0, 3),
                                                  st.sampled_from([1, 3072, 3073])))
OBJ = st.recursive(LEAF, lambda kids: st.one_of(st.lists(kids, max_size=3),
                                                 st.dictionaries(st.sampled_from(["data", "labels", b"data",
                                                                                  b"labels", "x"]), kids,
                                                                 max_size=3)), max_leaves=6)


BATCH = st.builds(lambda n, w, labels, key: {key: np.zeros((n, w), np.uint8), "labels": labels[:n] + [0] * (n - len(labels))},
                  st.integers(0, 3), st.sampled_from([3072, 3072, 3071]), st.lists(st.integers(-1, 10), max_size=4),
                  st.sampled_from(["data", "data", b"data", "Data"]))
META = st.builds(lambda names: {"label_names": names}, st.lists(st.one_of(st.text(max_size=3), st.binary(max_size=3)),
                                                                 max_size=12))


@settings(FUZZ, max_examples=120)
@given(which=st.sampled_from(["data_batch_1", "test_batch", "batches.meta"]), obj=st.one_of(OBJ, BATCH, META),
       damage=st.sampled_from(["none", "none", "truncate"]), at=st.integers(0, 10**4), proto=st.sampled_from([2, 4, 5]))
def test_fuzz_cifar_pickles(which, obj, damage, at, proto):
    """One file of a valid CIFAR-10 folder replaced by a random object, a near-valid batch or meta, or
    a truncated pickle."""
    root = Path(tempfile.mkdtemp(prefix="rf-cifar-"))
    try:
        data = pickle.dumps(obj, protocol=proto)
        if damage == "truncate":
            data = data[: at % len(data)]
        folder = cifar_folder(root, **{which: data})
        _outcome(lambda: load_dataset(folder, cache_dir=root / "cache"), folder / which)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_failed_download_is_one_line_and_keeps_nothing(tmp_path, monkeypatch):
    from robustfront.data import download
    monkeypatch.setitem(download.URLS, "cifar10", ((tmp_path / "missing.tar.gz").as_uri(), "0" * 32))
    with pytest.raises(ValueError) as e:
        load_dataset("cifar10", root=tmp_path / "dl", download=True)
    one_line(e, "download of", "missing.tar.gz", "failed", "allowed:")
    assert not list((tmp_path / "dl").glob("*.part"))


def test_archive_with_no_dataset_layout_names_the_archive(tmp_path):
    """Found by the archive fuzzer: the layout error named only the cache folder it was extracted to."""
    (tmp_path / "src" / "notes").mkdir(parents=True)
    (tmp_path / "src" / "notes" / "a.txt").write_text("hi")
    archive = tgz(tmp_path / "src", tmp_path / "notes.tar.gz", arcname="x")
    with pytest.raises(ValueError) as e:
        load_dataset(archive)
    one_line(e, f"archive '{archive}'", "unrecognised dataset layout", "allowed:")


def test_cifar_pickles_written_by_python3_with_bytes_load(tmp_path):
    """Found by the CIFAR fuzzer: protocol-2 pickles of bytes go through __builtin__.bytes / _codecs.encode."""
    folder = cifar_folder(tmp_path, **{"batches.meta": pickle.dumps({b"label_names": [f"c{i}".encode()
                                                                                      for i in range(10)]},
                                                                     protocol=2)})
    assert load_dataset(folder, val_size=0).classes == [f"c{i}" for i in range(10)]

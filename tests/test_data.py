"""robustfront.data: readers on files written here, caching, splits and DeviceLoader."""
import hashlib
import pickle
import tarfile
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

import robustfront.data as D
from robustfront.data import DeviceLoader, dataset_info, load_dataset
from robustfront.data import _cache, download

CLASSES = ["cat", "ant", "bee"]  # written unsorted: readers must sort them


@pytest.fixture(autouse=True)
def cache(tmp_path_factory, monkeypatch):
    d = tmp_path_factory.mktemp("cache")  # outside tmp_path, which tests scan as a dataset
    monkeypatch.setenv("ROBUSTFRONT_CACHE", str(d))
    return d


def _img(value, size=(6, 5), mode="RGB"):
    return Image.new(mode, (size[1], size[0]), value if mode == "L" else (value, value // 2, 255 - value))


def write_tree(root, fmt="png", test_name="test", n_train=4, n_test=2):
    """root/train/<class>/*.<fmt>, root/<test_name>/<class>/*; pixel value encodes the class."""
    for split, n in (("train", n_train), (test_name, n_test)):
        for c in CLASSES:
            d = root / split / c
            d.mkdir(parents=True)
            for j in range(n):
                _img(40 * (sorted(CLASSES).index(c) + 1)).save(d / f"{j}.{fmt}")
    return root


def check_tree(ds, n_train=4, n_test=2, shape=(3, 6, 5)):
    assert ds.classes == sorted(CLASSES)
    assert ds.shape == shape and ds.x_train.dtype == np.uint8 and ds.y_train.dtype == np.int64
    assert len(ds.y_train) + len(ds.y_val) == 3 * n_train and len(ds.y_test) == 3 * n_test
    for x, y in ((ds.x_train, ds.y_train), (ds.x_test, ds.y_test)):
        np.testing.assert_array_equal(x[:, 0, 0, 0], 40 * (y + 1))


def write_cifar(root, kind="cifar10", n=4, bytes_keys=False):
    """Tiny pickles in the official layout; image i of a batch is filled with its label."""
    k = (lambda s: s.encode()) if bytes_keys else (lambda s: s)
    ncls = 10 if kind == "cifar10" else 100

    def batch(labels):
        data = np.repeat(np.asarray(labels, np.uint8)[:, None], 3072, axis=1)
        return {k("data"): data, k("labels" if kind == "cifar10" else "fine_labels"): list(labels)}

    def dump(obj, path):
        with open(path, "wb") as f:
            pickle.dump(obj, f)

    folder = root / D.FOLDERS[kind]
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    if kind == "cifar10":
        for i in range(1, 6):
            dump(batch(rng.integers(0, ncls, n)), folder / f"data_batch_{i}")
        dump(batch(rng.integers(0, ncls, n)), folder / "test_batch")
        dump({k("label_names"): [f"c{i}" for i in range(ncls)]}, folder / "batches.meta")
    else:
        dump(batch(rng.integers(0, ncls, 5 * n)), folder / "train")
        dump(batch(rng.integers(0, ncls, n)), folder / "test")
        dump({k("fine_label_names"): [f"f{i}" for i in range(ncls)]}, folder / "meta")
    return folder


def check_cifar(ds, ncls=10, n=4):
    assert ds.shape == (3, 32, 32) and len(ds.classes) == ncls
    assert len(ds.y_train) + len(ds.y_val) == 5 * n and len(ds.y_test) == n
    np.testing.assert_array_equal(ds.x_train[:, 2, 31, 7], ds.y_train)  # CHW order kept


# ---------------------------------------------------------------- CIFAR pickles + download

def test_cifar10_pickles_root_and_paths(tmp_path):
    folder = write_cifar(tmp_path)
    check_cifar(load_dataset("cifar10", root=tmp_path))
    check_cifar(load_dataset(folder))
    check_cifar(load_dataset(str(tmp_path)))
    assert load_dataset("cifar10", root=tmp_path).classes[:2] == ["c0", "c1"]


def test_cifar100_bytes_keys_and_resize(tmp_path):
    write_cifar(tmp_path, "cifar100", bytes_keys=True)
    ds = load_dataset("cifar100", root=tmp_path)
    check_cifar(ds, ncls=100)
    small = load_dataset("cifar100", root=tmp_path, resize=(16, 8))
    assert small.shape == (3, 16, 8)
    np.testing.assert_array_equal(small.x_test[:, 0, 3, 3], ds.y_test)  # constant images stay constant


def test_cifar_missing_without_download(tmp_path):
    with pytest.raises(FileNotFoundError, match="download=True"):
        load_dataset("cifar10", root=tmp_path)


def _fake_archive(tmp_path):
    write_cifar(tmp_path / "src")
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as t:
        t.add(tmp_path / "src" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    return archive, hashlib.md5(archive.read_bytes()).hexdigest()


def test_download_verifies_checksum(tmp_path, monkeypatch):
    archive, md5 = _fake_archive(tmp_path)
    monkeypatch.setitem(download.URLS, "cifar10", (archive.as_uri(), md5))
    check_cifar(load_dataset("cifar10", root=tmp_path / "dl", download=True))
    assert (tmp_path / "dl" / "cifar-10-python.tar.gz").is_file()

    monkeypatch.setitem(download.URLS, "cifar10", (archive.as_uri(), "0" * 32))
    with pytest.raises(ValueError, match="checksum mismatch"):
        load_dataset("cifar10", root=tmp_path / "bad", download=True)
    assert not (tmp_path / "bad" / "cifar-10-batches-py").exists()
    assert not list((tmp_path / "bad").glob("*.part"))


# ---------------------------------------------------------------- image trees and archives

def test_image_folder_png_and_val_name(tmp_path):
    check_tree(load_dataset(write_tree(tmp_path / "a")))
    ds = load_dataset(write_tree(tmp_path / "b", test_name="val"), resize=4)
    assert ds.shape == (3, 4, 4)


def test_image_folder_jpeg_grayscale_to_rgb(tmp_path):
    for split in ("train", "test"):
        for c in ("x", "y"):
            (tmp_path / split / c).mkdir(parents=True)
            for j in range(3):
                _img(200, mode="L").save(tmp_path / split / c / f"{j}.JPEG", quality=95)
    ds = load_dataset(tmp_path, val_size=0)
    assert ds.shape == (3, 6, 5) and ds.classes == ["x", "y"]
    assert np.abs(ds.x_train.astype(int) - 200).max() <= 2


def test_mixed_sizes_need_resize(tmp_path):
    write_tree(tmp_path)
    _img(10, size=(9, 9)).save(tmp_path / "train" / "ant" / "big.png")
    with pytest.raises(ValueError, match="different sizes"):
        load_dataset(tmp_path)
    assert load_dataset(tmp_path, resize=(6, 5)).shape == (3, 6, 5)


def _pack(tmp_path, kind):
    src = write_tree(tmp_path / "src" / "mini")  # the tree sits under one top-level folder
    if kind == "zip":
        archive = tmp_path / "mini.zip"
        with zipfile.ZipFile(archive, "w") as z:
            for f in sorted(src.rglob("*")):
                z.write(f, f.relative_to(src.parent))
    else:
        archive = tmp_path / f"mini.{kind}"
        with tarfile.open(archive, "w:gz" if kind != "tar" else "w") as t:
            t.add(src, arcname="mini")
    return archive


@pytest.mark.parametrize("kind", ["tar.gz", "zip", "tar"])
def test_archive_extracted_once_and_cached(tmp_path, cache, monkeypatch, kind):
    archive = _pack(tmp_path, kind)
    ds = load_dataset(archive)
    check_tree(ds)
    assert ds.name == "mini"
    (extracted,) = (cache / "extracted").iterdir()
    assert (extracted / _cache.MARKER).is_file()
    assert list((cache / "arrays").glob("*/x_train.npy"))

    def boom(*a, **k):
        raise AssertionError("should have hit the cache")
    monkeypatch.setattr(_cache, "unpack", boom)
    monkeypatch.setattr(D, "decode_files", boom)
    again = load_dataset(archive)
    np.testing.assert_array_equal(again.x_train, ds.x_train)
    np.testing.assert_array_equal(again.y_test, ds.y_test)


def test_partial_extraction_is_redone(tmp_path, cache, monkeypatch):
    archive = _pack(tmp_path, "tar.gz")
    load_dataset(archive)
    (extracted,) = (cache / "extracted").iterdir()
    (extracted / _cache.MARKER).unlink()  # as if the process died mid-extraction
    (extracted / "junk").write_text("x")
    calls = []
    real = _cache.unpack
    monkeypatch.setattr(_cache, "unpack", lambda *a: (calls.append(a), real(*a)))
    check_tree(load_dataset(archive))
    assert len(calls) == 1 and (extracted / _cache.MARKER).is_file() and not (extracted / "junk").exists()


def test_changed_source_misses_decoded_cache(tmp_path):
    write_tree(tmp_path / "t")
    load_dataset(tmp_path / "t")
    _img(40).save(tmp_path / "t" / "train" / "ant" / "new.png")
    assert len(load_dataset(tmp_path / "t", val_size=0).y_train) == 13


def test_tiny_imagenet_layout(tmp_path):
    root = tmp_path / "tiny-imagenet-200"
    wnids = ["n02", "n01"]
    (root / "val" / "images").mkdir(parents=True)
    (root / "wnids.txt").write_text("\n".join(wnids) + "\n")
    lines = []
    for i, w in enumerate(sorted(wnids)):
        (root / "train" / w / "images").mkdir(parents=True)
        (root / "train" / w / f"{w}_boxes.txt").write_text("")
        for j in range(3):
            _img(40 * (i + 1), size=(8, 8)).save(root / "train" / w / "images" / f"{w}_{j}.JPEG", quality=100)
        for j in range(2):
            _img(40 * (i + 1), size=(8, 8)).save(root / "val" / "images" / f"val_{i}{j}.JPEG", quality=100)
            lines.append(f"val_{i}{j}.JPEG\t{w}\t0\t0\t8\t8")
    (root / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    ds = load_dataset("tiny-imagenet", root=tmp_path, val_size=0)
    assert ds.classes == ["n01", "n02"] and ds.shape == (3, 8, 8)
    assert len(ds.y_train) == 6 and len(ds.y_test) == 4
    for x, y in ((ds.x_train, ds.y_train), (ds.x_test, ds.y_test)):
        assert np.abs(x[:, 0, 4, 4].astype(int) - 40 * (y + 1)).max() <= 3
    assert load_dataset(root, val_size=0).classes == ds.classes


def test_cub_layout(tmp_path):
    root = tmp_path / "CUB_200_2011"
    names = ["001.Black_footed_Albatross", "002.Laysan_Albatross"]
    rows = []
    for i in range(6):
        rel = f"{names[i % 2]}/img{i}.jpg"
        (root / "images" / names[i % 2]).mkdir(parents=True, exist_ok=True)
        _img(40 * (i % 2 + 1), size=(6 + i, 7)).save(root / "images" / rel, quality=100)
        rows.append((i + 1, rel, i % 2 + 1, int(i < 4)))
    (root / "images.txt").write_text("".join(f"{i} {r}\n" for i, r, _, _ in rows))
    (root / "image_class_labels.txt").write_text("".join(f"{i} {c}\n" for i, _, c, _ in rows))
    (root / "train_test_split.txt").write_text("".join(f"{i} {t}\n" for i, _, _, t in rows))
    (root / "classes.txt").write_text("".join(f"{i + 1} {n}\n" for i, n in enumerate(names)))
    (tmp_path / "attributes.txt").write_text("")  # the official archive has this beside the folder
    with pytest.raises(ValueError, match="resize"):
        load_dataset(tmp_path)
    ds = load_dataset(tmp_path, resize=8, val_size=0)
    assert ds.classes == ["Black_footed_Albatross", "Laysan_Albatross"] and ds.shape == (3, 8, 8)
    np.testing.assert_array_equal(ds.y_train, [0, 1, 0, 1])
    np.testing.assert_array_equal(ds.y_test, [0, 1])


def test_stanford_dogs_layout(tmp_path):
    sio = pytest.importorskip("scipy.io")
    breeds = ["n02085620-Chihuahua", "n02085782-Japanese_spaniel"]
    lists = {"train": [], "test": []}
    for b, breed in enumerate(breeds):
        (tmp_path / "Images" / breed).mkdir(parents=True)
        for j in range(3):
            _img(40 * (b + 1), size=(5 + j, 6)).save(tmp_path / "Images" / breed / f"{j}.jpg", quality=100)
            lists["train" if j < 2 else "test"].append(f"{breed}/{j}.jpg")
    for split, files in lists.items():
        cells = np.empty((len(files), 1), object)
        for i, f in enumerate(files):
            cells[i, 0] = np.array([f])
        sio.savemat(tmp_path / f"{split}_list.mat", {"file_list": cells})
    ds = load_dataset(tmp_path, resize=(4, 4), val_size=0)
    assert ds.classes == ["Chihuahua", "Japanese_spaniel"]
    np.testing.assert_array_equal(ds.y_train, [0, 0, 1, 1])
    np.testing.assert_array_equal(ds.y_test, [0, 1])


# ---------------------------------------------------------------- built-in datasets, splits

def test_digits_fixed_split():
    a, b = load_dataset("digits", seed=0), load_dataset("digits", seed=1)
    assert a.shape == (1, 8, 8) and a.classes == [str(i) for i in range(10)] and a.x_train.dtype == np.uint8
    assert len(a.y_test) == 360 and len(a.y_val) == 143 and len(a.y_train) == 1437 - 143
    assert a.x_train.max() == 255 and set(np.unique(a.y_test)) == set(range(10))
    np.testing.assert_array_equal(a.x_test, b.x_test)  # test split ignores the run seed
    assert not np.array_equal(a.y_val, b.y_val)
    assert load_dataset("digits", resize=16).shape == (1, 16, 16)


def test_gaussian_statistics_and_spec():
    ds = load_dataset("gaussian:dim=5,mean_norm=3,sigma=0.5", n_train=4000, n_test=100, val_size=0)
    assert ds.x_train.dtype == np.float32 and ds.shape == (5,) and ds.classes == ["neg", "pos"]
    mu = np.full(5, 3 / np.sqrt(5))
    np.testing.assert_allclose(ds.x_train[ds.y_train == 1].mean(0), mu, atol=0.06)
    np.testing.assert_allclose(ds.x_train[ds.y_train == 0].mean(0), -mu, atol=0.06)
    np.testing.assert_allclose(ds.x_train[ds.y_train == 1].std(0), 0.5, atol=0.05)
    assert len(ds.y_test) == 100
    assert dataset_info("gaussian", dim=3)["shape"] == [3]
    with pytest.raises(ValueError, match="unknown gaussian parameter"):
        load_dataset("gaussian:depth=3")


def test_val_split_sizes_and_disjoint():
    full = load_dataset("gaussian", n_train=500, val_size=0)
    ds = load_dataset("gaussian", n_train=500, seed=3)
    assert len(ds.y_val) == 50 and len(ds.y_train) == 450
    tr, va = {r.tobytes() for r in ds.x_train}, {r.tobytes() for r in ds.x_val}
    assert not tr & va and tr | va == {r.tobytes() for r in full.x_train}
    assert len(load_dataset("gaussian", n_train=20000, n_test=1).y_val) == 1000
    assert len(load_dataset("gaussian", n_train=19990, n_test=1).y_val) == 1999
    assert len(load_dataset("gaussian", n_train=500, val_size=7).y_val) == 7
    for bad in (-1, 500, 1.5):
        with pytest.raises(ValueError, match="val_size"):
            load_dataset("gaussian", n_train=500, val_size=bad)


def test_dataset_info_keys():
    info = dataset_info("digits")
    assert list(info) == ["train", "val", "test", "classes", "shape"]
    assert info["shape"] == [1, 8, 8] and info["test"] == 360


def test_bad_inputs(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset 'foo'; allowed: digits, gaussian"):
        load_dataset("foo")
    with pytest.raises(ValueError, match="resize"):
        load_dataset("digits", resize=(0, 3))
    with pytest.raises(ValueError, match="unexpected keyword"):
        load_dataset("digits", dim=3)
    (tmp_path / "a.rar").write_text("")
    with pytest.raises(ValueError, match="unsupported file"):
        load_dataset(tmp_path / "a.rar")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="unrecognised dataset layout"):
        load_dataset(tmp_path / "empty")
    with pytest.raises(ValueError, match="batch_size"):
        DeviceLoader(np.zeros((4, 3, 2, 2), np.uint8), np.zeros(4), 0)
    with pytest.raises(ValueError, match="lengths differ"):
        DeviceLoader(np.zeros((4, 3, 2, 2), np.uint8), np.zeros(3), 2)


# ---------------------------------------------------------------- DeviceLoader

def _images(n=64, value=255):
    return np.full((n, 3, 8, 8), value, np.uint8), np.arange(n) % 10


def _epoch(loader):
    return [(x.clone(), y.clone()) for x, y in loader]


def test_loader_eval_mode_plain():
    x, y = _images(10, value=51)
    batches = _epoch(DeviceLoader(x, y, 4, train=False))
    assert [len(b[1]) for b in batches] == [4, 4, 2]
    assert torch.equal(torch.cat([b[1] for b in batches]), torch.as_tensor(y))
    assert all(b[0].dtype == torch.float32 and torch.allclose(b[0], torch.tensor(0.2)) for b in batches)
    assert len(DeviceLoader(x, y, 4, train=False, drop_last=True)) == 2


def test_loader_crop_flip_cutout():
    x, y = _images(256)
    xb, yb = next(iter(DeviceLoader(x, y, 256, crop=2, flip=True, seed=1)))
    assert xb.shape == (256, 3, 8, 8) and yb.dtype == torch.int64
    assert xb.min() >= 0 and xb.max() <= 1
    border = (xb[:, :, 0, :] == 0).all(-1).all(-1) | (xb[:, :, :, 0] == 0).all(-1).all(-1) \
        | (xb[:, :, -1, :] == 0).all(-1).all(-1) | (xb[:, :, :, -1] == 0).all(-1).all(-1)
    assert 0 < border.sum() < 256  # some samples shifted into the zero padding, some not
    assert (xb[:, :, 2:6, 2:6] == 1).all()  # a 2 px crop never reaches the centre
    assert sorted(yb.tolist()) == sorted(y.tolist())  # a shuffle of the whole set

    xc, _ = next(iter(DeviceLoader(x, y, 256, crop=0, flip=False, cutout=3)))
    zeros = (xc == 0).all(1).sum((1, 2))
    assert (zeros > 0).all() and (zeros <= 9).all()


def test_loader_flip_is_per_sample():
    x = np.zeros((32, 1, 2, 2), np.uint8)
    x[:, :, :, 0] = 255  # left column bright
    xb, _ = next(iter(DeviceLoader(x, np.zeros(32), 32, crop=0, flip=True)))
    flipped = xb[:, 0, 0, 1] == 1
    assert 0 < flipped.sum() < 32


def test_loader_seeded_and_resumable(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 256, (40, 3, 8, 8), dtype=np.uint8), np.arange(40)
    kw = dict(batch_size=16, crop=2, cutout=2, seed=7)
    a, b = DeviceLoader(x, y, **kw), DeviceLoader(x, y, **kw)
    ea0, eb0 = _epoch(a), _epoch(b)
    assert all(torch.equal(p[0], q[0]) and torch.equal(p[1], q[1]) for p, q in zip(ea0, eb0))
    other = _epoch(DeviceLoader(x, y, **{**kw, "seed": 8}))
    assert not torch.equal(other[0][1], ea0[0][1])

    torch.save(a.state_dict(), tmp_path / "loader.pt")
    ea1 = _epoch(a)
    assert not torch.equal(ea1[0][1], ea0[0][1])  # epochs differ
    resumed = DeviceLoader(x, y, **kw)
    resumed.load_state_dict(torch.load(tmp_path / "loader.pt", weights_only=True))
    er1 = _epoch(resumed)
    assert all(torch.equal(p[0], q[0]) and torch.equal(p[1], q[1]) for p, q in zip(ea1, er1))


def test_loader_float_passthrough():
    x = np.linspace(-3, 3, 20, dtype=np.float32).reshape(10, 2)
    (xb, yb), = DeviceLoader(x, np.arange(10), 10, train=False)
    assert torch.equal(xb, torch.as_tensor(x))
    (xs, ys), = DeviceLoader(x, np.arange(10), 10, seed=1)
    assert torch.equal(xs, torch.as_tensor(x)[ys])  # shuffled, not scaled or augmented

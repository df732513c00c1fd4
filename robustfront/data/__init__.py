"""Datasets as in-memory numpy arrays, and a device-resident batch loader.

    ds = load_dataset("cifar10", root="~/data", download=True)
    ds = load_dataset("../shared/datasets/cifar10-jpeg.tar.gz")
    loader = DeviceLoader(ds.x_train, ds.y_train, 512, device="cuda")
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..validation import check_int, invalid, one_line, shown
from ._cache import archive_stem, cache_root, cached_arrays, extract_archive, files_key
from .cifar import FOLDERS, cifar_files, read_cifar
from .download import fetch
from .folders import READERS, detect_layout
from .images import decode_files, parse_resize, resize_array
from .loader import DeviceLoader
from .subset import subset_indices
from .synthetic import digits, gaussian, gaussian_params

__all__ = ["Dataset", "DeviceLoader", "dataset_info", "load_dataset", "subset_indices"]

NAMES = ("digits", "gaussian", "cifar10", "cifar100", "tiny-imagenet")
SPLITS = ("train", "val", "test")


@dataclass
class Dataset:
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: list[str]
    name: str

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def bounds(self) -> tuple[float, float] | None:
        """The input box after scaling: uint8 images are [0,1]; float data (Gaussian) is unbounded."""
        return (0.0, 1.0) if self.x_train.dtype == np.uint8 else None

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def arrays(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        if split not in SPLITS:
            raise ValueError(f"split={split!r} is unknown; allowed: {', '.join(SPLITS)}")
        # getattr: the split's arrays, x_<split>/y_<split>, by name
        return getattr(self, f"x_{split}"), getattr(self, f"y_{split}")

    def tensors(self, split: str, device="cpu", n: int | None = None, seed: int = 0):
        """(x, y) of a split as tensors on `device`: images as float32 in [0,1], float data as is,
        labels int64; `n` takes a seeded random subset (`subset_indices`)."""
        import torch
        x, y = self.arrays(split)
        idx = subset_indices(len(y), n, seed)
        if len(idx) < len(y):
            x, y = x[idx], y[idx]
        xt = torch.as_tensor(x, device=device)
        xt = xt.float().div_(255) if xt.dtype == torch.uint8 else xt.float()
        return xt, torch.as_tensor(y, device=device).long()


def _split_val(x, y, val_size, seed):
    """Carve val from train by a seeded permutation; both parts keep their original order."""
    n = len(y)
    if val_size is None:
        val_size = 1000 if n >= 20000 else n // 10
    elif isinstance(val_size, bool) or not isinstance(val_size, (int, np.integer)) or not 0 <= val_size < n:
        raise invalid("val_size", val_size, f"None or an integer in [0, {n - 1}] (the training set has {n} "
                      f"examples)")
    perm = np.random.default_rng(seed).permutation(n)
    val, train = np.sort(perm[:val_size]), np.sort(perm[val_size:])
    return x[train], y[train], x[val], y[val]


def _from_folder(folder: Path, size, cache_dir) -> dict:
    """Arrays for any on-disk layout (pickles or image trees), decoded once and cached as .npy."""
    layout, folder = detect_layout(folder)
    if layout in FOLDERS:  # pickles are fast to read; only a resized copy is worth caching
        if size is None:
            return read_cifar(folder, layout)
        key = f"{layout}|{files_key(cifar_files(folder, layout))}|{size}"

        def build():
            d = read_cifar(folder, layout)
            return d | {"x_train": resize_array(d["x_train"], size), "x_test": resize_array(d["x_test"], size)}
        return cached_arrays(layout, key, build, cache_dir)
    plan = READERS[layout](folder)
    key = f"{layout}|{files_key(plan['train'][0] + plan['test'][0])}|{size}"

    def build():
        return {"x_train": decode_files(plan["train"][0], size, f"'{folder}' train"),
                "y_train": plan["train"][1],
                "x_test": decode_files(plan["test"][0], size, f"'{folder}' test"),
                "y_test": plan["test"][1], "classes": plan["classes"]}
    return cached_arrays(layout, key, build, cache_dir)


def _check_arrays(d: dict, source: str) -> None:
    """The splits of any reader agree: one example shape, one label per example, labels within the
    classes, at least two classes, and examples in both splits."""
    classes = list(d["classes"])
    if len(classes) < 2:
        raise ValueError(one_line(f"dataset {source} has {len(classes)} class(es); allowed: at least 2"))
    for split in ("train", "test"):
        x, y = d[f"x_{split}"], d[f"y_{split}"]
        if len(x) == 0:
            raise ValueError(one_line(f"dataset {source} has no {split} examples; allowed: at least one"))
        if len(x) != len(y):
            raise ValueError(one_line(f"dataset {source} has {len(x)} {split} examples but {len(y)} labels"))
        if y.min() < 0 or y.max() >= len(classes):
            raise ValueError(one_line(f"dataset {source} has {split} labels in [{y.min()}, {y.max()}] for "
                                      f"{len(classes)} classes; allowed: 0 to {len(classes) - 1}"))
    if d["x_train"].shape[1:] != d["x_test"].shape[1:]:
        raise ValueError(one_line(f"dataset {source}: train examples are {list(d['x_train'].shape[1:])} but test "
                                  f"examples {list(d['x_test'].shape[1:])}; allowed: one size (pass resize=, "
                                  f"--resize)"))


def _looks_like_path(s: str) -> bool:
    return (os.sep in s or "/" in s or s.startswith(("~", ".")) or os.path.isabs(s)
            or archive_stem(Path(s)) is not None)


@contextmanager
def _os_errors(source: str):
    """File-system errors while reading a dataset (an unreadable folder, a file gone mid-scan) as
    one line naming the file; the readers' own messages pass through."""
    try:
        yield
    except OSError as e:
        if e.errno is None:  # raised by robustfront with its own message
            raise
        name = e.filename if e.filename is not None else source
        if isinstance(e, PermissionError):
            raise ValueError(one_line(f"cannot read '{name}' ({e.strerror}) while loading dataset {source}; "
                                      f"allowed: readable files and folders")) from None
        raise ValueError(one_line(f"cannot read '{name}' ({e.strerror or e}) while loading dataset {source}")) \
            from None


def _named_root(name: str, root, download: bool, cache_dir) -> Path:
    """Folder holding a named dataset under `root` (default: the cache dir), downloaded on request."""
    base = Path(root).expanduser() if root is not None else cache_root(cache_dir)
    sub = FOLDERS.get(name, "tiny-imagenet-200")
    if (base / sub).is_dir():
        return base / sub
    if name == "tiny-imagenet" and (base / "wnids.txt").is_file():
        return base
    if not download:
        raise FileNotFoundError(f"{name} not found: no '{base / sub}'; pass download=True or "
                                f"root=DIR containing {sub}")
    fetch(name, base)
    return base / sub


def load_dataset(spec, *, root=None, download=False, val_size=None, resize=None, seed=0,
                 cache_dir=None, **params) -> Dataset:
    """Load a dataset as numpy arrays (images uint8 N,C,H,W; labels int64) with a val split.

    spec: "digits" | "gaussian[:k=v,...]" | "cifar10" | "cifar100" | "tiny-imagenet" | a path to a
    dataset folder (any layout in folders.LAYOUTS: CUB-200-2011, Stanford Dogs, Caltech-256, ...)
    or a .tar/.tar.gz/.tgz/.zip archive of one. resize: decode (and cache) at this size, e.g. 224.
    `params` are the gaussian
    parameters (dim, mean_norm, sigma, n_train, n_test, data_seed).
    """
    s = os.fspath(spec) if isinstance(spec, (str, os.PathLike)) else None
    if not isinstance(s, str) or not s.strip():
        raise invalid("data", spec, f"a name ({', '.join(NAMES)}) or a path to a dataset folder or archive")
    size = parse_resize(resize)
    check_int("seed", seed, 0)
    is_gaussian = s == "gaussian" or s.startswith("gaussian:")
    if params and not is_gaussian:
        raise ValueError(f"unexpected keyword(s) {sorted(params)} for dataset '{s}'; only gaussian "
                         "takes dim, mean_norm, sigma, n_train, n_test, data_seed")
    if is_gaussian:
        if size is not None:
            raise ValueError(f"resize={resize!r} does not apply to gaussian vectors; allowed: None")
        d, name = gaussian(**gaussian_params(s, params)), "gaussian"
    elif s == "digits":
        d, name = digits(), "digits"
        d["x_train"], d["x_test"] = resize_array(d["x_train"], size), resize_array(d["x_test"], size)
    elif s in NAMES:
        with _os_errors(s):
            d, name = _from_folder(_named_root(s, root, download, cache_dir), size, cache_dir), s
        _check_arrays(d, s)
    else:
        path = Path(s).expanduser()
        if not path.exists():
            if _looks_like_path(s):
                raise FileNotFoundError(one_line(f"dataset path '{s}' does not exist; allowed: a dataset folder or "
                                                 f".tar/.tar.gz/.tgz/.zip archive, or a name: {', '.join(NAMES)}"))
            raise ValueError(one_line(f"unknown dataset {shown(s)}; allowed: {', '.join(NAMES)}, or a path to a "
                                      "dataset folder or .tar/.tar.gz/.tgz/.zip archive"))
        with _os_errors(s):
            if path.is_file():
                name = archive_stem(path)
                if name is None:
                    raise ValueError(one_line(f"unsupported file '{path}'; allowed archives: .tar, .tar.gz, .tgz, "
                                              f".zip"))
                folder = extract_archive(path, cache_dir)
                try:
                    d = _from_folder(folder, size, cache_dir)
                except ValueError as e:  # name the archive the user gave, not only the cache folder
                    raise ValueError(one_line(f"archive '{path}' (extracted to {folder}): {e}")) from None
            else:
                name = path.resolve().name
                d = _from_folder(path, size, cache_dir)
        _check_arrays(d, one_line(f"'{s}'"))
    x_train, y_train, x_val, y_val = _split_val(d["x_train"], d["y_train"], val_size, seed)
    return Dataset(x_train, y_train, x_val, y_val, d["x_test"], d["y_test"], list(d["classes"]), name)


def dataset_info(spec, **kw) -> dict:
    """Split sizes, class names and example shape of load_dataset(spec, **kw)."""
    ds = load_dataset(spec, **kw)
    return {"train": len(ds.y_train), "val": len(ds.y_val), "test": len(ds.y_test),
            "classes": list(ds.classes), "shape": list(ds.shape)}

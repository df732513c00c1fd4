"""CIFAR-10 / CIFAR-100 from the official python-pickle layouts.

The files are pickles, and unpickling can run code: they are read with an unpickler that builds
only what the official files hold (dicts, lists, strings, numbers and numpy arrays), so a
hostile or damaged file is one ValueError line naming it, never code run or a traceback.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from ..validation import one_line, reason

FOLDERS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}
SIDE = 32
# the globals numpy arrays and scalars pickle through (numpy >= 2 writes numpy._core; protocol 5
# uses _frombuffer), and what Python 3 writes bytes through in protocol-2 pickles; nothing else
_GLOBALS = {(f"numpy.{core}.{mod}", name) for core in ("core", "_core")
            for mod, name in (("multiarray", "_reconstruct"), ("multiarray", "scalar"), ("numeric", "_frombuffer"))}
_GLOBALS |= {("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"), ("__builtin__", "bytes"),
             ("builtins", "bytes")}
ALLOWED = "the official python-version CIFAR files (cifar-10-python.tar.gz / cifar-100-python.tar.gz)"


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) not in _GLOBALS:
            raise pickle.UnpicklingError(f"refused to load global {module}.{name}")
        return super().find_class(module, name)


def _bad(path: Path, problem: str) -> ValueError:
    return ValueError(one_line(f"CIFAR file '{path}' {problem}; allowed: {ALLOWED}"))


def _unpickle(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(one_line(f"missing CIFAR file '{path}'; allowed: {ALLOWED}"))
    try:
        with open(path, "rb") as f:
            d = _ArraysOnly(f, encoding="latin1").load()  # the official files are Python 2 pickles
    except PermissionError as e:
        raise _bad(path, f"cannot be read ({e.strerror})") from None
    except Exception as e:  # noqa: BLE001 - truncated, random bytes, refused globals, ...: a bad file
        raise _bad(path, f"is truncated or not a CIFAR pickle ({type(e).__name__}: {reason(e, 100)})") from None
    if not isinstance(d, dict):
        raise _bad(path, f"holds a {type(d).__name__}, not a dict")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in d.items()}


def _names(meta: dict, key: str, path: Path) -> list[str]:
    names = meta.get(key)
    if not isinstance(names, (list, tuple)) or len(names) < 2:
        raise _bad(path, f"has no list of class names under '{key}'")
    return [n.decode("latin1") if isinstance(n, bytes) else str(n) for n in names]


def _xy(batch: dict, label_key: str, path: Path, num_classes: int):
    """(images N,3,32,32, labels N) of one batch, checked: 3072 bytes per image, one label each."""
    if "data" not in batch or label_key not in batch:
        raise _bad(path, f"lacks '{'data' if 'data' not in batch else label_key}' (keys: {sorted(map(str, batch))[:6]})")
    try:
        data = np.asarray(batch["data"])
        y = np.asarray(batch[label_key])
    except (TypeError, ValueError) as e:
        raise _bad(path, f"holds unreadable arrays ({reason(e, 80)})") from None
    per = 3 * SIDE * SIDE
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != per:
        raise _bad(path, f"has 'data' of shape {list(data.shape)} and type {data.dtype}, not N x {per} uint8")
    if y.ndim != 1 or len(y) != len(data) or not np.issubdtype(y.dtype, np.integer):
        raise _bad(path, f"has {y.size} labels of type {y.dtype} for {len(data)} images")
    if len(y) and (y.min() < 0 or y.max() >= num_classes):
        raise _bad(path, f"has labels in [{y.min()}, {y.max()}], outside [0, {num_classes - 1}]")
    return data.reshape(-1, 3, SIDE, SIDE), y.astype(np.int64)


def cifar_files(folder: Path, kind: str) -> list[Path]:
    if kind == "cifar10":
        names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]
    else:
        names = ["train", "test", "meta"]
    return [folder / n for n in names]


def read_cifar(folder: Path, kind: str) -> dict:
    """kind 'cifar10' (folder like cifar-10-batches-py) or 'cifar100' (cifar-100-python; fine labels)."""
    if kind == "cifar10":
        train = [folder / f"data_batch_{i}" for i in range(1, 6)]
        test, meta, key, names = folder / "test_batch", folder / "batches.meta", "labels", "label_names"
    else:
        train = [folder / "train"]
        test, meta, key, names = folder / "test", folder / "meta", "fine_labels", "fine_label_names"
    classes = _names(_unpickle(meta), names, meta)
    parts = [_xy(_unpickle(p), key, p, len(classes)) for p in train]
    x_test, y_test = _xy(_unpickle(test), key, test, len(classes))
    return {"x_train": np.concatenate([x for x, _ in parts]), "y_train": np.concatenate([y for _, y in parts]),
            "x_test": x_test, "y_test": y_test, "classes": classes}

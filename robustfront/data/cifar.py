"""CIFAR-10 / CIFAR-100 from the official python-pickle layouts."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

FOLDERS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}


def _unpickle(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"missing CIFAR file '{path}'")
    with open(path, "rb") as f:
        d = pickle.load(f, encoding="latin1")  # the official files are Python 2 pickles
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in d.items()}


def _names(names) -> list[str]:
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names]


def _xy(batches: list[dict], label_key: str):
    x = np.concatenate([np.asarray(b["data"], np.uint8).reshape(-1, 3, 32, 32) for b in batches])
    y = np.concatenate([np.asarray(b[label_key], np.int64) for b in batches])
    return x, y


def cifar_files(folder: Path, kind: str) -> list[Path]:
    if kind == "cifar10":
        names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]
    else:
        names = ["train", "test", "meta"]
    return [folder / n for n in names]


def read_cifar(folder: Path, kind: str) -> dict:
    """kind 'cifar10' (folder like cifar-10-batches-py) or 'cifar100' (cifar-100-python; fine labels)."""
    if kind == "cifar10":
        train = [_unpickle(folder / f"data_batch_{i}") for i in range(1, 6)]
        test, meta, key, names = _unpickle(folder / "test_batch"), folder / "batches.meta", "labels", "label_names"
    else:
        train = [_unpickle(folder / "train")]
        test, meta, key, names = _unpickle(folder / "test"), folder / "meta", "fine_labels", "fine_label_names"
    x_train, y_train = _xy(train, key)
    x_test, y_test = _xy([test], key)
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test,
            "classes": _names(_unpickle(meta)[names])}

"""Dataset layouts on disk: detection, and for image trees the (file list, labels) of each split.

A plan is {"train": (paths, labels), "test": (paths, labels), "classes": [...]}; decoding and
caching happen in __init__.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from ..validation import one_line, reason, shown
from .cifar import FOLDERS
from .images import IMAGE_EXTS

LAYOUTS = ("cifar-10-batches-py, cifar-100-python, Tiny-ImageNet, CUB-200-2011, Stanford Dogs, "
           "Caltech-256 (<NNN>.<class>/ folders), or train/<class>/ + test/<class>/")
_NUMBERED = re.compile(r"^\d+\.\S")  # Caltech-256: 001.ak47, ..., 257.clutter


def _visible_dirs(d: Path) -> list[Path]:
    return sorted(c for c in d.iterdir() if c.is_dir() and not c.name.startswith((".", "__MACOSX")))


# Layouts recognised by the files a folder holds: (layout, files that must exist, folders that must exist)
MARKERS = (("cifar10", ("data_batch_1", "batches.meta"), ()),
           ("cifar100", ("train", "meta"), ()),
           ("tiny-imagenet", ("wnids.txt",), ()),
           ("cub", ("images.txt", "train_test_split.txt"), ()),
           ("stanford-dogs", ("train_list.mat",), ("Images",)),
           ("folder", (), ("train",)))


def _marked(d: Path) -> str | None:
    for kind, files, dirs in MARKERS:
        if all((d / f).is_file() for f in files) and all((d / f).is_dir() for f in dirs):
            return kind
    return None


def detect_layout(path: Path) -> tuple[str, Path]:
    """(layout, folder) for a dataset folder, looking through single wrapper folders
    (archives often hold e.g. cifar10/train/... or CUB_200_2011/images/...)."""
    d = path
    for _ in range(4):
        for kind, sub in FOLDERS.items():
            if (d / sub).is_dir():
                return kind, d / sub
        kind = _marked(d)
        if kind is not None:
            return kind, d
        dirs = _visible_dirs(d)
        if len(dirs) >= 2 and all(_NUMBERED.match(c.name) for c in dirs):
            return "caltech", d
        if len(dirs) != 1:
            break
        d = dirs[0]
    raise ValueError(one_line(f"unrecognised dataset layout at '{path}'; allowed: {LAYOUTS}"))


def _raise(e: OSError) -> None:
    raise e  # os.walk skips unreadable folders silently unless told otherwise


def _scan(split_dir: Path, classes: list[str]):
    """Image files under split_dir/<class>/ (recursively), labelled by the class index."""
    paths, labels = [], []
    for i, c in enumerate(classes):
        if not (split_dir / c).is_dir():  # a test split may lack some classes
            continue
        # os.walk on strings: sorting 100k Path objects is several times slower
        files = sorted(os.path.join(top, f) for top, _, names in os.walk(split_dir / c, onerror=_raise)
                       for f in names if os.path.splitext(f)[1].lower() in IMAGE_EXTS)
        paths += files
        labels += [i] * len(files)
    return paths, np.asarray(labels, np.int64)


def image_folder(d: Path) -> dict:
    """train/<class>/* and test/<class>/* (or val/ when there is no test/); classes sorted.

    Refused in one line: fewer than two classes, a training class folder without images, test
    classes that training lacks."""
    test_dir = next((d / s for s in ("test", "val") if (d / s).is_dir()), None)
    if test_dir is None:
        raise ValueError(one_line(f"no test/ or val/ folder beside '{d / 'train'}'; allowed: train/<class>/ "
                                  f"and test/<class>/ (or val/<class>/)"))
    classes = [c.name for c in _visible_dirs(d / "train")]
    if len(classes) < 2:
        raise ValueError(one_line(f"'{d / 'train'}' has {len(classes)} class folder(s) {shown(classes)}; allowed: "
                                  f"at least 2 (train/<class>/ per class)"))
    extra = sorted({c.name for c in _visible_dirs(test_dir)} - set(classes))
    if extra:
        raise ValueError(one_line(f"classes {shown(extra)} in '{test_dir}' are not in '{d / 'train'}'; allowed: "
                                  f"{shown(classes)}"))
    train = _scan(d / "train", classes)
    empty = [c for i, c in enumerate(classes) if not (train[1] == i).any()]
    if empty:
        raise ValueError(one_line(f"class folder(s) {shown(empty)} under '{d / 'train'}' hold no images; allowed: "
                                  f"at least one file ending in {', '.join(sorted(IMAGE_EXTS))} per class"))
    return {"train": train, "test": _scan(test_dir, classes), "classes": classes}


def tiny_imagenet(d: Path) -> dict:
    """train/<wnid>/images/*.JPEG; the labelled val/ split (val_annotations.txt) serves as test."""
    classes = sorted(w.strip() for w in (d / "wnids.txt").read_text().split() if w.strip())
    index = {w: i for i, w in enumerate(classes)}
    paths, labels = [], []
    notes = d / "val" / "val_annotations.txt"
    for n, line in enumerate(notes.read_text(errors="replace").splitlines(), 1):
        parts = line.split("\t")
        if len(parts) >= 2:
            if parts[1] not in index:
                raise ValueError(one_line(f"{notes} line {n} names class {shown(parts[1])}, which is not in "
                                          f"{d / 'wnids.txt'}; allowed: the ids listed there"))
            paths.append(d / "val" / "images" / parts[0])
            labels.append(index[parts[1]])
    return {"train": _scan(d / "train", classes), "test": (paths, np.asarray(labels, np.int64)),
            "classes": classes}


def _table(path: Path) -> dict[str, str]:
    """'id value' lines -> {id: value}."""
    rows = [line.split(maxsplit=1) for line in path.read_text(errors="replace").splitlines() if line.strip()]
    bad = next((r for r in rows if len(r) != 2), None)
    if bad is not None:
        raise ValueError(f"{path}: line {shown(' '.join(bad))} is not 'id value'")
    return dict(rows)


def cub(d: Path) -> dict:
    """CUB-200-2011: images.txt, image_class_labels.txt (1-based), train_test_split.txt, classes.txt."""
    try:
        return _cub(d)
    except (KeyError, ValueError, IndexError) as e:
        raise ValueError(one_line(f"CUB-200-2011 index files in '{d}' disagree or are damaged ({type(e).__name__}: "
                                  f"{reason(e, 80)}); allowed: the official images.txt, image_class_labels.txt, "
                                  f"train_test_split.txt and classes.txt")) from None


def _cub(d: Path) -> dict:
    images, labels = _table(d / "images.txt"), _table(d / "image_class_labels.txt")
    is_train = _table(d / "train_test_split.txt")
    names = _table(d / "classes.txt")
    classes = [names[k].strip().split(".", 1)[-1] for k in sorted(names, key=int)]
    plan = {"train": ([], []), "test": ([], [])}
    for i in sorted(images, key=int):
        split = plan["train" if is_train[i].strip() == "1" else "test"]
        split[0].append(d / "images" / images[i].strip())
        split[1].append(int(labels[i]) - 1)
    return {k: (p, np.asarray(y, np.int64)) for k, (p, y) in plan.items()} | {"classes": classes}


def stanford_dogs(d: Path) -> dict:
    """Images/<wnid>-<breed>/*.jpg with train_list.mat / test_list.mat (read with scipy)."""
    try:
        from scipy.io import loadmat
    except ImportError as e:
        raise ImportError("Stanford Dogs needs scipy to read train_list.mat; pip install scipy") from e
    breeds = [b.name for b in _visible_dirs(d / "Images")]
    index = {b: i for i, b in enumerate(breeds)}
    plan = {"classes": [b.split("-", 1)[-1] for b in breeds]}
    for split in ("train", "test"):
        mat = d / f"{split}_list.mat"
        try:
            files = [str(np.ravel(e)[0]) for e in np.ravel(loadmat(mat)["file_list"])]
            plan[split] = ([d / "Images" / f for f in files],
                           np.asarray([index[f.split("/")[0]] for f in files], np.int64))
        except (KeyError, ValueError, IndexError, TypeError, NotImplementedError) as e:
            raise ValueError(one_line(f"{mat} is damaged or names folders that Images/ lacks ({type(e).__name__}: "
                                      f"{reason(e, 80)}); allowed: the official Stanford Dogs file lists")) from None
    return plan


def caltech(d: Path, test_fraction: float = 0.2, seed: int = 0) -> dict:
    """Caltech-256 style: one <NNN>.<class>/ folder per class (sorted by number), no official split.
    A fixed seeded split per class (independent of the run's seed, so every run shares one test
    set): round(test_fraction * n) images of each class (at least one where it has two or more)."""
    dirs = sorted(_visible_dirs(d), key=lambda c: (int(c.name.split(".", 1)[0]), c.name))
    plan = {"train": ([], []), "test": ([], []), "classes": [c.name.split(".", 1)[1] for c in dirs]}
    for i, c in enumerate(dirs):
        files, _ = _scan(d, [c.name])
        n_test = max(1, round(test_fraction * len(files))) if len(files) > 1 else 0
        is_test = np.zeros(len(files), bool)
        is_test[np.random.default_rng([seed, i]).permutation(len(files))[:n_test]] = True
        for f, t in zip(files, is_test):
            split = plan["test" if t else "train"]
            split[0].append(f)
            split[1].append(i)
    out = {k: (plan[k][0], np.asarray(plan[k][1], np.int64)) for k in ("train", "test")}
    return out | {"classes": plan["classes"]}


READERS = {"folder": image_folder, "tiny-imagenet": tiny_imagenet, "cub": cub, "stanford-dogs": stanford_dogs,
           "caltech": caltech}

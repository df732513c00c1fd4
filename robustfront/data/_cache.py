"""Cache location, crash-safe directory builds, archive extraction and decoded-array caching."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np

MARKER = ".robustfront-complete"
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")


def cache_root(cache_dir=None) -> Path:
    """`cache_dir`, else $ROBUSTFRONT_CACHE, else ~/.cache/robustfront."""
    root = cache_dir or os.environ.get("ROBUSTFRONT_CACHE") or Path.home() / ".cache" / "robustfront"
    return Path(root).expanduser()


def archive_stem(path: Path) -> str | None:
    """Name without the archive suffix, or None when `path` is not a supported archive."""
    low = path.name.lower()
    for suf in ARCHIVE_SUFFIXES:
        if low.endswith(suf):
            return path.name[: -len(suf)]
    return None


def build_dir(final: Path, build: Callable[[Path], None]) -> Path:
    """Return `final`, building it with build(tmp) if it lacks the completion marker.

    The build runs in a temp dir next to `final`; the marker is written last and the dir renamed
    into place, so an interrupted build never looks complete and is simply redone next time.
    """
    if (final / MARKER).is_file():
        return final
    if final.exists():  # left by an interrupted or corrupted build
        shutil.rmtree(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=final.parent))
    try:
        build(tmp)
        (tmp / MARKER).write_text("complete\n")
        try:
            os.rename(tmp, final)
        except OSError:  # a concurrent process finished first; its copy is as good as ours
            if not (final / MARKER).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def unpack(archive: Path, dest: Path) -> None:
    """Extract a .zip or .tar[.gz] archive into `dest`, refusing paths that escape it."""
    if archive.name.lower().endswith(".zip"):
        with zipfile.ZipFile(archive) as z:
            z.extractall(dest)  # zipfile already strips absolute paths and '..'
        return
    with tarfile.open(archive) as t:
        if hasattr(tarfile, "data_filter"):
            t.extractall(dest, filter="data")
            return
        for m in t.getmembers():  # older Pythons lack extraction filters
            if m.name.startswith("/") or ".." in Path(m.name).parts or m.issym() or m.islnk():
                raise ValueError(f"unsafe member '{m.name}' in archive '{archive}'")
        t.extractall(dest)


def extract_archive(archive: Path, cache_dir=None) -> Path:
    """Extract once into <cache>/extracted/<name>-<size>-<mtime>; a changed archive gets a new dir."""
    st = archive.stat()
    final = cache_root(cache_dir) / "extracted" / f"{archive.name}-{st.st_size}-{st.st_mtime_ns}"
    return build_dir(final, lambda tmp: unpack(archive, tmp))


def files_key(paths) -> str:
    """Fingerprint of files by path, size and mtime: any change to the sources misses the cache."""
    h = hashlib.sha1()
    for p in paths:
        st = os.stat(p)
        h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def cached_arrays(name: str, key: str, build: Callable[[], dict], cache_dir=None) -> dict:
    """Arrays from build() -> {"x_train", "y_train", "x_test", "y_test", "classes"}, kept as .npy
    files under <cache>/arrays/<name>-<hash of key> so later loads skip decoding."""
    digest = hashlib.sha1(key.encode()).hexdigest()[:16]
    final = cache_root(cache_dir) / "arrays" / f"{name}-{digest}"

    def write(tmp: Path) -> None:
        out = build()
        (tmp / "classes.json").write_text(json.dumps(list(out.pop("classes"))))
        for k, v in out.items():
            np.save(tmp / f"{k}.npy", v)

    build_dir(final, write)
    out = {k: np.load(final / f"{k}.npy") for k in ("x_train", "y_train", "x_test", "y_test")}
    out["classes"] = json.loads((final / "classes.json").read_text())
    return out

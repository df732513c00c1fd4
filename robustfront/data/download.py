"""Download of the official archives, md5-verified. URLS is module-level so tests can point it at
a local file:// archive."""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.request
from pathlib import Path

from ..validation import one_line, reason
from ._cache import unpack

# name -> (url, md5)
URLS = {
    "cifar10": ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                "c58f30108f718f92721af3b95e74349a"),
    "cifar100": ("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
                 "eb9058c3a382ffc7106e4002c42a8d85"),
    "tiny-imagenet": ("http://cs231n.stanford.edu/tiny-imagenet-200.zip",
                      "90528d7ca1a48142e341f4ef8d21d0de"),
}


def md5sum(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch(name: str, root: Path) -> None:
    """Download URLS[name] into `root` (kept, so a rerun skips the download), verify its md5 and
    extract its top-level folder(s) into `root`."""
    url, md5 = URLS[name]
    root.mkdir(parents=True, exist_ok=True)
    archive = root / url.rsplit("/", 1)[-1]
    if not (archive.is_file() and md5sum(archive) == md5):
        part = archive.with_name(archive.name + ".part")  # never mistaken for a finished download
        try:
            with urllib.request.urlopen(url, timeout=120) as r, open(part, "wb") as f:
                shutil.copyfileobj(r, f, 1 << 20)
        except OSError as e:  # URLError, timeouts, a full disk: nothing half-downloaded is kept
            part.unlink(missing_ok=True)
            raise ValueError(one_line(f"download of {url} failed ({reason(e)}); allowed: a working connection, "
                                      f"or root=DIR (--data-root) holding the extracted dataset")) from None
        got = md5sum(part)
        if got != md5:
            part.unlink()
            raise ValueError(f"checksum mismatch for {url}: md5 {got}, expected {md5}; allowed: the official "
                             f"archive (download again)")
        os.replace(part, archive)
    # extract beside the target, then move into place: a crash never leaves a half folder
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-extract-", dir=root))
    try:
        unpack(archive, tmp)
        for child in tmp.iterdir():
            if not (root / child.name).exists():
                os.rename(child, root / child.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

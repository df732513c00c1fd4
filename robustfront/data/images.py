"""Decoding image files (and resizing arrays) into uint8 N,C,H,W arrays with PIL.

A file that is not a complete image (truncated, text named .jpg, unreadable) is one ValueError line
naming it; a decode that would not fit in memory is refused before it starts.
"""
from __future__ import annotations

import numbers
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image

from ..ticker import Ticker
from ..validation import invalid, one_line, reason
from ..device import available_memory

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".ppm", ".tif", ".tiff"}
# getattr: Pillow >= 9.1 moved the filters to Image.Resampling
_BILINEAR = getattr(Image, "Resampling", Image).BILINEAR
_WORKERS = min(8, os.cpu_count() or 1)
# PIL releases the GIL only while decoding pixels; for small images the per-file Python work
# dominates and threads are slower than a plain loop (measured: 32x32 JPEGs ~25 % slower)
_THREADED_PIXELS = 128 * 128


def _map(fn, items, pixels: int):
    """fn over items, in order, streamed (no list of all results); threaded only where it pays."""
    if pixels < _THREADED_PIXELS or _WORKERS == 1:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(_WORKERS) as ex:
        yield from ex.map(fn, items)


def parse_resize(resize) -> tuple[int, int] | None:
    """None, an int n (-> n x n) or (H, W) of positive ints."""
    if resize is None:
        return None
    size = (resize, resize) if isinstance(resize, numbers.Integral) and not isinstance(resize, bool) else resize
    try:
        h, w = size
        ok = all(isinstance(v, numbers.Integral) and not isinstance(v, bool) and v > 0 for v in (h, w))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise invalid("resize", resize, "None, an integer >= 1 (the side), or (H, W) of integers >= 1")
    return int(h), int(w)


def check_memory(n: int, shape, what: str, itemsize: int = 1, factor: float = 1.0) -> None:
    """Refuse an array of n examples of `shape` that would not fit in the memory available now
    (a resize=3000 of 50 000 images is 1.3 TB: refused at once instead of swapping the machine to death)."""
    need = float(n) * itemsize * factor
    for s in shape:
        need *= s
    have = available_memory()
    if need > have:
        raise ValueError(one_line(f"{what}: {n} examples of shape {list(shape)} need {need / 1e9:.3g} GB, more "
                                  f"than the {have / 1e9:.3g} GB of memory available; allowed: a smaller resize "
                                  f"or fewer examples"))


def _pil_to_chw(im: Image.Image, size, mode: str) -> np.ndarray:
    im = im.convert(mode)
    if size is not None and im.size != (size[1], size[0]):
        im = im.resize((size[1], size[0]), _BILINEAR)
    a = np.asarray(im, dtype=np.uint8)
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


def _bad_image(path, e: BaseException) -> ValueError:
    if isinstance(e, PermissionError):
        return ValueError(one_line(f"image file '{path}' cannot be read ({e.strerror}); allowed: a readable file"))
    if isinstance(e, FileNotFoundError):
        return ValueError(one_line(f"image file '{path}' does not exist (listed by the dataset's index); "
                                   f"allowed: an index naming files that exist"))
    return ValueError(one_line(f"image file '{path}' is truncated or not an image ({reason(e, 100)}); allowed: a "
                               f"complete {'/'.join(sorted(x.lstrip('.') for x in IMAGE_EXTS))} file"))


def _read(path, size) -> np.ndarray:
    try:
        with Image.open(path) as im:
            return _pil_to_chw(im, size, "RGB")
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError, Image.DecompressionBombError) as e:
        # UnidentifiedImageError (text named .jpg) and "image file is truncated" are OSErrors
        raise _bad_image(path, e) from None


def _stack(arrays, n: int, what: str) -> np.ndarray:
    """Fill one preallocated array (no list-of-arrays copy); all items must share one shape."""
    out = None
    for i, a in enumerate(arrays):
        if out is None:
            check_memory(n, a.shape, what)
            out = np.empty((n, *a.shape), np.uint8)
        elif a.shape != out.shape[1:]:
            raise ValueError(f"images in {what} have different sizes ({out.shape[2]}x{out.shape[3]} and "
                             f"{a.shape[1]}x{a.shape[2]}); allowed: resize=(H, W) or an int (--resize)")
        out[i] = a
    return out


def decode_files(paths, size=None, what="dataset") -> np.ndarray:
    """RGB uint8 array N,3,H,W from image files, optionally resized (bilinear) to size=(H, W)."""
    if not paths:
        raise ValueError(f"no images found in {what}; allowed: files ending in {', '.join(sorted(IMAGE_EXTS))}")
    if size is not None:
        check_memory(len(paths), (3, *size), what)
    try:
        with Image.open(paths[0]) as im:
            pixels = im.width * im.height
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as e:
        raise _bad_image(paths[0], e) from None
    tick = Ticker(f"decoding {what}", len(paths), "images")

    def read(p):
        out = _read(p, size)
        tick.step()
        return out
    arr = _stack(_map(read, paths, pixels), len(paths), what)
    tick.done()
    return arr


def resize_array(x: np.ndarray, size) -> np.ndarray:
    """Resize uint8 N,C,H,W images (C = 1 or 3) with PIL bilinear, like decode-time resizing."""
    if size is None or tuple(x.shape[2:]) == tuple(size):
        return x
    check_memory(len(x), (x.shape[1], *size), "resized images")
    mode = "L" if x.shape[1] == 1 else "RGB"

    def one(a):
        return _pil_to_chw(Image.fromarray(a[0] if mode == "L" else a.transpose(1, 2, 0)), size, mode)

    return _stack(_map(one, x, x.shape[2] * x.shape[3]), len(x), "array")

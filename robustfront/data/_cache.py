"""Cache location, crash-safe directory builds, archive extraction and decoded-array caching.

Every way an archive or the cache can be bad (truncated, random bytes, a member that would land
outside the cache, a full or read-only cache folder) ends in one ValueError line naming the file.
"""
from __future__ import annotations

import errno
import hashlib
import json
import lzma
import os
import shutil
import socket
import tarfile
import tempfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Callable

import numpy as np

from ..ticker import Ticker
from ..validation import one_line, reason

MARKER = ".robustfront-complete"
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")
ALLOWED_ARCHIVE = "a complete .tar, .tar.gz/.tgz or .zip archive of a dataset folder"
# errors of the disk we write to, not of the file we read
_DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR}


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


def _cache_error(e: OSError, folder: Path) -> ValueError:
    return ValueError(one_line(f"cannot write the cache folder {folder} ({e.strerror or reason(e)}); allowed: a "
                               f"writable folder with free space, set with $ROBUSTFRONT_CACHE or cache_dir="))


def _tmp_prefix(final: Path) -> str:
    return f".tmp-{final.name}-{socket.gethostname()}-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. EPERM: it exists, under another user
        return True
    return True


def clean_stale_builds(final: Path) -> list[Path]:
    """Remove build folders of `final` left by killed processes of this host (the pid in the
    name is gone); a build still running elsewhere is left alone."""
    prefix, removed = _tmp_prefix(final), []
    if not final.parent.is_dir():
        return removed
    for d in final.parent.glob(prefix + "*"):
        pid = d.name[len(prefix):].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d)
    return removed


def build_dir(final: Path, build: Callable[[Path], None]) -> Path:
    """Return `final`, building it with build(tmp) if it lacks the completion marker.

    The build runs in a temp dir next to `final`; the marker is written last and the dir renamed
    into place, so an interrupted build never looks complete and is simply redone next time.
    """
    if (final / MARKER).is_file():
        return final
    try:
        if final.exists():  # left by an interrupted or corrupted build
            shutil.rmtree(final)
        final.parent.mkdir(parents=True, exist_ok=True)
        clean_stale_builds(final)
        tmp = Path(tempfile.mkdtemp(prefix=f"{_tmp_prefix(final)}{os.getpid()}-", dir=final.parent))
    except OSError as e:
        raise _cache_error(e, final.parent) from None
    try:
        build(tmp)
        (tmp / MARKER).write_text("complete\n")
        try:
            os.rename(tmp, final)
        except OSError:  # a concurrent process finished first; its copy is as good as ours
            if not (final / MARKER).is_file():
                raise
    except OSError as e:
        if e.errno in _DISK_ERRNOS and e.filename and str(e.filename).startswith(str(final.parent)):
            raise _cache_error(e, final.parent) from None
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


class _Unsafe(Exception):
    """A member that would land outside the extraction folder (older Pythons, and zip files)."""


# tarfile's extraction-filter errors (Python >= 3.11.4 / 3.12), where they exist
# getattr/hasattr on tarfile: its extraction filters exist from Python 3.12 (and late 3.8-3.11 patches)
_FILTER_ERRORS = tuple(getattr(tarfile, n) for n in ("FilterError",) if hasattr(tarfile, n)) + (_Unsafe,)


_UNSAFE_KINDS = {"AbsoluteLinkError": "a link to an absolute path", "AbsolutePathError": "an absolute path",
                 "LinkOutsideDestinationError": "a link out of the extraction folder",
                 "OutsideDestinationError": "a path out of the extraction folder",
                 "SpecialFileError": "a device or special file", "_Unsafe": "an absolute or '..' path"}


def _unsafe(name: str) -> bool:
    p = PurePosixPath(name.replace("\\", "/"))
    return p.is_absolute() or ".." in p.parts or (len(name) > 1 and name[1] == ":")


def _unpack(archive: Path, dest: Path, tick=None) -> None:
    if archive.name.lower().endswith(".zip"):
        with zipfile.ZipFile(archive) as z:
            bad = next((n for n in z.namelist() if _unsafe(n)), None)
            if bad is not None:
                raise _Unsafe(bad)
            z.extractall(dest)
        return
    with tarfile.open(archive) as t:
        if hasattr(tarfile, "data_filter"):
            # the "data" filter refuses '..', links out of dest and devices, but only strips a leading
            # '/' (a member meant for /etc lands in the cache): refuse those names outright too
            def safe(member, path):
                if _unsafe(member.name):
                    raise _Unsafe(member.name)
                if tick is not None:
                    tick.step()
                return tarfile.data_filter(member, path)
            t.extractall(dest, filter=safe)
            return
        for m in t.getmembers():  # older Pythons lack extraction filters
            if _unsafe(m.name) or m.issym() or m.islnk() or m.isdev():
                raise _Unsafe(m.name)
        t.extractall(dest)


def unpack(archive: Path, dest: Path, tick=None) -> None:
    """Extract a .zip or .tar[.gz] archive into `dest`; refuses members that would land outside it
    (absolute paths, '..', absolute or escaping links) and turns a damaged archive into one line."""
    what = one_line(f"archive '{archive}'")
    if archive.stat().st_size == 0:
        raise ValueError(f"{what} is empty (0 bytes); allowed: {ALLOWED_ARCHIVE}")
    try:
        _unpack(archive, dest, tick)
    except _FILTER_ERRORS as e:
        # hasattr: tarfile's FilterError carries the member, our _Unsafe its name in args
        member = e.tarinfo.name if hasattr(e, "tarinfo") else e.args[0]
        kind = _UNSAFE_KINDS.get(type(e).__name__, "a path out of the extraction folder")
        raise ValueError(one_line(f"{what} has an unsafe member {str(member)!r} ({kind}): nothing "
                                  f"outside the cache was written; allowed: members with relative paths inside "
                                  f"the archive")) from None
    except PermissionError as e:
        if e.filename and str(e.filename).startswith(str(dest)):
            raise _cache_error(e, dest.parent) from None
        raise ValueError(one_line(f"{what} cannot be read ({e.strerror}); allowed: a readable file")) from None
    except OSError as e:
        if e.errno in _DISK_ERRNOS and e.filename and str(e.filename).startswith(str(dest)):
            raise _cache_error(e, dest.parent) from None
        if e.errno == errno.ENOSPC:
            raise _cache_error(e, dest.parent) from None
        raise ValueError(one_line(f"{what} is damaged or not an archive ({reason(e)}); allowed: "
                                  f"{ALLOWED_ARCHIVE}")) from None
    except tarfile.ReadError as e:
        detail = "not a tar, gzip, bz2 or xz file" if "could not be opened" in str(e) else reason(e)
        raise ValueError(one_line(f"{what} is truncated, damaged or not an archive ({detail}); allowed: "
                                  f"{ALLOWED_ARCHIVE}")) from None
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, lzma.LZMAError, NotImplementedError,
            RuntimeError, ValueError, KeyError, UnicodeError) as e:
        # NotImplementedError: an unknown zip compression; RuntimeError: an encrypted zip member
        raise ValueError(one_line(f"{what} is truncated, damaged or not an archive ({reason(e)}); allowed: "
                                  f"{ALLOWED_ARCHIVE}")) from None


def extract_archive(archive: Path, cache_dir=None) -> Path:
    """Extract once into <cache>/extracted/<name>-<size>-<mtime>; a changed archive gets a new dir."""
    st = archive.stat()
    final = cache_root(cache_dir) / "extracted" / f"{archive.name}-{st.st_size}-{st.st_mtime_ns}"
    def build(tmp):
        tick = Ticker(f"extracting {archive.name} into the cache (once)", 0, "members")
        unpack(archive, tmp, tick)
        tick.done()
    return build_dir(final, build)


def files_key(paths) -> str:
    """Fingerprint of files by path, size and mtime: any change to the sources misses the cache."""
    h = hashlib.sha1()
    for p in paths:
        st = os.stat(p)
        h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


KEYS = ("x_train", "y_train", "x_test", "y_test")


def cached_arrays(name: str, key: str, build: Callable[[], dict], cache_dir=None) -> dict:
    """Arrays from build() -> {"x_train", "y_train", "x_test", "y_test", "classes"}, kept as .npy
    files under <cache>/arrays/<name>-<hash of key> so later loads skip decoding. A cache entry
    that cannot be read back (damaged on disk) is rebuilt once: the cache is never needed for
    correctness."""
    digest = hashlib.sha1(key.encode()).hexdigest()[:16]
    final = cache_root(cache_dir) / "arrays" / f"{name}-{digest}"

    def write(tmp: Path) -> None:
        out = build()
        (tmp / "classes.json").write_text(json.dumps(list(out.pop("classes"))))
        for k, v in out.items():
            np.save(tmp / f"{k}.npy", v)

    def read() -> dict:
        out = {k: np.load(final / f"{k}.npy", allow_pickle=False) for k in KEYS}
        out["classes"] = json.loads((final / "classes.json").read_text())
        return out

    build_dir(final, write)
    try:
        return read()
    except (OSError, ValueError, EOFError):
        shutil.rmtree(final, ignore_errors=True)
        build_dir(final, write)
        return read()

"""Resumable state folders: "is this folder mine, and was it written for these settings?" answered once.

A `FolderLock` keeps a second process out of a folder while one writes it (run folders, sweep
folders and their points); its refusal names the holder's PID and how to proceed.
A `StateFolder` holds one meta file (the settings a run was started with) and JSON records beside it,
or - folder=None - the same records in memory only. `open(meta)` writes the meta of a new folder or
compares it with the folder's: one message, "<folder> was written for k=old, this run has k=new (also
...); allowed: ...", for evaluation states, resumed training runs (the settings recorded in the
checkpoint) and sweep points alike (`mismatch` gives the line without raising); reads are
tolerant (a missing record is None, a broken file one line saying how to start over); writes are
atomic (a kill leaves the old file or the new one). The evaluation suite (eval/suite_state.py) and
the AutoAttack cascade (eval/cascade_state.py) keep their records in one.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from .checkpoint import write_json_atomic
from .fields import same_value
from .validation import one_line

try:
    import fcntl
except ImportError:  # no flock (Windows): every lock is taken, nothing is kept out
    fcntl = None


class FolderLock:
    """An exclusive lock on a folder while a process writes it: `with FolderLock(out): ...`.

    flock on FOLDER/`name` (which holds the holder's PID): the kernel drops it when the holder exits,
    even on kill -9, so a lock is never stale. Entering when another process holds it raises one
    ValueError line naming the folder, the holder's PID and `how` to proceed; `acquire()` answers
    False instead. Two locks of one process on one file also exclude each other (flock is per open file).
    """

    def __init__(self, folder, name: str = ".lock", *, what: str = "run folder", by: str = "robustfront process",
                 how: str = "one writer at a time (wait for it, or use another --out)"):
        self.folder, self.path = Path(folder), Path(folder) / name
        self.what, self.by, self.how = what, by, how
        self._fd = None

    def acquire(self) -> bool:
        """Take the lock (creating the folder) and write this PID into it; False if another holds it."""
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                return False
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing releases the flock; the file stays (removing it would race)
            self._fd = None

    def held_elsewhere(self) -> bool:
        """Does another process (or another lock of this one) hold it now? Takes and writes nothing."""
        if fcntl is None or not self.path.is_file():
            return False
        fd = os.open(self.path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return False
        except OSError:
            return True
        finally:
            os.close(fd)  # releases the probe's shared lock

    def holder(self) -> str:
        """The PID written by the holder ("?" if it cannot be read)."""
        try:
            return self.path.read_text().strip() or "?"
        except OSError:
            return "?"

    def refusal(self) -> str:
        return one_line(f"{self.what} {self.folder} is in use by another {self.by} (PID {self.holder()}); "
                        f"allowed: {self.how}")

    def __enter__(self) -> "FolderLock":
        if self._fd is None and not self.acquire():  # (already taken by acquire(): kept)
            raise ValueError(self.refusal())
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def read_json(path: Path, what: str = "state file", writer: str = "robustfront") -> dict:
    """One JSON file of a state folder; a broken one is one line saying how to start over."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"{what} {path} cannot be read ({(str(e).splitlines() or [''])[0][:120]}); "
                         f"allowed: a file written by {writer} (delete it to start over)") from None


UNSET = "<unset>"


def _short(v) -> str:
    s = v if v is UNSET else json.dumps(v)
    return s if len(s) < 60 else s[:57] + "..."


def flat(d: dict, prefix: str = "") -> dict:
    """Nested settings as dotted keys: {"model_args": {"width": 8}} -> {"model_args.width": 8}."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def differences(old: dict, new: dict, unchecked=()) -> list[str]:
    """The keys (new's order, then old's) whose values differ by meaning ("8/255" equals 0.0313...,
    1 equals 1.0); a missing key differs from any value; `unchecked` keys and their dotted sub-keys
    are left out."""
    def skip(k: str) -> bool:
        return any(k == u or k.startswith(f"{u}.") for u in unchecked)
    return [k for k in dict.fromkeys([*new, *old]) if not skip(k)
            and same_value(old.get(k, UNSET)) != same_value(new.get(k, UNSET))]


def settings_refusal(where: str, old: dict, new: dict, keys: list[str], allowed: str) -> str:
    """The one line refusing a folder written for other settings: the first key that differs with both
    values, the others after "also"."""
    k, rest = keys[0], keys[1:]
    also = ", ".join(f"{j}={_short(old.get(j, UNSET))} -> {_short(new.get(j, UNSET))}" for j in rest[:6])
    also = f" (also {also}{f' and {len(rest) - 6} more' if len(rest) > 6 else ''})" if rest else ""
    return one_line(f"{where} was written for {k}={_short(old.get(k, UNSET))}, this run has "
                    f"{k}={_short(new.get(k, UNSET))}{also}; allowed: {allowed}")


class StateFolder:
    """meta + JSON records under `folder`, or in memory (folder=None). `kind` and `allowed` word the
    refusal of other settings (default: an evaluation's --state folder)."""

    def __init__(self, folder, meta_name: str, *, what: str = "state file", writer: str = "robustfront",
                 kind: str = "state folder", allowed: str | None = None):
        self.folder = None if folder is None else Path(folder)
        self.meta_name, self.what, self.writer, self.kind = meta_name, what, writer, kind
        self.allowed = allowed or (f"the same settings, or another state folder (--state DIR, or delete "
                                   f"{self.folder} to start over)")
        self._memory: dict[str, dict] = {}

    def existing_meta(self) -> dict | None:
        return self.read(self.meta_name) if self.folder is not None else None

    def mismatch(self, meta: dict, *, unchecked=(), recorded: dict | None = None) -> str | None:
        """The refusal line when the folder was written for other settings than `meta`, else None.
        recorded: the settings the folder was written for, where they live elsewhere than its meta
        file (a run's checkpoint, a view of a sweep point's record); default: the meta file's."""
        old = self.existing_meta() if recorded is None else recorded
        keys = [] if old is None else differences(old, meta, unchecked)
        return settings_refusal(f"{self.kind} {self.folder}", old, meta, keys, self.allowed) if keys else None

    def open(self, meta: dict, *, unchecked=(), recorded: dict | None = None) -> dict:
        """Write meta (a new folder) or check it against the folder's (a resumed run); keys in
        `unchecked` may differ and take this run's values. Returns the meta in force. With `recorded`
        (see `mismatch`) only the check is made: nothing is written."""
        old = self.existing_meta() if recorded is None else recorded
        if old is None:
            if self.folder is not None and recorded is None:
                write_json_atomic(self.folder / self.meta_name, meta)
            return meta
        problem = self.mismatch(meta, unchecked=unchecked, recorded=old)
        if problem:
            raise ValueError(problem)
        return {**old, **{k: meta[k] for k in unchecked if k in meta}}

    def read(self, name: str) -> dict | None:
        """The record `name` (a path relative to the folder), or None when it was never written."""
        if self.folder is None:
            return self._memory.get(name)
        p = self.folder / name
        return read_json(p, self.what, self.writer) if p.is_file() else None

    def write(self, name: str, record: dict) -> None:
        if self.folder is None:
            self._memory[name] = record
        else:
            write_json_atomic(self.folder / name, record)

    def records(self, sub: str = "", pattern: str = "chunk-*.json") -> list[dict]:
        """Every record matching `pattern` under `sub`, in name order."""
        if self.folder is None:
            prefix = f"{sub}/" if sub else ""
            return [r for n, r in sorted(self._memory.items()) if n.startswith(prefix)
                    and Path(n[len(prefix):]).match(pattern) and "/" not in n[len(prefix):]]
        return [read_json(p, self.what, self.writer) for p in sorted((self.folder / sub).glob(pattern))]


__all__ = ["FolderLock", "StateFolder", "differences", "flat", "read_json", "settings_refusal"]

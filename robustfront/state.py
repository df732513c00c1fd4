"""Resumable state folders: "is this folder mine, and was it written for these settings?" answered once.

A `StateFolder` holds one meta file (the settings a run was started with) and JSON records beside it,
or - folder=None - the same records in memory only. `open(meta)` writes the meta of a new folder or
compares it with the folder's (one message naming the first setting that differs); reads are
tolerant (a missing record is None, a broken file one line saying how to start over); writes are
atomic (a kill leaves the old file or the new one). The evaluation suite (eval/suite_state.py) and
the AutoAttack cascade (eval/cascade_state.py) keep their records in one.
"""
from __future__ import annotations

import json
from pathlib import Path

from .checkpoint import write_json_atomic


def read_json(path: Path, what: str = "state file", writer: str = "robustfront") -> dict:
    """One JSON file of a state folder; a broken one is one line saying how to start over."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"{what} {path} cannot be read ({(str(e).splitlines() or [''])[0][:120]}); "
                         f"allowed: a file written by {writer} (delete it to start over)") from None


def _short(v) -> str:
    s = json.dumps(v)
    return s if len(s) < 60 else s[:57] + "..."


class StateFolder:
    """meta + JSON records under `folder`, or in memory (folder=None)."""

    def __init__(self, folder, meta_name: str, *, what: str = "state file", writer: str = "robustfront"):
        self.folder = None if folder is None else Path(folder)
        self.meta_name, self.what, self.writer = meta_name, what, writer
        self._memory: dict[str, dict] = {}

    def existing_meta(self) -> dict | None:
        return self.read(self.meta_name) if self.folder is not None else None

    def open(self, meta: dict, *, unchecked=()) -> dict:
        """Write meta (a new folder) or check it against the folder's (a resumed run); keys in
        `unchecked` may differ and take this run's values. Returns the meta in force."""
        old = self.existing_meta()
        if old is None:
            if self.folder is not None:
                write_json_atomic(self.folder / self.meta_name, meta)
            return meta
        for k, v in meta.items():
            if k not in unchecked and old.get(k) != v:
                raise ValueError(f"state folder {self.folder} was written for {k}={_short(old.get(k))}, this run has "
                                 f"{k}={_short(v)}; allowed: the same settings, or another state folder (--state DIR, "
                                 f"or delete {self.folder} to start over)")
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


__all__ = ["StateFolder", "read_json"]

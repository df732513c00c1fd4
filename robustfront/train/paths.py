"""Paths in a run's config stored absolute, so that the run can be evaluated or resumed from any
working directory; what the user typed is kept beside them (`as_typed`) for the record."""
from __future__ import annotations

from pathlib import Path

PATH_KEYS = ("data", "data_root", "pretrained")


def _is_name(key: str, value: str) -> bool:
    """A data set name (digits, cifar10, gaussian:...) rather than a path."""
    from ..data import NAMES
    return key == "data" and (value in NAMES or value in ("digits", "gaussian") or value.startswith("gaussian:"))


def absolute_paths(values: dict) -> dict:
    """Replace each relative path among PATH_KEYS of `values` that exists here by its absolute form;
    returns {key: the value as typed} for those replaced. Paths that do not exist are left as typed
    (loading them gives the error, naming them as the user wrote them)."""
    typed = {}
    for key in PATH_KEYS:
        v = values.get(key)
        if not isinstance(v, str) or not v.strip() or _is_name(key, v):
            continue
        p = Path(v).expanduser()
        if p.exists() and str(p.absolute()) != v:
            values[key] = str(p.absolute())
            typed[key] = v
    return typed


__all__ = ["PATH_KEYS", "absolute_paths"]

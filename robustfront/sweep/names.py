"""Point folder names and value hashes: deterministic, filesystem-safe, unique within a sweep."""
from __future__ import annotations

import hashlib
import json
import re
from typing import Any

NAME_CHARS = re.compile(r"[^A-Za-z0-9._+-]")
MAX_NAME = 150


def labels(keys: list[str]) -> dict[str, str]:
    """Folder-name label of each varied key: its last dotted part (gamma), unless two keys share it."""
    keys = list(dict.fromkeys(keys))
    short = {k: k.rpartition(".")[2] for k in keys}
    return {k: s if list(short.values()).count(s) == 1 else k for k, s in short.items()}


def format_value(v: Any) -> str:
    """A value as it appears in a folder name: 0.8, 1 (also for 1.0), true, 8_255 for "8/255"."""
    if isinstance(v, bool) or v is None:
        text = json.dumps(v)
    elif isinstance(v, float):
        text = str(int(v)) if v.is_integer() else repr(v)
    elif isinstance(v, (list, tuple)):
        text = "+".join(format_value(x) for x in v)
    elif isinstance(v, dict):
        text = "+".join(f"{k}-{format_value(x)}" for k, x in v.items())
    else:
        text = str(v)
    return NAME_CHARS.sub("_", text)


def point_name(varied: dict, labels: dict) -> str:
    """method first, seed last, the rest in declaration order: method=ca_at,gamma=0.8,seed=1."""
    keys = sorted(varied, key=lambda k: (k != "method", k == "seed"))
    return ",".join(f"{labels[k]}={format_value(varied[k])}" for k in keys) or "base"


def unique(names: list[str], varied: list[dict]) -> list[str]:
    """Names that collide after making them filesystem-safe (or are too long) get a short hash of their values."""
    out = []
    for n, v in zip(names, varied):
        if names.count(n) > 1 or len(n) > MAX_NAME:
            n = f"{n[:MAX_NAME]}~{short_hash(v, 8)}"
        out.append(n)
    return out


def canonical(obj: Any) -> str:
    """One spelling per value: sorted keys, integral floats as ints (1.0 and 1 are the same setting)."""
    def norm(x):
        if isinstance(x, float) and x.is_integer():
            return int(x)
        if isinstance(x, dict):
            return {str(k): norm(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [norm(v) for v in x]
        return x
    return json.dumps(norm(obj), sort_keys=True, separators=(",", ":"))


def short_hash(obj: Any, n: int = 16) -> str:
    return hashlib.sha256(canonical(obj).encode()).hexdigest()[:n]


__all__ = ["canonical", "format_value", "labels", "point_name", "short_hash", "unique"]

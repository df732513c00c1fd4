"""Tolerant readers of the text files runs keep: .jsonl records and YAML configs (one-line errors)."""
from __future__ import annotations

import json
from pathlib import Path

import yaml


def read_jsonl(path) -> list[dict]:
    """The records of a .jsonl file (none if it is missing); a line a crash cut short (power loss
    mid-append) is dropped: a resume rebuilds metrics.jsonl from the checkpoint's history."""
    out = []
    for line in Path(path).read_text().splitlines() if Path(path).is_file() else []:
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def read_yaml(path) -> dict:
    """A YAML mapping from a (config) file; one-line errors for a missing file, a syntax error, or no mapping."""
    try:
        with open(path) as f:
            d = yaml.safe_load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"config file {path} does not exist") from None
    except IsADirectoryError:
        raise ValueError(f"config file {path} is a folder; allowed: a YAML file") from None
    except UnicodeDecodeError:
        raise ValueError(f"config file {path} is not text; allowed: a YAML file") from None
    except yaml.YAMLError as e:
        # getattr: PyYAML's error attributes differ between its error classes
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ValueError(f"config file {path} is not valid YAML{where}: {problem}") from None
    d = {} if d is None else d
    if not isinstance(d, dict):
        raise ValueError(f"config file {path} holds a {type(d).__name__}; allowed: a mapping of config keys to values")
    return d

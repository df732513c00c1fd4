"""A sweep file: one base run config, the values to vary, and one evaluation protocol.

    name: digits_fronts                  # optional label (default: the file's stem)
    base: {TrainConfig keys}             # every point starts from this (no `out`: the sweep names it)
    seeds: 3                             # shorthand for seed: [0, 1, 2] (or a list); the outermost loop
    grid: {KEY: [v1, v2, ...], ...}      # cartesian product over every point
    zip: {KEY: [...], KEY2: [...]}       # lists varied together (equal lengths); or a list of such groups
    methods:                             # per-method sub-grids; each block sets the point's `method`
      vanilla: {grid: {opts.lam: [0, 0.5, 1]}}
      ca_at: {grid: {opts.gamma: [0.8, 0.9]}, set: {lr: 0.05}}   # `set`: fixed values for this method
      pgd_at: {}
    eval: {attacks: [pgd20, autoattack], eps: 8/255, norm: Linf, n: 1000, seed: 0, split: test}

KEY is a TrainConfig field (`seed`, `epochs`, `method`, ...) or `opts.NAME` / `model_args.NAME`
(an entry of a dict field). Points are expanded in a fixed order: seeds, then the method blocks in
file order, then grid, zip, the method's grid and zip, the last key varying fastest.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
from pathlib import Path
from typing import Any


from ..validation import check_choice, check_int, invalid
from .names import canonical, labels, point_name, short_hash, unique

TOP_KEYS = ("name", "base", "seeds", "grid", "zip", "methods", "eval")
METHOD_KEYS = ("grid", "zip", "set")
EVAL_KEYS = ("attacks", "eps", "norm", "n", "seed", "split", "batch_size")
EVAL_DEFAULTS = {"attacks": ["pgd20", "autoattack"], "eps": None, "norm": None, "n": None, "seed": 0,
                 "split": "test", "batch_size": None}
DICT_FIELDS = ("opts", "model_args")
RESERVED = ("out",)


@dataclasses.dataclass(frozen=True)
class Point:
    """One run of a sweep: its folder name, the values it varies (in name order) and its whole config."""
    name: str
    varied: dict
    config: dict


@dataclasses.dataclass
class SweepSpec:
    name: str
    base: dict
    axes: list            # [(source, {key: [values]}, zipped)] shared by every point
    methods: list         # [(method or None, set: dict, [(source, {key: [values]}, zipped)])]
    eval: dict
    raw: dict


def _train_fields() -> dict:
    from ..train import (
        TrainConfig,  # the stable training API: the keys a run config may hold
    )
    return {f.name: f for f in dataclasses.fields(TrainConfig)}


def _check_key(key: Any, where: str, fields: dict) -> str:
    if not isinstance(key, str) or not key:
        raise invalid(f"{where} key", key, "a TrainConfig field or opts.NAME / model_args.NAME", "not a key")
    head, _, tail = key.partition(".")
    if key in RESERVED:
        raise invalid(f"{where} key", key, "any TrainConfig field but out (the sweep names each point's folder)",
                      "reserved")
    if head not in fields:
        names = ", ".join(f for f in fields if f not in RESERVED)
        raise invalid(f"{where} key", key, f"a TrainConfig field ({names}) or opts.NAME / model_args.NAME", "unknown")
    if tail and (head not in DICT_FIELDS or not tail or "." in tail):
        raise invalid(f"{where} key", key, "a dotted key only into opts or model_args, one level (opts.lam)",
                      "not addressable")
    return key


def _values(key: str, values: Any, where: str, distinct: bool = True) -> list:
    if not isinstance(values, list):
        raise invalid(f"{where}.{key}", values, "a non-empty list of values", "not a list")
    if not values:
        raise invalid(f"{where}.{key}", values, "a non-empty list of values", "empty")
    if not distinct:
        return values
    seen = set()
    for v in values:
        c = canonical(v)
        if c in seen:
            raise invalid(f"{where}.{key}", values, "distinct values (each would be the same point twice)",
                          f"repeating {v!r}")
        seen.add(c)
    return values


def _axes(block: Any, where: str, fields: dict, zipped: bool) -> list:
    """One grid mapping, or zip groups (a mapping or a list of mappings), as [(where, {key: values}, zipped)]."""
    if block is None:
        return []
    groups = block if zipped and isinstance(block, list) else [block]
    out = []
    for i, g in enumerate(groups):
        label = f"{where}[{i}]" if len(groups) > 1 else where
        if not isinstance(g, dict) or not g:
            raise invalid(label, g, "a non-empty mapping of KEY: [values]", "not a mapping" if g else "empty")
        # a zip list may repeat a value: its points are the tuples, and those must be distinct
        axes = {_check_key(k, label, fields): _values(k, v, label, distinct=not zipped) for k, v in g.items()}
        if zipped:
            lengths = {k: len(v) for k, v in axes.items()}
            if len(set(lengths.values())) > 1:
                raise invalid(f"{label} lengths", lengths, "lists of one length (zip varies them together)",
                              "unequal")
            rows = [tuple(canonical(v[i]) for v in axes.values()) for i in range(len(next(iter(axes.values()))))]
            if len(set(rows)) < len(rows):
                raise invalid(label, g, "distinct tuples (each would be the same point twice)", "repeating a tuple")
        out.append((label, axes, zipped))
    return out


def _no_twice(owners: dict, key: str, where: str) -> None:
    """A key may be varied (or set per method) in one place only; `opts` and `opts.lam` overlap too."""
    for other, src in owners.items():
        if other == key or other.startswith(key + ".") or key.startswith(other + "."):
            raise invalid("key", key, "each key varied in one place", f"varied twice ({src} and {where})")
    owners[key] = where


def parse_spec(raw: Any, *, name: str = "sweep") -> SweepSpec:
    """Validate a sweep mapping (see the module docstring); every problem is one ValueError line."""
    if not isinstance(raw, dict):
        raise invalid("sweep", type(raw).__name__, "a mapping with keys " + ", ".join(TOP_KEYS), "not a mapping")
    for k in raw:
        check_choice("sweep key", k, TOP_KEYS)
    fields = _train_fields()
    base = raw.get("base") or {}
    if not isinstance(base, dict):
        raise invalid("base", base, "a mapping of TrainConfig keys to values", "not a mapping")
    for k in base:
        _check_key(k, "base", fields)
        if "." in k:
            raise invalid("base key", k, f"nested mappings in base ({k.split('.')[0]}: {{...}})", "dotted")
    owners: dict = {}
    axes = []
    if raw.get("seeds") is not None:
        seeds = raw["seeds"]
        if isinstance(seeds, list):
            for s in _values("seed", seeds, "seeds"):
                check_int("seeds entry", s, 0)
        else:
            seeds = list(range(check_int("seeds", seeds, 1)))
        axes.append(("seeds", {"seed": seeds}, False))
    axes += _axes(raw.get("grid"), "grid", fields, False) + _axes(raw.get("zip"), "zip", fields, True)
    for src, group, _ in axes:
        for k in group:
            _no_twice(owners, k, src)
    methods = _methods(raw.get("methods"), fields, owners)
    spec_name = raw.get("name", name)
    if not isinstance(spec_name, str) or not spec_name.strip():
        raise invalid("name", spec_name, "a non-empty label")
    return SweepSpec(spec_name, base, axes, methods, parse_eval(raw.get("eval")), raw)


def _methods(block: Any, fields: dict, owners: dict) -> list:
    if block is None:
        return [(None, {}, [])]
    if "method" in owners:
        raise invalid("key", "method", "each key varied in one place", f"varied twice ({owners['method']} and methods)")
    if isinstance(block, list):
        if not all(isinstance(m, str) for m in block) or len(set(block)) < len(block):
            raise invalid("methods", block, "a list of distinct method names, or a mapping of name to "
                          "{grid, zip, set}")
        block = {m: {} for m in block}
    if not isinstance(block, dict) or not block:
        raise invalid("methods", block, "a non-empty mapping of method name to {grid, zip, set}, or a list of names",
                      "empty" if not block else "not a mapping")
    out = []
    for m, sub in block.items():
        sub = {} if sub is None else sub
        if not isinstance(sub, dict):
            raise invalid(f"methods.{m}", sub, "a mapping with keys grid, zip, set", "not a mapping")
        for k in sub:
            check_choice(f"methods.{m} key", k, METHOD_KEYS)
        local = dict(owners)
        fixed = sub.get("set") or {}
        if not isinstance(fixed, dict):
            raise invalid(f"methods.{m}.set", fixed, "a mapping of KEY: value", "not a mapping")
        for k in fixed:
            _no_twice(local, _check_key(k, f"methods.{m}.set", fields), f"methods.{m}.set")
            if k == "method":
                raise invalid(f"methods.{m}.set key", k, "any key but method (the block names it)", "reserved")
        axes = (_axes(sub.get("grid"), f"methods.{m}.grid", fields, False)
                + _axes(sub.get("zip"), f"methods.{m}.zip", fields, True))
        for src, group, _ in axes:
            for k in group:
                if k == "method":
                    raise invalid(f"{src} key", k, "any key but method (the block names it)", "reserved")
                _no_twice(local, k, src)
        out.append((m, fixed, axes))
    return out


def parse_eval(block: Any) -> dict:
    """The sweep's evaluation protocol with defaults filled in (eps/norm None = each point's training
    ones), validated as the `EvalConfig` every point's evaluation is built from; values keep the
    spelling they were given in (they name the protocol in the sweep's hashes)."""
    from ..eval import EvalConfig
    block = {} if block is None else block
    if not isinstance(block, dict):
        raise invalid("eval", block, "a mapping with keys " + ", ".join(EVAL_KEYS), "not a mapping")
    for k in block:
        check_choice("eval key", k, EVAL_KEYS)
    ev = {**EVAL_DEFAULTS, **block}
    try:
        cfg = EvalConfig(**ev)
    except ValueError as e:   # the config names the field; the spec names its block too
        msg = str(e)
        raise ValueError(f"eval.{msg}" if msg.split("=", 1)[0] in EVAL_KEYS else msg) from None
    ev["attacks"] = list(cfg.attacks)
    return ev


def load_spec(spec: Any) -> SweepSpec:
    """A SweepSpec from itself, a mapping, or a YAML file path."""
    if isinstance(spec, SweepSpec):
        return spec
    if isinstance(spec, (str, Path)):
        path = Path(spec)
        if not path.is_file():
            raise FileNotFoundError(f"sweep file {path} does not exist" + (" (a folder)" if path.is_dir() else ""))
        from ..checkpoint import read_yaml
        raw = read_yaml(path)  # one line for syntax errors, binary files, tags
        try:
            return parse_spec(raw, name=path.stem)
        except ValueError as e:  # name the file: a run config given as a sweep file is a common slip
            raise ValueError(f"sweep file {path}: {e}") from None
    return parse_spec(spec)


# -- expansion -----------------------------------------------------------------------------------
def set_key(cfg: dict, key: str, value: Any) -> None:
    head, _, tail = key.partition(".")
    if tail:
        cfg[head] = {**(cfg.get(head) or {}), tail: value}
    else:
        cfg[head] = value


def _combos(axes: list) -> list[list[tuple[str, Any]]]:
    """The cartesian product over axes; a zip group contributes its lists position by position."""
    factors = []
    for _, group, zipped in axes:
        keys = list(group)
        if zipped:
            factors.append([list(zip(keys, vals)) for vals in zip(*group.values())])
        else:
            factors += [[[(k, v)] for v in group[k]] for k in keys]
    return [list(itertools.chain.from_iterable(c)) for c in itertools.product(*factors)]


def expand(spec: Any) -> list[Point]:
    """Every point of the sweep, in the fixed order, each config validated; names unique and stable."""
    spec = load_spec(spec)
    from ..train import TrainConfig
    seeds = [a for a in spec.axes if a[0] == "seeds"]
    shared = [a for a in spec.axes if a[0] != "seeds"]
    raw_points = []
    for seed_combo in _combos(seeds):
        for method, fixed, axes in spec.methods:
            for combo in _combos(shared + axes):
                cfg = json.loads(json.dumps(spec.base))  # a deep copy of plain data
                varied = ([("method", method)] if method is not None else []) + combo + seed_combo
                for k, v in list(fixed.items()) + varied:
                    set_key(cfg, k, v)
                raw_points.append((dict(varied), cfg))
    label = labels([k for v, _ in raw_points for k in v])
    names = unique([point_name(v, label) for v, _ in raw_points], [v for v, _ in raw_points])
    points = []
    for name, (varied, cfg) in zip(names, raw_points):
        try:
            c = TrainConfig.from_dict(cfg)   # validated at construction
            _check_method(c)
            cfg = c.to_dict()
        except (TypeError, ValueError) as e:
            raise ValueError(f"point {name}: {' '.join(str(e).split())}") from None
        cfg.pop("out", None)
        points.append(Point(name, varied, cfg))
    return points


def _check_method(cfg) -> None:
    """The method exists and accepts its opts (objective, combiner, training attack), before any point
    trains: the point's objective and combiner are built once, as training will build them."""
    from ..train import build_method
    from ..train.build import training_threat
    build_method(cfg, training_threat(cfg, (0.0, 1.0)))


__all__ = ["Point", "SweepSpec", "canonical", "expand", "load_spec", "parse_eval", "parse_spec", "short_hash"]

"""Command-line flags generated from a config dataclass: one flag per field, typed and described by
its declaration (the type gives choices, int parsing or a metavar; the comment after the field is
the help text). `robustfront train` (TrainConfig) and `robustfront eval` (EvalConfig) both use it."""
from __future__ import annotations

import argparse
import dataclasses
import typing

from ..fields import Checked, Num, base_type, field_comments, plain


def add_fields(p, cls, *, only=None, skip=(), special=None, allowed=None, defaults=False) -> None:
    """A flag per field of `cls` (those in `only`, less `skip`). special: {field: add_argument keywords}
    over the generated ones ("flag" renames it, e.g. a repeatable --opt KEY=VALUE); allowed: {field: text} appended to
    the help as "allowed: ..."; defaults: argparse defaults are the declared ones (else None, so that
    only the flags given override a config file). A bool is --flag/--no-flag, or --flag alone when
    `defaults` (a switch that turns on what is off by default)."""
    hints = typing.get_type_hints(cls)
    declared = {f.name: plain(f.default if f.default is not dataclasses.MISSING else f.default_factory())
                for f in dataclasses.fields(cls)}
    special, allowed = special or {}, allowed or {}
    for f in dataclasses.fields(cls):
        if (only is not None and f.name not in only) or f.name in skip:
            continue
        flag, hint, default = "--" + f.name.replace("_", "-"), base_type(hints[f.name]), declared[f.name]
        text = field_comments(cls).get(f.name, "")
        kw: dict = {}
        if typing.get_origin(hint) is typing.Literal:
            kw["choices"] = typing.get_args(hint)
        elif hint is bool:
            kw["action"] = "store_true" if defaults and not default else argparse.BooleanOptionalAction
        elif hint is int:
            kw["type"], kw["metavar"] = int, "N"
        elif hint is Num:
            kw["metavar"] = "X"
            text += " (a number or a fraction like 8/255)"
        elif isinstance(hint, type) and issubclass(hint, Checked):
            kw["metavar"] = hint.metavar
        elif hint is list:
            kw["type"], kw["metavar"] = name_list, "A,B"
        shown = "none" if default in (None, [], {}) else (",".join(map(str, default)) if isinstance(default, list)
                                                           else default)
        if f.name in allowed:
            text += f"; allowed: {allowed[f.name]}"
        if "default" not in text and not (hint is bool and defaults and not default):
            text += f" (default: {shown})"
        kw.update(default=default if defaults else None, help=text.replace("%", "%%"))
        kw.update(special.get(f.name, {}))
        p.add_argument(kw.pop("flag", flag), dest=f.name, **kw)


def name_list(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def given(args, cls) -> dict:
    """{field: value} of the flags that carry a value (None = not given)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in vars(args).items() if k in names and v is not None}


__all__ = ["add_fields", "given", "name_list"]

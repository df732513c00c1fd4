"""Typed configuration fields, declared once: what `TrainConfig` and `EvalConfig` are made of.

A config is a dataclass whose field types say what each field accepts and whose trailing comments
are the fields' help texts; `coerce_fields(obj)` checks every value against its declared type (one
line naming the value when it is wrong) and the CLI generates its flags from the same declarations
(cli/flags.py). `Num` fields take numbers or fractions and keep their spelling ("8/255" stays
"8/255" in a saved config), `Literal[...]` fields list their allowed values, and a `Checked`
subclass (a list or dict type with a `check(name, value)` classmethod) converts and checks a
compound value such as a list of budgets.
"""
from __future__ import annotations

import dataclasses
import functools
import inspect
import re
import typing
from typing import Literal

from .validation import check_bool, check_choice, check_int, invalid, parse_number


class Num(float):
    """A float that remembers how it was written: Num("8/255") == 8/255 and str() gives "8/255"."""

    def __new__(cls, value, name: str = "value"):
        if isinstance(value, Num):
            return value
        self = super().__new__(cls, parse_number(value, name))
        self.text = value.strip() if isinstance(value, str) else repr(value)
        return self

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return repr(self.text) if "/" in self.text else float.__repr__(self)

    def plain(self):
        """For YAML/JSON: the fraction's text, or the float."""
        return self.text if "/" in self.text else float(self)


class Checked:
    """Base of field types that check and convert their own values: `check(name, value)` returns the
    converted value or raises one line (the field's help says what is allowed)."""
    metavar = "X"

    @classmethod
    def check(cls, name: str, value):
        raise NotImplementedError


def coerce(name: str, v, hint):
    """Check one value against its declared type; returns it converted (Num) or raises one line."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) is typing.Union:       # Optional[X]
        if v is None:
            return None
        hint = next(a for a in args if a is not type(None))
        args = typing.get_args(hint)
    if isinstance(hint, type) and issubclass(hint, Checked):
        return hint.check(name, v)
    if hint is Num:
        try:
            return Num(v, name)
        except ValueError:
            raise invalid(name, v, "a finite number or a fraction like 8/255", "not a number") from None
    if typing.get_origin(hint) is Literal:
        return check_choice(name, v, args)
    if hint is bool:
        return check_bool(name, v)
    if hint is int:
        return check_int(name, v)
    if hint is str:
        if not isinstance(v, str):
            raise invalid(name, v, "a string")
        return v
    if hint is dict:
        if not isinstance(v, dict) or not all(isinstance(k, str) for k in v):
            raise invalid(name, v, "a mapping of names to values")
        return dict(v)
    if hint is list:
        if isinstance(v, (str, bytes)) or not isinstance(v, (list, tuple)):
            raise invalid(name, v, "a list")
        return list(v)
    return v


def coerce_fields(obj) -> None:
    """Every field of the dataclass `obj` checked against its declared type, converted in place."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        # getattr/setattr: the dataclass's own fields by name
        setattr(obj, f.name, coerce(f.name, getattr(obj, f.name), hints[f.name]))


def base_type(hint):
    """X for Optional[X], else the hint itself."""
    if typing.get_origin(hint) is typing.Union:
        return next(a for a in typing.get_args(hint) if a is not type(None))
    return hint


def plain(v):
    """Plain values for YAML/JSON (fractions as their text)."""
    if isinstance(v, Num):
        return v.plain()
    if isinstance(v, dict):
        return {k: plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    return v


def same_value(v):
    """A value compared by what it means: "8/255" equals 0.0313..."""
    try:
        return parse_number(v) if isinstance(v, str) and "/" in v else v
    except ValueError:
        return v


@functools.lru_cache(maxsize=None)
def field_comments(cls) -> dict[str, str]:
    """{field: the comment after its declaration} (the help texts), read once per class."""
    src = inspect.getsource(cls)
    return {m.group(1): m.group(2).strip() for m in re.finditer(r"^\s+(\w+): [^\n]*?#\s*(.+)$", src, re.M)}


__all__ = ["Checked", "Num", "base_type", "coerce", "coerce_fields", "field_comments", "plain", "same_value"]

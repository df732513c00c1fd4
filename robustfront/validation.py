"""Checks for every user-facing value, with one message form:

    NAME=VALUE is PROBLEM; allowed: WHAT

so that a bad flag, YAML key, attack argument or hyper-parameter always reads the same way. The
ground floor: imports nothing from robustfront.
"""
from __future__ import annotations

import math
import numbers
from fractions import Fraction
from typing import Any, Iterable

NUMBER = "a number or a fraction like 8/255"


def invalid(name: str, value: Any, allowed: str, problem: str = "invalid") -> ValueError:
    """The ValueError every check raises: `name=value is problem; allowed: allowed`, one line."""
    text = f"{name}={value!r} is {problem}; allowed: {allowed}"
    return ValueError(" ".join(text.split()))


def parse_number(value: Any, name: str = "value") -> float:
    """A finite real from 0.03, "0.03", "1e-3" or "8/255" (budgets are written as fractions of 255).

    Booleans, NaN and infinities (also written as 1e999) are refused.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, str, Fraction)):
        raise invalid(name, value, NUMBER, "not a number")
    try:
        v = float(Fraction(value.strip())) if isinstance(value, str) else float(value)
    except (ValueError, ZeroDivisionError, OverflowError):
        # "1e999" is a valid float spelling of inf; Fraction refuses it, float() gives inf below
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise invalid(name, value, NUMBER, "not a number") from None
    if not math.isfinite(v):
        raise invalid(name, value, "a finite number", "not finite")
    return v


def _bound(lo, hi, lo_strict, hi_strict) -> str:
    parts = []
    if lo is not None:
        parts.append(f"{'>' if lo_strict else '>='} {lo:g}")
    if hi is not None:
        parts.append(f"{'<' if hi_strict else '<='} {hi:g}")
    return " and ".join(parts)


def check_number(name: str, v: Any, lo: float | None = None, *, strict: bool = False, hi: float | None = None,
                 hi_strict: bool = False) -> float:
    """A finite real in [lo, hi] (open ends with strict / hi_strict); "8/255" spellings accepted."""
    allowed = ("a finite number " + _bound(lo, hi, strict, hi_strict)).strip()
    if isinstance(v, bool):
        raise invalid(name, v, allowed)
    try:
        x = parse_number(v, name)
    except ValueError:
        raise invalid(name, v, allowed) from None
    if (lo is not None and (x < lo or (strict and x == lo))) or (hi is not None and (x > hi or (hi_strict and x == hi))):
        raise invalid(name, v, allowed)
    return x


def check_int(name: str, v: Any, lo: int | None = None, hi: int | None = None) -> int:
    """An integer (not a bool, not 2.5) in [lo, hi]."""
    allowed = ("an integer " + _bound(lo, hi, False, False)).strip()
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        raise invalid(name, v, allowed)
    v = int(v)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise invalid(name, v, allowed)
    return v


def check_choice(name: str, v: Any, allowed: Iterable) -> Any:
    """One of `allowed` (compared with ==; booleans are not confused with 0/1)."""
    allowed = tuple(allowed)
    if not any(type(v) is type(a) and v == a for a in allowed):
        raise invalid(name, v, ", ".join(map(str, allowed)), "unknown")
    return v


def check_bool(name: str, v: Any) -> bool:
    """True or False only: a quoted 'no' in YAML is a string, and reading it as True would be a silent error."""
    if isinstance(v, bool):
        return v
    raise invalid(name, v, "true or false (unquoted in YAML)")


def check_path_text(name: str, v: Any) -> str:
    """A non-empty path string (an empty --out would write into the current folder)."""
    if not isinstance(v, str) or not v.strip():
        raise invalid(name, v, "a non-empty path")
    return v




def check_like(name: str, v: Any, default: Any) -> Any:
    """A user-given hyper-parameter checked against the type of its default: numbers (also "8/255"),
    integers, booleans and strings; other defaults (None, tuples) accept any value, and None (YAML
    null) is passed on for the constructor to accept or refuse."""
    if v is None:
        return None
    if isinstance(default, bool):
        return check_bool(name, v)
    if isinstance(default, int):
        return check_int(name, v)
    if isinstance(default, float):
        return check_number(name, v)
    if isinstance(default, str) and not isinstance(v, str):
        raise invalid(name, v, "a string")
    return v


__all__ = ["check_bool", "check_choice", "check_int", "check_like", "check_number", "check_path_text", "invalid",
           "parse_number"]

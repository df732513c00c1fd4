"""Checks for every user-facing value, with one message form:

    NAME=VALUE is PROBLEM; allowed: WHAT

so that a bad flag, YAML key, attack argument or hyper-parameter always reads the same way. The
ground floor: imports nothing from robustfront.
"""
from __future__ import annotations

import math
import numbers
import re
from fractions import Fraction
from typing import Any, Iterable

NUMBER = "a number or a fraction like 8/255"


def shown(value: Any, limit: int = 120) -> str:
    """repr(value) for a message: never raises (a 5000-digit int has no str), never long."""
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - e.g. ints beyond sys.get_int_max_str_digits()
        text = f"<{type(value).__name__} too large to show>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def one_line(text: Any) -> str:
    """`text` with every run of whitespace (newlines included) collapsed to one space."""
    return " ".join(str(text).split())


def reason(exc: BaseException, limit: int = 160) -> str:
    """The first non-empty line of an exception's message (or its type name), for a one-line error."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def invalid(name: str, value: Any, allowed: str, problem: str = "invalid") -> ValueError:
    """The ValueError every check raises: `name=value is problem; allowed: allowed`, one line."""
    return ValueError(one_line(f"{name}={shown(value)} is {problem}; allowed: {allowed}"))


_INT_TEXT = re.compile(r"\s*[+-]?\d{1,30}\s*")


def _parse_text(text: str) -> float:
    """float of "0.03", "1e-3" or "8/255" (exact for a fraction of two short integers).

    float() does the parsing: Fraction("1e100000000") would build a 100-million-digit integer
    (minutes of CPU for a mistyped flag); float() gives inf at once, refused as not finite.
    """
    num, slash, den = text.partition("/")
    a = float(num)
    if not slash:
        return a
    b = float(den)
    if b == 0:
        raise ZeroDivisionError(text)
    if _INT_TEXT.fullmatch(num) and _INT_TEXT.fullmatch(den):
        return float(Fraction(int(num), int(den)))
    return a / b


def parse_number(value: Any, name: str = "value") -> float:
    """A finite real from 0.03, "0.03", "1e-3" or "8/255" (budgets are written as fractions of 255).

    Booleans, NaN and infinities (also written as 1e999, or an int too large for a float) are refused.
    """
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, str)):
        raise invalid(name, value, NUMBER, "not a number")
    try:
        v = _parse_text(value.strip()) if isinstance(value, str) else float(value)
    except OverflowError:
        v = math.inf
    except (TypeError, ValueError, ZeroDivisionError):
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
           "one_line", "parse_number", "reason", "shown"]


def fmt_eps(v) -> str:
    """ε as "k/255" when within 1e-6 of k/255 (an integer as itself, 0 as "0"), else 4 significant digits."""
    if v is None:
        return "–"
    if isinstance(v, str):
        try:
            v = float(Fraction(v.strip()))
        except (ValueError, ZeroDivisionError):
            return v
    k = round(v * 255)
    if abs(v - k / 255) <= 1e-6:
        return str(k // 255) if k % 255 == 0 else f"{k}/255"
    return f"{v:.4g}"


def eps_text(v: float) -> str:
    """ε for a log line: "8/255 (0.03137)" where it is k/255, else 5 significant digits."""
    f = fmt_eps(v)
    return f"{f} ({v:.4g})" if "/" in f else f"{v:.5g}"

"""The validation helpers on random values: a value that satisfies the stated constraint, or a
ValueError whose message is one line, names the value's name and says what is allowed. Also the
data-side helpers that take user values (parse_resize, subset_indices). Regression cases found
by the fuzzer (or by issue 13) are explicit tests at the top."""
import math
import time
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from robustfront.data import subset_indices
from robustfront.data.images import parse_resize
from robustfront.validation import (check_bool, check_choice, check_int, check_number, check_path_text, invalid,
                                    parse_number, shown)

FUZZ = settings(deadline=None, derandomize=True, database=None, max_examples=200)

TEXT_NUMBERS = st.sampled_from(["8/255", "1e999", "-1e999", "1e400", "nan", "inf", "-inf", "1/0", "0/0", "1e-400",
                                "0x10", "1_000", " 3 ", "", " ", "abc", "8/255/3", "--1", "1e100000000",
                                "9" * 5000, "1/" + "9" * 40, "-0", "+.5", "2/-4", ".inf", "1e308/1e-308"])
ANY = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(-10**400, 10**400), st.floats(),
                st.fractions(), st.text(max_size=12), TEXT_NUMBERS, st.binary(max_size=4),
                st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=2), st.integers(), max_size=1),
                st.sampled_from([np.float32(np.nan), np.int64(3), np.float64(1e300), complex(1, 1)]))


def one_line(e: BaseException, name: str) -> str:
    msg = str(e)
    assert "\n" not in msg and msg.startswith(f"{name}=") and "allowed:" in msg, repr(msg)
    assert len(msg) < 400, msg
    return msg


# ---------------------------------------------------------------- regressions

def test_huge_exponents_do_not_hang_and_are_refused_as_not_finite():
    t0 = time.perf_counter()
    for text in ("1e100000000", "-1e999999999", "1e100000000/3", "8/1e100000000"):
        try:
            v = parse_number(text, "eps")
            assert v == 0.0 or math.isfinite(v)
        except ValueError as e:
            one_line(e, "eps")
    assert time.perf_counter() - t0 < 1.0  # Fraction() took minutes on the first of these


def test_ints_too_large_for_a_float_and_for_repr():
    for v in (10**400, -(10**400), 2**1030):
        with pytest.raises(ValueError) as e:
            parse_number(v, "lr")
        assert "not finite" in one_line(e.value, "lr")
    with pytest.raises(ValueError) as e:
        check_number("lr", 10**5000, 0)          # repr(10**5000) itself raises in Python >= 3.11
    assert "too large to show" in one_line(e.value, "lr")
    assert len(shown("x" * 10_000)) <= 120


def test_fractions_stay_exact_and_text_is_parsed_like_a_float():
    assert parse_number("8/255") == 8 / 255 == float(Fraction(8, 255))
    assert parse_number(" 2/-4 ") == -0.5 and parse_number("1e-3") == 1e-3 and parse_number(Fraction(1, 3)) == 1 / 3
    assert parse_number("0.5/2") == 0.25 and parse_number(np.float32(0.5)) == 0.5
    for bad in ("1/0", "0/0", "abc", "", "8/255/3", True, None, [1], b"1", complex(1, 0)):
        with pytest.raises(ValueError) as e:
            parse_number(bad, "eps")
        one_line(e.value, "eps")


def test_negative_and_nan_messages_say_what_is_wrong():
    with pytest.raises(ValueError) as e:
        check_number("eps", float("nan"), 0)
    msg = one_line(e.value, "eps")
    assert "negative" not in msg and "finite" in msg


# ---------------------------------------------------------------- fuzz

@FUZZ
@given(v=ANY)
def test_fuzz_parse_number(v):
    try:
        x = parse_number(v, "eps")
    except ValueError as e:
        one_line(e, "eps")
        return
    assert isinstance(x, float) and math.isfinite(x) and not isinstance(v, bool)


@FUZZ
@given(v=ANY, lo=st.one_of(st.none(), st.floats(-5, 5)), hi=st.one_of(st.none(), st.floats(-5, 5)),
       strict=st.booleans(), hi_strict=st.booleans())
def test_fuzz_check_number(v, lo, hi, strict, hi_strict):
    try:
        x = check_number("lr", v, lo, strict=strict, hi=hi, hi_strict=hi_strict)
    except ValueError as e:
        one_line(e, "lr")
        return
    assert math.isfinite(x)
    assert lo is None or (x > lo if strict else x >= lo)
    assert hi is None or (x < hi if hi_strict else x <= hi)


@FUZZ
@given(v=ANY, lo=st.one_of(st.none(), st.integers(-3, 3)), hi=st.one_of(st.none(), st.integers(-3, 10**30)))
def test_fuzz_check_int(v, lo, hi):
    try:
        x = check_int("epochs", v, lo, hi)
    except ValueError as e:
        one_line(e, "epochs")
        return
    assert type(x) is int and not isinstance(v, bool) and x == v
    assert (lo is None or x >= lo) and (hi is None or x <= hi)


@FUZZ
@given(v=ANY)
def test_fuzz_check_bool_and_choice_and_path(v):
    try:
        b = check_bool("bf16", v)
        assert isinstance(b, bool)
        assert v is b or (isinstance(v, str) and v.strip().lower() in ("true", "yes", "on", "1", "false", "no",
                                                                       "off", "0"))
    except ValueError as e:
        one_line(e, "bf16")
    try:
        assert check_choice("norm", v, ("Linf", "L2", 1)) == v
        assert v in ("Linf", "L2") or (type(v) is int and v == 1)
    except ValueError as e:
        one_line(e, "norm")
    try:
        assert check_path_text("out", v).strip()
    except ValueError as e:
        one_line(e, "out")


@FUZZ
@given(v=st.one_of(ANY, st.tuples(ANY, ANY), st.lists(st.integers(-2, 5), max_size=3)))
def test_fuzz_parse_resize(v):
    try:
        size = parse_resize(v)
    except ValueError as e:
        one_line(e, "resize")
        return
    assert size is None or (len(size) == 2 and all(type(s) is int and s >= 1 for s in size))


@FUZZ
@given(total=st.integers(0, 50), n=st.one_of(st.none(), ANY), seed=st.integers(0, 2**64))
def test_fuzz_subset_indices(total, n, seed):
    try:
        idx = subset_indices(total, n, seed)
    except (ValueError, TypeError) as e:
        assert isinstance(e, ValueError), f"{type(e).__name__}: {e}"
        one_line(e, "n")
        return
    assert np.all(np.diff(idx) > 0) and len(set(idx.tolist())) == len(idx)
    assert len(idx) == (total if n is None or n >= total else n)


def test_invalid_is_the_one_message_form():
    e = invalid("width", "ab\ncd", "an integer >= 1")
    assert str(e) == "width='ab\\ncd' is invalid; allowed: an integer >= 1"


def test_subset_indices_checks_n_before_comparing():
    """Found by test_fuzz_subset_indices: n='' compared with an int (TypeError)."""
    for n in ("", "3", 2.5, True, 0, -1):
        with pytest.raises(ValueError) as e:
            subset_indices(10, n, 0)
        one_line(e.value, "n")
    with pytest.raises(ValueError) as e:
        subset_indices(10, 3, -1)
    one_line(e.value, "seed")

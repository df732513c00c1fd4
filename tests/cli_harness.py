"""Run `robustfront.cli.main(argv)` in-process and judge the outcome by the error boundary's rule:

    exit 0 with a valid result, or exit 2 with ONE error line on stderr and no traceback.

Used by the CLI / YAML fuzzers and the issue-13 regression tests. Not a test module (no test_ prefix).

- `run_main(argv, timeout)`: stdout/stderr captured, SystemExit turned into its code, any other
  exception recorded as a traceback, a run past `timeout` seconds aborted (SIGALRM) and recorded.
  Python warnings are recorded, not printed: they are not error lines of the CLI.
- `error_line(result)`: the single error line of an exit-2 result, or a reason why it is not one.
- `Fuzz`: counts outcomes over many examples and keeps the shortest argv per failure signature, so
  one test run reports every distinct defect instead of stopping at the first.
"""
from __future__ import annotations

import contextlib
import io
import json
import math
import re
import signal
import time
import traceback
import warnings
from collections import Counter
from dataclasses import dataclass, field

ERROR = re.compile(r"^robustfront\b[\w -]*: error: \S")
TRACE = re.compile(r"^Traceback \(most recent call last\)|^\s+File \"")


class Timeout(BaseException):
    """Raised inside the run by SIGALRM (a BaseException, so `except Exception` in the code cannot eat it)."""


@dataclass
class Result:
    argv: list
    rc: int | None = None
    out: str = ""
    err: str = ""
    exc: str | None = None          # "ExcType: first line" when main() raised (a traceback for the user)
    tb: str = ""
    timed_out: bool = False
    seconds: float = 0.0
    silence: float = 0.0           # the longest time with no output on stderr (start to end, seconds)
    warnings: list = field(default_factory=list)

    def lines(self) -> list[str]:
        return [l for l in self.err.splitlines() if l.strip()]


@contextlib.contextmanager
def isolated_root(tmp_path_factory, name: str):
    """A module's scratch folder for in-process CLI runs: its own data cache, a working directory
    inside it (so `--out ''` and relative defaults never land in the repository), one torch thread.
    Yields the folder; the environment and the working directory come back afterwards."""
    import pytest
    import torch
    root = tmp_path_factory.mktemp(name)
    mp = pytest.MonkeyPatch()
    mp.setenv("ROBUSTFRONT_CACHE", str(root / "cache"))
    (root / "cwd").mkdir()
    mp.chdir(root / "cwd")
    torch.set_num_threads(1)
    try:
        yield root
    finally:
        mp.undo()


class _TimedIO(io.StringIO):
    """stderr that notes when each line was written: the progress stream's longest silence."""

    def __init__(self):
        super().__init__()
        self.stamps: list[float] = []

    def write(self, text):
        if "\n" in text:
            self.stamps.append(time.perf_counter())
        return super().write(text)


def run_main(argv, timeout: float = 30.0) -> Result:
    from robustfront.cli import main

    res = Result([str(a) for a in argv])
    out, err = io.StringIO(), _TimedIO()

    def alarm(signum, frame):
        raise Timeout()

    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(out), \
                contextlib.redirect_stderr(err):
            warnings.simplefilter("always")
            try:
                res.rc = main(res.argv)
            except SystemExit as e:
                res.rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
                if isinstance(e.code, str):
                    print(e.code, file=err)
            except Timeout:
                res.timed_out = True
            except BaseException as e:  # noqa: BLE001 - what the user would see as a traceback
                res.exc = f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:200]}"
                res.tb = traceback.format_exc(limit=-3)
        res.warnings = [f"{w.category.__name__}: {str(w.message)[:120]}" for w in caught]
    except Timeout:
        res.timed_out = True
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    res.seconds = time.perf_counter() - t0
    res.out, res.err = out.getvalue(), err.getvalue()
    stamps = [t0] + err.stamps + [t0 + res.seconds]
    res.silence = max(b - a for a, b in zip(stamps, stamps[1:]))
    return res


def error_line(res: Result) -> tuple[str | None, str]:
    """(the error line, "") for a proper exit-2 result, else (None, why not). Progress lines before
    the error (an evaluation that started) are allowed; a traceback or a second error line is not."""
    if res.timed_out:
        return None, f"ran past the timeout ({res.seconds:.0f} s)"
    if res.exc:
        return None, f"traceback {res.exc}"
    lines = res.lines()
    if res.rc != 2:
        return None, f"exit {res.rc}, not 2"
    if any(TRACE.match(l) for l in lines) or "Traceback" in res.out:
        return None, "traceback printed"
    if not lines:
        return None, "exit 2 with nothing on stderr"
    errors = [l for l in lines if ERROR.match(l)]
    if len(errors) != 1 or not ERROR.match(lines[-1]):
        return None, f"{len(errors)} error lines / last line is not 'robustfront...: error: ...'"
    return lines[-1], ""


def json_out(res: Result):
    """The JSON document a command printed on stdout (the last one, for commands that print lines first)."""
    text = res.out.strip()
    try:
        return json.loads(text)
    except ValueError:
        pass
    for line in reversed(text.splitlines()):
        try:
            return json.loads(line)
        except ValueError:
            continue
    return None


def finite_tree(obj) -> bool:
    if isinstance(obj, float):
        return math.isfinite(obj)
    if isinstance(obj, dict):
        return all(finite_tree(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return all(finite_tree(v) for v in obj)
    return True


def signature(why: str, res: Result) -> str:
    """A failure's class: the reason with paths, numbers and quoted values blanked out."""
    text = why if not res.exc else f"{why} | {res.tb.strip().splitlines()[-3].strip() if res.tb else ''}"
    text = re.sub(r"'[^']*'|\"[^\"]*\"|/[\w./+-]+|\d+(\.\d+)?(e[+-]?\d+)?", "_", text)
    return text[:160]


class Fuzz:
    """Outcome counts and the shortest failing argv per failure signature."""

    def __init__(self, name: str):
        self.name, self.counts, self.failures, self.t0 = name, Counter(), {}, time.perf_counter()

    def ok(self, kind: str) -> None:
        self.counts[kind] += 1

    def fail(self, why: str, res: Result) -> None:
        self.counts["FAILED"] += 1
        key = signature(why, res)
        best = self.failures.get(key)
        if best is None or len(" ".join(res.argv)) < len(" ".join(best[1].argv)):
            self.failures[key] = (why, res, (best[2] if best else 0) + 1)
        else:
            self.failures[key] = (best[0], best[1], best[2] + 1)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> str:
        head = (f"{self.name}: {self.total} examples in {time.perf_counter() - self.t0:.1f} s: "
                + ", ".join(f"{k} {v}" for k, v in sorted(self.counts.items())))
        rows = [head, f"{len(self.failures)} distinct failure(s):"]
        for key, (why, res, n) in sorted(self.failures.items(), key=lambda kv: -kv[1][2]):
            tail = (res.lines() or [res.out.strip()[-120:]])[-1][:200]
            rows.append(f"  [{n}x] {why}\n      argv: {' '.join(res.argv)}\n      last line: {tail}")
        return "\n".join(rows)

"""`python -m robustfront.sweep.worker POINT_DIR`: one point in its own process (the local pool's worker).

Exit codes: 0 done, 1 failed (status.json holds the error's last line, error.txt the traceback),
3 busy (another process holds the point). The worker dies with its parent (Linux: PR_SET_PDEATHSIG),
so a killed sweep leaves no orphan training; the point resumes from last.pt on the next run.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
import time
import traceback


def die_with_parent() -> None:
    parent = os.getppid()
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(1, signal.SIGKILL, 0, 0, 0) != 0:  # PR_SET_PDEATHSIG = 1
            raise OSError
    except (OSError, AttributeError):
        def watch():  # no prctl (macOS): poll for the parent instead
            while os.getppid() == parent:
                time.sleep(1.0)
            os._exit(1)
        threading.Thread(target=watch, daemon=True).start()
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m robustfront.sweep.worker POINT_DIR", file=sys.stderr)
        return 2
    die_with_parent()
    from .point import run_point
    threads = int(os.environ.get("ROBUSTFRONT_THREADS", "0")) or None
    try:
        status = run_point(argv[0], threads=threads, log=lambda m: print(m, file=sys.stderr, flush=True))
    except Exception:  # noqa: BLE001 - recorded in status.json; the traceback goes to the log
        traceback.print_exc()
        return 1
    return 3 if status == "busy" else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

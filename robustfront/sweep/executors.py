"""Executors: who runs `point.run_point` for each point folder.

- inline: one after another in this process (debugging, the Python API in a notebook);
- local: a pool of worker processes, one point per process (`python -m robustfront.sweep.worker`):
  on a machine with GPUs one worker per GPU (CUDA_VISIBLE_DEVICES set per worker), else `jobs`
  CPU processes with the cores split between them (torch threads = cores // jobs). A worker that
  crashes (an exception, a segfault, the OOM killer) fails its point only; the others go on;
- slurm / submitit-local: a submitit job array, one point per task (see `slurm.py`).

Every executor reports through `on_event(folder, event, info)`: event "start" (info {}) or "end"
(info {"status": done | failed | interrupted | busy, "error": last line or None}).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from .point import error_line, point_lock, read_json, run_point

EXECUTORS = ("local", "inline", "slurm", "submitit-local")


def cpu_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def visible_gpus() -> list[str]:
    """The GPU ids this process may hand out: CUDA_VISIBLE_DEVICES's entries, else 0..count-1."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g.strip() for g in env.split(",") if g.strip() and g.strip() != "-1"]
    try:
        import torch
        return [str(i) for i in range(torch.cuda.device_count())]
    except Exception:  # noqa: BLE001 - no usable CUDA means: CPU workers
        return []


def run_inline(folders: list[Path], on_event, *, threads: int | None = None) -> None:
    import torch
    before = torch.get_num_threads()
    try:
        for f in folders:
            on_event(f, "start", {})
            try:
                status = run_point(f, threads=threads)
                on_event(f, "end", {"status": status, "error": point_lock(f).refusal() if status == "busy" else None})
            except Exception as e:  # the point failed; status.json holds the error, the sweep goes on
                on_event(f, "end", {"status": "failed", "error": error_line(e)})
    finally:
        torch.set_num_threads(before)  # this process's setting, as it was


def _outcome(folder: Path, code: int, attempt_before: int) -> dict:
    """What a finished worker process did to its point, from its exit code and status.json."""
    st = read_json(folder / "status.json") or {}
    fresh = int(st.get("attempt", 0)) > attempt_before
    if code == 0:  # run_point returned "done" (now, or found it done already)
        return {"status": "done", "error": None}
    if code == 3:
        return {"status": "busy", "error": point_lock(folder).refusal()}
    if fresh and st.get("status") in ("failed", "interrupted") and st.get("error"):
        return {"status": st["status"], "error": st["error"]}
    why = f"worker killed by {signal.Signals(-code).name}" if code < 0 else f"worker exited with code {code}"
    tail = _last_line(folder / "log.txt")
    return {"status": "failed", "error": f"{why}" + (f" ({tail})" if tail else "")}


def _last_line(path: Path) -> str:
    try:
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1][:300] if lines else ""


def run_local(folders: list[Path], on_event, *, jobs: int | None = None, gpus: list | None = None,
              threads: int | None = None, poll_s: float = 0.2) -> None:
    """A pool of `jobs` worker processes (default: one per visible GPU, else 1)."""
    gpus = visible_gpus() if gpus is None else [str(g) for g in gpus]
    jobs = jobs or max(1, len(gpus))
    threads = threads or max(1, cpu_cores() // jobs)
    queue, running, free = list(folders), {}, [gpus[i % len(gpus)] for i in range(jobs)] if gpus else [None] * jobs
    try:
        while queue or running:
            while queue and free:
                folder, slot = queue.pop(0), free.pop(0)
                env = dict(os.environ, ROBUSTFRONT_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
                           MKL_NUM_THREADS=str(threads))
                # "" hides every GPU: CPU workers stay on the CPU even where a GPU exists
                env["CUDA_VISIBLE_DEVICES"] = "" if slot is None else slot
                before = int((read_json(folder / "status.json") or {}).get("attempt", 0))
                log = open(folder / "log.txt", "a")
                proc = subprocess.Popen([sys.executable, "-m", "robustfront.sweep.worker", str(folder)], env=env,
                                        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
                log.close()
                running[proc] = (folder, slot, before)
                on_event(folder, "start", {"gpu": slot, "threads": threads, "pid": proc.pid})
            time.sleep(poll_s)
            for proc in [p for p in running if p.poll() is not None]:
                folder, slot, before = running.pop(proc)
                free.append(slot)
                on_event(folder, "end", _outcome(folder, proc.returncode, before))
    finally:  # interrupted (Ctrl-C, an error here): stop the workers; their points stay resumable
        for proc in running:
            proc.terminate()
        for proc in running:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def run(executor: str, folders: list[Path], on_event, *, out: Path, jobs=None, gpus=None, threads=None,
        slurm: dict | None = None, wait: bool = True, poll_s: float | None = None) -> None:
    if executor == "inline":
        run_inline(folders, on_event, threads=threads)
    elif executor == "local":
        run_local(folders, on_event, jobs=jobs, gpus=gpus, threads=threads, **({"poll_s": poll_s} if poll_s else {}))
    elif executor in ("slurm", "submitit-local"):
        try:
            from . import slurm as slurm_mod
        except ImportError:
            raise ValueError(f"executor={executor!r} needs submitit, which is not installed; allowed: pip install "
                             f"'robustfront[slurm]' (or pip install submitit), or executor='local'") from None
        slurm_mod.run_submitit(folders, on_event, out=out, cluster="slurm" if executor == "slurm" else "local",
                               params=slurm or {}, threads=threads, wait=wait, **({"poll_s": poll_s} if poll_s else {}))
    else:
        raise ValueError(f"executor={executor!r} is unknown; allowed: {', '.join(EXECUTORS)}")


__all__ = ["EXECUTORS", "cpu_cores", "run", "run_inline", "run_local", "visible_gpus"]

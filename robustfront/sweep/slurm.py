"""SLURM through submitit (optional: pip install 'robustfront[slurm]'): one job array, one point per task.

Preemption and time-outs: submitit sends the task USR2 (`slurm_signal_delay_s`, default 90 s before
the time limit, and on preemption where the cluster signals it); `PointJob` is a
`submitit.helpers.Checkpointable`, so submitit calls its `checkpoint`, which resubmits the same
call, and requeues the task. Nothing else needs saving: `run_point` resumes from the point's
checkpoints/last.pt, written atomically after every epoch, so at most the epoch in flight is lost.

cluster="local" runs the same path with submitit's LocalExecutor (tests, one machine).
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import submitit
from submitit.helpers import Checkpointable, DelayedSubmission

from .point import error_line, read_json, run_point

DEFAULTS = {"slurm": {"name": "robustfront-sweep", "timeout_min": 240, "nodes": 1, "tasks_per_node": 1,
                      "gpus_per_node": 1, "cpus_per_task": 8},
            "local": {"name": "robustfront-sweep", "timeout_min": 60, "gpus_per_node": 0}}


class PointJob(Checkpointable):
    """One point as a checkpointable submitit callable: `PointJob(threads)(folder) -> 'done' | 'busy'`."""

    def __init__(self, threads: int | None = None):
        self.threads = threads

    def __call__(self, folder: str) -> str:
        threads = self.threads or int(os.environ.get("SLURM_CPUS_PER_TASK", "0")) or None
        return run_point(folder, threads=threads)

    def checkpoint(self, folder: str) -> DelayedSubmission:
        # the state lives in the point folder (last.pt); the requeued task is the same call
        return DelayedSubmission(PointJob(self.threads), folder)


def run_submitit(folders: list[Path], on_event, *, out: Path, cluster: str = "slurm", params: dict | None = None,
                 threads: int | None = None, wait: bool = True, poll_s: float = 15.0) -> list:
    """Submit the points as one array; with wait, follow them to the end, reporting start/end events.

    params: submitit's executor parameters (timeout_min, gpus_per_node, cpus_per_task, mem_gb,
    slurm_partition, slurm_array_parallelism, slurm_signal_delay_s, slurm_additional_parameters, ...).
    """
    ex = submitit.AutoExecutor(folder=str(Path(out) / "_submitit" / "%j"), cluster=cluster)
    ex.update_parameters(**{**DEFAULTS[cluster], **(params or {})})
    t_submit = time.time()
    jobs = ex.map_array(PointJob(threads), [str(f) for f in folders])
    for f, j in zip(folders, jobs):
        on_event(f, "submitted", {"job_id": str(j.job_id)})
    pending, started = dict(zip(jobs, folders)), set()
    while wait and pending:
        for j, f in list(pending.items()):
            st = read_json(f / "status.json") or {}
            if f not in started and st.get("status") == "running" and (st.get("started") or 0) >= t_submit - 1:
                started.add(f)
                on_event(f, "start", {"job_id": str(j.job_id)})
            if not j.done():
                continue
            pending.pop(j)
            try:
                info = {"status": j.result(), "error": None}
            except Exception as e:  # noqa: BLE001 - the task's error, re-raised by submitit
                st = read_json(f / "status.json") or {}
                info = {"status": "failed", "error": st.get("error") if st.get("status") == "failed" else error_line(e)}
            on_event(f, "end", info)
        if pending:
            time.sleep(poll_s)
    return jobs


__all__ = ["PointJob", "run_submitit"]

"""`run_sweep`: expand a sweep, check every point folder, run what is left, keep OUT/sweep.json current.

    OUT/sweep.yaml        the sweep as given          OUT/points/NAME/   one run folder per point
    OUT/sweep.json        the summary (atomic)         OUT/_stale/        folders moved aside (move_stale)
    OUT/.sweep.lock       held while a sweep runs on OUT (a second one is refused)

Re-running is safe: finished points (eval.json stamped with the point's hashes) are skipped,
interrupted ones resume from last.pt, failed ones are retried, and a folder made with another
config is refused before anything runs.
"""
from __future__ import annotations

import fnmatch
import math
import sys
import time
from pathlib import Path

import yaml

from ..checkpoint import write_json_atomic, write_text_atomic
from ..state import FolderLock
from ..validation import check_int
from . import executors
from .names import short_hash
from .point import (
    check_folder,
    conflict,
    is_busy,
    is_done,
    point_record,
    read_json,
    read_jsonl,
)
from .spec import expand, load_spec

SWEEP_LOCK = ".sweep.lock"
POINTS = "points"
EVAL_KEYS = ("clean_acc", "robust_acc", "worst_case_acc", "mean", "nrr", "ra_source", "n", "eps", "eps_str", "norm",
             "split", "seed", "checkpoint_epoch", "eval_time_s")
METRIC_KEYS = ("epoch", "train_loss", "train_clean_acc", "train_adv_acc", "val_clean_acc", "val_pgd_acc")


def _compact_eval(ev: dict) -> dict:
    if "sweep" in ev:
        return {"eps": ev["eps"], "sweep": [{k: s.get(k) for k in EVAL_KEYS if k in s} for s in ev["sweep"]],
                **{k: ev.get(k) for k in ("eps_str", "split", "n", "eval_time_s")}}
    return {k: ev[k] for k in EVAL_KEYS if k in ev}


def point_summary(folder: Path, record: dict, busy: bool = False) -> dict:
    """A point's line in sweep.json, read from its folder: status, error, last metrics, eval numbers, timings."""
    st = read_json(folder / "status.json") or {}
    done = is_done(folder, record)
    metrics = read_jsonl(folder / "metrics.jsonl")
    if done:
        status = "done"
    elif busy:
        status = "running"
    elif st.get("status") == "failed":
        status = "failed"
    else:  # never started, interrupted, or submitted and waiting in a queue
        status = "pending"
    out = {"name": record["name"], "dir": f"{POINTS}/{record['name']}", "method": record["config"].get("method"),
           "varied": record["varied"], "config_hash": record["config_hash"], "status": status,
           "error": st.get("error") if status == "failed" else None, "attempts": st.get("attempt", 0),
           "epochs_done": len(metrics), "epochs": record["config"].get("epochs"),
           "metrics": {k: metrics[-1][k] for k in METRIC_KEYS if metrics and k in metrics[-1]},
           "train_time_s": sum(m.get("epoch_time_s", 0.0) for m in metrics)}
    if status == "pending" and (folder / "checkpoints" / "last.pt").is_file():
        out["resume_from_epoch"] = len(metrics)
    if st.get("started") and st.get("finished"):
        out["wall_s"] = st["finished"] - st["started"]
    if done:
        ev = read_json(folder / "eval.json")
        out["eval"] = _compact_eval(ev)
        out["eval_time_s"] = ev.get("eval_time_s")
    return out


class Tracker:
    """Statuses of every point, sweep.json rewritten (atomically) on each change, progress on stderr."""

    def __init__(self, out: Path, head: dict, records: dict, jobs: int, log):
        self.out, self.head, self.records, self.jobs, self.log = out, head, records, jobs, log
        self.rows = {n: point_summary(out / POINTS / n, r, busy=is_busy(out / POINTS / n)) for n, r in records.items()}
        self.t0, self.running, self.times, self.job_ids = time.time(), {}, [], {}

    def on_event(self, folder: Path, event: str, info: dict) -> None:
        name = Path(folder).name
        if event == "submitted":
            self.job_ids[name] = info.get("job_id")
        elif event == "start":
            self.running[name] = time.time()
            resume = self.rows[name].get("resume_from_epoch")
            where = f" on GPU {info['gpu']}" if info.get("gpu") is not None else ""
            self.log(f"[sweep] start {name}{where}" + (f" (resuming after epoch {resume})" if resume else ""))
        elif event == "end":
            started = self.running.pop(name, None)
            if started is not None and info["status"] == "done":
                self.times.append(time.time() - started)
        if event in ("start", "end"):
            self.rows[name] = point_summary(Path(folder), self.records[name], busy=name in self.running)
        if event == "end":
            self._report_end(name, info)
        self.write()

    def _report_end(self, name: str, info: dict) -> None:
        row = self.rows[name]
        if row["status"] == "done":
            ev = row["eval"] if "sweep" not in row["eval"] else row["eval"]["sweep"][-1]
            accs = ", ".join([f"clean {100 * ev['clean_acc']:.1f}%"] +
                             [f"{a} {100 * v:.1f}%" for a, v in ev.get("robust_acc", {}).items()])
            self.log(f"[sweep] done {name} ({row.get('wall_s', 0):.0f}s): {accs}")
        elif info["status"] == "busy":
            self.log(f"[sweep] skip {name}: {info.get('error') or 'another process holds it'}")
        else:
            self.log(f"[sweep] {info['status']} {name}: {info.get('error') or row.get('error')} "
                     f"(log: {POINTS}/{name}/log.txt, error.txt)")
        self.log(self.progress_line())

    def counts(self) -> dict:
        c = {s: 0 for s in ("done", "running", "failed", "pending")}
        for n, r in self.rows.items():
            c["running" if n in self.running else r["status"]] += 1
        return {**c, "total": len(self.rows)}

    def eta(self) -> float | None:
        """From the mean time of the points finished in this run; None before the first one."""
        if not self.times:
            return None
        mean, c, now = sum(self.times) / len(self.times), self.counts(), time.time()
        work = c["pending"] * mean + sum(max(0.0, mean - (now - t)) for t in self.running.values())
        return work / max(1, min(self.jobs, c["pending"] + c["running"]))

    def progress_line(self) -> str:
        c, eta = self.counts(), self.eta()
        mean = f"mean point {_dur(sum(self.times) / len(self.times))}, ETA {_dur(eta)}" if eta is not None else "ETA: after the first point"
        return (f"[sweep] {c['done']}/{c['total']} done, {c['running']} running, {c['failed']} failed, "
                f"{c['pending']} pending | {mean}")

    def summary(self) -> dict:
        rows = [dict(r, **({"job_id": self.job_ids[n]} if n in self.job_ids else {})) for n, r in self.rows.items()]
        for r in rows:
            if r["name"] in self.running:
                r["status"] = "running"
        eta = self.eta()
        return {**self.head, "updated": time.time(), "wall_s": time.time() - self.t0, "counts": self.counts(),
                "mean_point_s": sum(self.times) / len(self.times) if self.times else None,
                "eta_s": None if eta is None else math.ceil(eta), "points": rows}

    def write(self) -> dict:
        s = self.summary()
        write_json_atomic(self.out / "sweep.json", s)
        return s


def _dur(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def run_sweep(spec, out, *, jobs: int | None = None, executor: str = "local", gpus: list | None = None,
              threads: int | None = None, only=None, move_stale: bool = False, retry_failed: bool = True,
              slurm: dict | None = None, wait: bool = True, dry_run: bool = False, log=None,
              poll_s: float | None = None) -> dict:
    """Run every unfinished point of `spec` (a path, a mapping or a SweepSpec) under OUT; returns the summary.

    jobs: worker processes of the local pool (default: one per visible GPU, else 1); gpus: the GPU
    ids to hand out (default: all visible; [] for CPU workers); threads: torch threads per worker
    (default cores // jobs). only: run just the points whose names match these fnmatch pattern(s)
    (every point is still checked and summarised). move_stale: move folders made
    with another config (or eval.json files of another protocol) to OUT/_stale/ instead of refusing.
    retry_failed: run failed points again. slurm: submitit parameters for executor "slurm" /
    "submitit-local"; wait: follow the submitted jobs to the end. dry_run: check and summarise only.
    """
    log = log or (lambda m: print(m, file=sys.stderr, flush=True))
    if executor not in executors.EXECUTORS:
        raise ValueError(f"executor={executor!r} is unknown; allowed: {', '.join(executors.EXECUTORS)}")
    for name, v in (("jobs", jobs), ("threads", threads)):
        if v is not None:
            check_int(name, v, 1)
    sp = load_spec(spec)
    points = expand(sp)
    chosen = {p.name for p in points}
    if only:  # restricts what runs; the checks and the summary still cover the whole sweep
        pats = [only] if isinstance(only, str) else list(only)
        chosen = {p.name for p in points if any(fnmatch.fnmatchcase(p.name, pat) for pat in pats)}
        if not chosen:
            raise ValueError(f"only={only!r} matches no point of the sweep; allowed: fnmatch patterns on point names "
                             f"such as 'method=ca_at,*'")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with FolderLock(out, SWEEP_LOCK, what="sweep folder", by="sweep", how="wait for it to end, or another out folder"):
        records = {p.name: point_record(p, sp.eval) for p in points}
        problems = [c for p in points if (c := conflict(out / POINTS / p.name, records[p.name]))
                    and (c[0] == "foreign" or not move_stale)]
        if problems:
            first = problems[0][1]
            if len(problems) > 1:  # the count goes before the "allowed" part of the one line
                head, sep, allowed = first.partition("; allowed:")
                first = f"{head} (and {len(problems) - 1} more point(s) like it){sep}{allowed}"
            raise ValueError(first)
        write_text_atomic(out / "sweep.yaml", yaml.safe_dump(sp.raw, sort_keys=False))
        for p in points:
            check_folder(out / POINTS / p.name, records[p.name], move_stale=move_stale)
        head = {"name": sp.name, "out": str(out), "spec_hash": short_hash(sp.raw), "executor": executor,
                "eval": sp.eval, "started": time.time(),
                "extra_folders": sorted(d.name for d in (out / POINTS).iterdir() if d.is_dir() and d.name not in records)}
        if executor == "local":
            n_jobs = jobs or max(1, len(gpus if gpus is not None else executors.visible_gpus()))
        else:
            n_jobs = jobs or 1
        tracker = Tracker(out, {**head, "jobs": n_jobs}, records, n_jobs, log)
        todo = [n for n, r in tracker.rows.items()
                if n in chosen and (r["status"] == "pending" or (r["status"] == "failed" and retry_failed))]
        log(f"[sweep] {sp.name}: {len(points)} points in {out}; {tracker.counts()['done']} done, {len(todo)} to run "
            f"({executor}{f', {n_jobs} job(s)' if executor == 'local' else ''})")
        tracker.write()
        if dry_run or not todo:
            return tracker.summary()
        try:
            executors.run(executor, [out / POINTS / n for n in todo], tracker.on_event, out=out, jobs=n_jobs,
                          gpus=gpus, threads=threads, slurm=slurm, wait=wait, poll_s=poll_s)
        finally:  # also on Ctrl-C: the summary shows what the folders hold now
            if executor in ("local", "inline"):
                tracker.running.clear()
            for n in todo:
                tracker.rows[n] = point_summary(out / POINTS / n, records[n], busy=n in tracker.running)
            try:
                summary = tracker.write()
            except OSError:  # e.g. the disk is full: say that sweep.json is stale, not only that a write failed
                log(f"[sweep] {out / 'sweep.json'} could not be updated and may still call points 'running'; the "
                    f"point folders are the truth and re-running the same command rewrites it")
                raise
        c = summary["counts"]
        log(f"[sweep] {sp.name}: {c['done']}/{c['total']} done, {c['failed']} failed, {c['pending']} pending after "
            f"{_dur(summary['wall_s'])} ({out / 'sweep.json'})")
        return summary


__all__ = ["Tracker", "point_summary", "run_sweep"]

"""Weights & Biases logging (`--wandb PROJECT`, `pip install 'robustfront[wandb]'`), beside the run
folder's JSONL files, which stay the ground truth: W&B gets a copy of what they hold.

    run = WandbRun(project, out, config=cfg.to_dict(), group=None)  # resumes the run whose id OUT/wandb.json holds
    run.log(metrics, step=epoch)      # per-epoch metrics with the combiner's diagnostics (lists as key/i)
    run.summary(eval_result, prefix="eval")   # evaluation results: summary values and a logged row
    run.finish()

A sweep gives each point its own run, grouped by the sweep folder's name. Offline (WANDB_MODE=offline)
runs are written under OUT/wandb/ and can be synced later with `wandb sync`.
"""
from __future__ import annotations

import json
import math
import uuid
from pathlib import Path

INSTALL = "pip install 'robustfront[wandb]'"


def import_wandb(project: str):
    try:
        import wandb
    except Exception as e:  # noqa: BLE001 - missing or broken install
        raise ValueError(f"wandb={project!r} needs the wandb package ({type(e).__name__}); allowed: {INSTALL}, or "
                         f"leave --wandb out") from None
    return wandb


def flat_numbers(d: dict, prefix: str = "") -> dict:
    """{key: finite number} from nested dicts and lists ("robust_acc/pgd20", "cos/0"); other values dropped."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flat_numbers(v, key + "/"))
        elif isinstance(v, (list, tuple)):
            out.update(flat_numbers({str(i): e for i, e in enumerate(v)}, key + "/"))
        elif isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            out[key] = v
    return out


class WandbRun:
    """One W&B run per run folder: its id is kept in OUT/wandb.json, so a resumed run, and the
    evaluation of a sweep point after its training, continue the same W&B run."""

    def __init__(self, project: str, out, *, config: dict | None = None, group: str | None = None,
                 job_type: str = "train", keep_id: bool = True):
        wandb = import_wandb(project)
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        ids = out / "wandb.json"
        known = json.loads(ids.read_text()) if keep_id and ids.is_file() else {}
        run_id = known.get("id") or uuid.uuid4().hex[:8]
        try:
            self.run = wandb.init(project=project, id=run_id, resume="allow", name=known.get("name") or out.name,
                                  group=group or known.get("group"), job_type=job_type, dir=str(out),
                                  config=config or {}, reinit=True)
        except Exception as e:  # noqa: BLE001 - not logged in, no network, a bad project name: one line
            first = (str(e).strip().splitlines() or [""])[0][:160]
            raise ValueError(f"wandb={project!r}: the W&B run could not start ({type(e).__name__}: {first}); allowed: "
                             f"wandb login (or WANDB_API_KEY), WANDB_MODE=offline, or leave --wandb out") from None
        if keep_id and not known:
            ids.write_text(json.dumps({"id": run_id, "project": project, "name": out.name, "group": group}))

    def log(self, metrics: dict, step: int | None = None) -> None:
        self.run.log(flat_numbers(metrics), step=step)

    def summary(self, result: dict, prefix: str = "eval") -> None:
        """The accuracies of an evaluation result (not its per-point masks), as summary values and one row."""
        keep = ("clean_acc", "robust_acc", "worst_case_acc", "n", "eps", "sweep", "aggregate")
        values = flat_numbers({k: result[k] for k in keep if k in result}, prefix + "/")
        self.run.summary.update(values)
        self.run.log(values)

    def finish(self) -> None:
        self.run.finish()


__all__ = ["WandbRun", "flat_numbers", "import_wandb"]

"""`run(cfg, sources) -> EvalResult`: the one evaluation driver behind `robustfront eval`, the sweep's
point evaluation, `reproduce` and any script.

A source is what `load_for_eval` takes: a robustfront checkpoint (a path, or {"checkpoint": path})
or foreign weights ({"weights": path, "model": name | "model_file": "net.py:factory", "input_mean",
"input_std", "num_classes"}). Each source is loaded, judged on its data with the config's threat
model (the checkpoints' training one where the config names none; several checkpoints must agree),
and the results of several sources are aggregated (mean ± std). `log(line)` receives the progress.

State folder (what makes a run resumable), first that applies:

    cfg.no_state                none
    cfg.state = DIR             DIR (several sources: DIR/model-0, DIR/model-1, ...)
    a robustfront checkpoint    RUN/eval-state/<12 hex digits naming the request>/ in its run folder
    otherwise                   none (the run says so)

A re-run of the same request continues where the last one stopped; a different request on the
same folder is refused in one line naming the setting. Shards: cfg.shard "i/N" runs that shard's
chunks into the state folder (the last shard to finish on a shared folder builds the whole result,
else the result is partial: `complete` false, `merge_evaluations` joins the folders); under
torchrun every rank is a shard and every rank returns the gathered whole.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

from ..fields import plain
from ..models.info import info
from ..validation import eps_text
from .config import EvalConfig, sanity_with_shard
from .result import EvalResult
from .shards import rank, world_size


def _source(src) -> dict:
    return dict(src) if isinstance(src, dict) else {"checkpoint": str(src)}


def _shard(cfg: EvalConfig, n_sources: int):
    """None, cfg.shard ("i/N"), or "env" under torchrun (each rank a shard, gathered over gloo)."""
    launched = world_size() > 1
    if cfg.shard is not None and launched:
        raise ValueError(f"--shard {cfg.shard} under torchrun (WORLD_SIZE={world_size()}): both split the points; "
                         f"allowed: one of them")
    shard = cfg.shard if cfg.shard is not None else ("env" if launched else None)
    if shard is not None:
        what = f"--shard {cfg.shard}" if cfg.shard is not None else f"torchrun (WORLD_SIZE={world_size()})"
        if n_sources > 1:
            raise ValueError(f"{what} splits the points of one model; allowed: one --checkpoint or --weights file")
        if cfg.sanity:
            raise sanity_with_shard(what)
    return shard


def _threat(cfg: EvalConfig, srcs: list[dict]) -> EvalConfig:
    """cfg with eps/norm filled from the checkpoints' training config; they must agree."""
    from ..checkpoint import load
    filled = [cfg.with_training_defaults(load(s["checkpoint"]).get("config") if "checkpoint" in s else None)
              for s in srcs]
    for key in ("eps", "norm"):
        vals = {str(plain(dataclasses.asdict(f)[key])) for f in filled}
        if len(vals) > 1:
            raise ValueError(f"the checkpoints were trained with different {key} ({', '.join(sorted(vals))}); "
                             f"allowed: name it with --{key}")
    return filled[0]


def request_key(cfg: EvalConfig, src: dict) -> str:
    """12 hex digits naming the evaluation request (for a default state folder inside a run)."""
    keys = ("attacks", "eps", "norm", "n", "seed", "split", "data", "data_root", "resize", "chunk_size",
            "aa_budget", "batch_size")
    given = ("alpha", "steps")   # named only when set, so that older requests keep their folders
    text = json.dumps({"source": str(Path(src.get("checkpoint") or src.get("weights") or "").name),
                       **{k: plain(v) for k, v in dataclasses.asdict(cfg).items() if k in keys},
                       **{k: plain(v) for k, v in dataclasses.asdict(cfg).items() if k in given and v is not None}},
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def state_folder(cfg: EvalConfig, i: int, src: dict, n_sources: int) -> tuple[Path | None, str]:
    """(folder or None, how it was chosen) for source number i; see the module docstring."""
    if cfg.no_state:
        return None, "--no-state"
    if cfg.state:
        return (Path(cfg.state) / f"model-{i}" if n_sources > 1 else Path(cfg.state)), "given"
    ck = Path(src["checkpoint"]) if src.get("checkpoint") else None
    if ck is not None and ck.parent.name == "checkpoints" and (ck.parent.parent / "config.yaml").is_file():
        return ck.parent.parent / "eval-state" / request_key(cfg, src), "in the run folder"
    return None, "none (give --out or --state to make the run resumable)"


def _provenance(cfg: EvalConfig, src: dict, inp) -> dict:
    eps_str = cfg.eps_str
    out = {"checkpoint": inp.checkpoint, "eps_str": eps_str if len(eps_str) > 1 else eps_str[0],
           "model": inp.config.get("model", info(inp.model).name or src.get("model_file")),
           "method": inp.config.get("method"), "train_seed": inp.config.get("seed")}
    if inp.report is not None:
        out["foreign"] = {k: inp.report.get(k) for k in ("model", "layout", "normalization", "renamed", "dropped",
                                                         "filled")}
    return out


def _pm(v) -> str:
    return f"{100 * v.mean:.2f} ± {100 * v.std:.2f}%"


def run(cfg: EvalConfig, sources, *, log=None) -> EvalResult:
    """Evaluate every source under `cfg`; the result's `raw` is the JSON to save (one source: its
    result; several: {"checkpoints": [...], "aggregate": mean ± std, ...})."""
    from ..models.foreign import describe
    from .load import load_for_eval
    from .metrics import aggregate
    from .sanity import format_sanity, sanity_check
    from .shards import device_for_rank
    from .suite import evaluate
    from .suite_state import SuiteState, build_result, missing_chunks, read_folder
    srcs = [_source(s) for s in sources]
    if not srcs:
        raise ValueError("nothing to evaluate; allowed: a robustfront checkpoint, or foreign weights with a model")
    say = log or (lambda line: None)
    shard = _shard(cfg, len(srcs))
    device = device_for_rank() if shard == "env" and cfg.device == "auto" else cfg.device
    threat = _threat(cfg, srcs)
    tag = f"[{rank()}/{world_size()}] " if shard == "env" else f"[shard {shard}] " if shard else ""
    results = []
    for i, src in enumerate(srcs):
        inp = load_for_eval(**src, data=cfg.data, data_root=cfg.data_root, resize=cfg.resize, split=cfg.split,
                            n=cfg.n, seed=cfg.seed, device=device)
        if inp.report is not None:
            say(f"loaded {describe(inp.report)}")
        folder, how = state_folder(cfg, i, src, len(srcs))
        if shard is not None and folder is None and shard != "env":
            raise ValueError(f"--shard {shard} keeps its part in a state folder for --merge; allowed: --state DIR "
                             f"or --out FILE")
        say(f"{tag}evaluating {inp.checkpoint} on {inp.data} ({cfg.split}, n={len(inp.y)}, seed={cfg.seed}), "
            f"{threat.norm} eps={','.join(threat.eps_str)}; attacks {', '.join(threat.attacks)}; state: "
            f"{folder or how}" + (f" ({how})" if folder else ""))
        one = threat.replace(state=None if folder is None else str(folder), no_state=folder is None, shard=shard)
        res = evaluate(inp.model, inp.x, inp.y, one, bounds=inp.dataset.bounds, log=lambda m: say(tag + m),
                       data=inp.data, ids=inp.ids, provenance=_provenance(threat, src, inp)).raw
        if shard not in (None, "env"):  # the last shard to finish on a shared folder builds the whole result
            meta = SuiteState(folder).existing_meta()
            per_eps = read_folder(folder, meta)
            left = missing_chunks(meta, per_eps)
            if left:
                say(f"shard {shard} finished; {len(left)} chunk(s) of other shards are not in {folder} yet. When "
                    f"every shard has finished: robustfront eval --merge {folder} [OTHER_SHARD_FOLDERS] --out FILE")
                return EvalResult.from_json(res)   # partial: complete is false
            res = build_result(meta, per_eps)
        if shard is not None and rank() == 0:  # the per-shard lines were partial: the whole result
            whole = EvalResult.from_json(res)
            for p in whole.points:
                accs = ", ".join(f"{k} {100 * v.mean:.2f}%" for k, v in p.robust.items())
                say(f"eps={eps_text(p.eps)} all {whole.n} points: clean {100 * p.clean.mean:.2f}%, {accs}, "
                    f"worst {100 * p.worst_case.mean:.2f}%")
        if cfg.sanity:
            k = max(range(len(threat.eps)), key=threat.eps_values.__getitem__)  # masking shows most at the largest ε
            res["sanity"] = sanity_check(inp.model, inp.x, inp.y, eps=threat.eps_values[k], norm=threat.norm,
                                         seed=cfg.seed, batch_size=res.get("batch_size") or 500,
                                         bounds=inp.dataset.bounds, log=say, state=folder)  # resumable, lines as it goes
            res["sanity"]["eps_str"] = threat.eps_str[k]
            for line in format_sanity(res["sanity"]):
                say(line)
        for w in (res.get("warnings") or []):
            if "randomised" in w:
                say(f"{tag}GUARD: {w}")
        results.append(res)
    if len(results) == 1:
        return EvalResult.from_json(results[0])
    out = {"checkpoints": results, "aggregate": aggregate(results), "n": results[0]["n"], "norm": threat.norm,
           "seed": cfg.seed, "data": results[0]["data"], "eps_str": results[0]["eps_str"]}
    whole = EvalResult.from_json(out)
    for p in whole.points:
        say(f"eps={eps_text(p.eps)} over {len(results)} checkpoints: clean {_pm(p.clean)}, "
            + ", ".join(f"{k} {_pm(v)}" for k, v in p.robust.items()) + f", worst {_pm(p.worst_case)}")
    return whole


__all__ = ["request_key", "run", "state_folder"]

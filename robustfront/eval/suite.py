"""Evaluation by attack spec: clean accuracy, robust accuracy per attack, worst case, Mean and NRR.

Attack names are the one vocabulary of `robustfront.attacks` (pgdK, pgdKxR, fgsm, mifgsm, cw, cw0,
spsa, apgd_ce, apgd_dlr, apgd_t, fab, fab_t, square, autoattack, autoattack_plus; the official
hyphenated spellings are accepted and reported in the underscore spelling). Budgets follow ε and the
norm given to `evaluate`; α and steps are each attack's own (PGD α = ε/4; CW 30 steps; APGD 100
iterations, the official runner's budgets for the AutoAttack names).

Own attacks work in any input box (`bounds`, None = unbounded); the official code clamps to [0,1],
so its names need bounds=(0, 1).

Every official name runs through robustfront's self-driven cascade (cascade.py): the AutoAttack
cascades (autoattack, autoattack_plus, autoattack_rand) as themselves, a single official attack
(fab, fab_t, square, apgd_ce, apgd_dlr, apgd_t) as a cascade of one attack, so each gets per-sample
masks, resume after the batch in flight and shards; robustfront's own attacks run through their
`robust_mask` (as do the official names at ε = 0, where they are the identity). The points are cut
into chunks of `chunk_size` (default: 1000, or the batch size when larger), each attacked on its
own with a seed of its own (chunk 0: `seed` itself), so a result never depends on how many shards
ran the chunks or how often the run was interrupted; with all points in one chunk (n <= chunk_size,
or chunk_size="all") the official names' results equal the official `run_standard_evaluation`'s. Per-sample masks of every attack (keyed by the points'
ids, e.g. their indices in the test split) give the worst case and merge across runs.
"""
from __future__ import annotations

import json
import time
from collections.abc import Sequence
from contextlib import nullcontext

import numpy as np
import torch

from ..attacks import ThreatModel, create_attack, official
from ..device import exact_fp32, precision_flags
from ..models.info import info as model_info
from ..models.modes import eval_mode
from ..validation import invalid, parse_number
from ..validation import eps_text
from .cascade import DEFAULT_CHUNK, GATHER_TIMEOUT_S, cascade_records
from .cascade_state import digest_model, digest_points
from .config import UNIT_BOX, EvalConfig, check_attacks
from .guards import check_randomized
from .masks import from_bits, to_bits, to_ranges
from .metrics import auto_batch_size, correct_mask
from .progress import Progress
from .result import EvalResult
from .shards import chunk_bounds, gloo_world, parse_shard, shard_chunks, shard_from_env
from .suite_state import RESULT, VERSION, SuiteState, build_result, cascades, new_record, official_run, union


def _settings(atk) -> dict:
    """The hyper-parameters an attack ran with (its repr's fields), for the result's provenance."""
    keep = ("norm", "eps", "alpha", "steps", "restarts", "random_start", "loss", "kappa", "iterations", "samples",
            "decay", "version", "attacks", "n_target_classes")
    return {k: v for k, v in vars(atk).items() if k in keep}


def _step_budget(cfg: EvalConfig) -> dict:
    """The request's α and steps for the state's meta, only where given (older state folders stay valid)."""
    out = {} if cfg.alpha is None else {"alpha": str(cfg.alpha)}
    return out if cfg.steps is None else {**out, "steps": cfg.steps}


def _threat(meta: dict, eps: float) -> ThreatModel:
    """The threat model of one ε: the meta's norm, input box, and α and steps where given."""
    alpha = meta.get("alpha")
    return ThreatModel(norm=meta["norm"], eps=eps, alpha=None if alpha is None else parse_number(alpha, "alpha"),
                       steps=meta.get("steps"), bounds=meta["bounds"])


def _chunk_seed(seed: int, c: int) -> int:
    """Chunk 0 keeps the run's seed (a one-chunk run draws what an unchunked run draws); the others
    get their own, so that two chunks never share random starts."""
    return seed if c == 0 else int(np.random.SeedSequence([seed, c]).generate_state(1)[0])


def _ids(ids, n: int) -> np.ndarray:
    if ids is None:
        return np.arange(n)
    ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    if ids.size != n or np.unique(ids).size != n or (np.diff(ids) <= 0).any():
        raise invalid("ids", f"{ids.size} ids", f"{n} increasing ids, one per point")
    return ids


def evaluate(model, x, y, cfg: EvalConfig | Sequence[str] = ("pgd20",), *, bounds=UNIT_BOX, log=None,
             data: str | None = None, ids=None, provenance: dict | None = None,
             gather_timeout_s: float = GATHER_TIMEOUT_S, **settings):
    """Clean accuracy and robust accuracy per attack for any model mapping inputs in `bounds` to logits.

    evaluate(model, x, y, EvalConfig(...)) -> EvalResult (its `raw` is the JSON dict below). The older
    form evaluate(model, x, y, ["pgd20", ...], eps=8/255, norm="Linf", seed=0, batch_size=None,
    split=None, exact=True, chunk_size=None, state=None, shard=None, budgets=None) builds that
    EvalConfig from its keywords (eps default 8/255, norm Linf) and returns the dict itself.

    bounds: the input box, (0, 1) by default; None for unbounded inputs (e.g. synthetic Gaussian data),
    where only robustfront's own attacks are allowed (ValueError for the official names).
    Runs in fp32 (cfg.exact: TF32 off on GPUs) with every module in eval mode (each module's own flag
    is restored afterwards). batch_size: None = a resumed state's, else `auto_batch_size` (CPU: 500).
    The dict: {clean_acc, robust_acc: {name: acc}, worst_case_acc (per-sample worst case over the
    attacks), mean, nrr, ra_source, n, eps, norm, seed, bounds, time_s: {name: s}, autoattack_log:
    {name: {attack: acc}}, autoattack_warnings: ["name: message"], autoattack_skipped: {name: {attack:
    why}}, autoattack_flags, autoattack_budgets, official_budgets, attack_settings: {name: {...}},
    warnings and flags {randomized} (robustfront's two-pass check), masks (per sample: clean, each
    attack, each cascade step "autoattack/apgd_t"), complete, shard, and the provenance data, split,
    model, batch_size, chunk_size, precision} plus `provenance`. Mean = (SA + RA)/2 and NRR =
    2·SA·RA/(SA + RA) use RA = AutoAttack's accuracy when a cascade is in `attacks`, else the worst
    case; `ra_source` names which. More than one ε returns {"eps": [...], "sweep": [one such dict per
    ε], n, norm, seed, ...}.

    ids: the points' sample ids (increasing; default 0..n-1). cfg.state: a folder that makes the run
    resumable (suite_state.py); cfg.shard: "i/N" runs only that shard's chunks (the result covers those
    points; `merge_evaluations` joins the shards' folders), "env" takes torchrun's RANK/WORLD_SIZE and
    gathers every rank's records so that each returns the whole result. cfg.aa_budget: reduced
    AutoAttack budgets {"n_iter", "n_queries"} (then official_budgets=False).
    `log(line)` receives progress lines (per ε and attack, with timings, images/s and ETA).
    """
    if isinstance(cfg, EvalConfig):
        if settings:
            raise ValueError(f"evaluate() with an EvalConfig takes its settings from it; allowed: no "
                             f"{', '.join(sorted(settings))} keyword")
        return EvalResult.from_json(_evaluate(model, x, y, cfg.with_training_defaults(None), bounds, log, data,
                                              cfg.split, ids, provenance, gather_timeout_s))
    check_attacks(cfg, bounds)   # a string is refused here: the older form takes a list
    legacy = {"eps": 8 / 255, "norm": "Linf", "budgets": None, **settings}
    legacy["aa_budget"] = legacy.pop("budgets")
    split = legacy.pop("split", None)   # a label here: None is allowed
    if legacy.get("state") is not None:
        legacy["state"] = str(legacy["state"])
    conf = EvalConfig(attacks=list(cfg), **legacy)
    return _evaluate(model, x, y, conf, bounds, log, data, split, ids, provenance, gather_timeout_s)


def _evaluate(model, x, y, cfg: EvalConfig, bounds, log, data, split, ids, provenance, gather_timeout_s) -> dict:
    names = check_attacks(cfg.attacks, bounds)
    values, norm, seed, batch_size, exact = cfg.eps_values, cfg.norm, cfg.seed, cfg.batch_size, cfg.exact
    budgets = dict(cfg.aa_budget) if cfg.aa_budget else None
    n = int(len(y))
    ids = _ids(ids, n)
    from_env = cfg.shard == "env"
    shard = shard_from_env() if from_env else (None if cfg.shard is None else parse_shard(cfg.shard))
    store = SuiteState(None if cfg.no_state else cfg.state)
    old = store.existing_meta()
    world = gloo_world(gather_timeout_s) if from_env and shard is not None else nullcontext()
    with world as comm, eval_mode(model), (exact_fp32() if exact else nullcontext()):
        x, y = x.float(), y.long()
        bs = batch_size or (old["batch_size"] if old else auto_batch_size(model, x))
        if comm is not None and batch_size is None:
            bs = comm.min(bs)  # an automatic size may differ between GPUs; the chunks' batches must not
        chunk = n if cfg.chunk_size == "all" else max(DEFAULT_CHUNK, bs) if cfg.chunk_size is None else cfg.chunk_size
        meta = {"format": 1, "kind": "robustfront-eval-state", "attacks": names, "eps": values,
                "sweep": len(values) > 1, "norm": norm, "seed": seed, "batch_size": bs, "chunk_size": chunk, "n": n,
                "ids": to_ranges(ids), "bounds": None if bounds is None else list(map(float, bounds)),
                "budgets": budgets, "exact_fp32": exact,
                **_step_budget(cfg),
                "run": {"data": data, "split": split, "model": model_info(model).name,
                        "batch_size": bs, "batch_size_auto": batch_size is None, "chunk_size": chunk},
                "provenance": dict(provenance or {})}
        meta["attack_settings"] = [{a: _settings(create_attack(a, _threat(meta, e))) for a in names} for e in values]
        meta = json.loads(json.dumps(meta))  # as a resumed run reads it back (tuples become lists)
        if store.folder is not None:
            meta["data_sha256"], meta["model_sha256"] = digest_points(x, y), digest_model(model)
        meta = store.open(meta)
        run = _Run(model, x, y, ids, meta, store, shard, log, budgets)
        per_eps = [run.one_eps(k) for k in range(len(values))]
        writer = comm is None or comm.rank == 0
        if comm is not None:
            per_eps = union(comm.gather(per_eps))
    result = build_result(meta, per_eps, shard=None if from_env else shard)
    if store.folder is not None and result["complete"] and writer:
        from ..checkpoint import write_json_atomic
        write_json_atomic(store.folder / RESULT, result)
    return result


class _Run:
    """One process's share of an evaluation: its chunks, every ε, every attack, records saved as it goes."""

    def __init__(self, model, x, y, ids, meta, store, shard, log, budgets):
        self.model, self.x, self.y, self.ids, self.meta, self.store = model, x, y, ids, meta, store
        self.shard, self.log, self.budgets, self.bs = shard, log, budgets, meta["batch_size"]
        self.bounds = chunk_bounds(meta["n"], meta["chunk_size"])
        self.mine = shard_chunks(len(self.bounds), shard)

    def _say(self, line: str) -> None:
        if self.log:
            self.log(line)

    def _clean(self, k: int, rec: dict) -> None:
        if rec["clean"] is not None:
            return
        s, e = rec["start"], rec["stop"]
        torch.manual_seed(_chunk_seed(self.meta["seed"], rec["chunk"]))
        rec["clean"] = to_bits(correct_mask(self.model, self.x[s:e], self.y[s:e], None, self.bs).cpu().numpy())
        rec["precision"] = precision_flags()
        if rec["chunk"] == 0:  # on the evaluation's first chunk, whichever shard holds it (see cascade.py)
            rand = check_randomized(self.model, self.x[s:min(e, s + min(self.bs, 64))])
            rec["checks"] = [f"robustfront: {rand['message']}"] if rand["randomized"] else []
            for w in rec["checks"]:
                self._say(f"warning: {w}")
        self.store.save_chunk(k, rec)

    def one_eps(self, k: int) -> dict:
        meta, eps = self.meta, self.meta["eps"][k]
        recs = {c: self.store.load_chunk(k, c) or new_record(c, *self.bounds[c]) for c in self.mine}
        runs, casc = {}, cascades(meta, k)
        for c in self.mine:
            self._clean(k, recs[c])
        mine_n = sum(r["stop"] - r["start"] for r in recs.values())
        clean = sum(int(from_bits(r["clean"]).sum()) for r in recs.values())
        self._say(f"eps={eps_text(eps)} clean: {100 * clean / max(mine_n, 1):.2f}%")
        for name in meta["attacks"]:
            t0 = time.perf_counter()
            if name in casc:
                version, single = official_run(name)
                runs[name] = cascade_records(
                    self.model, self.x, self.y, eps=eps, norm=meta["norm"], version=version, attacks=single,
                    seed=meta["seed"], batch_size=self.bs, chunk_size=meta["chunk_size"],
                    state=self.store.cascade_dir(k, name), shard=self.shard, ids=self.ids,
                    budgets=self._budgets(k, name), progress=self.log or False, echo_warnings=True)
                cm = runs[name][0]
                final = [from_bits(r["masks"][cm["attacks"][-1]] if cm["attacks"] else r["clean"])
                         for r in runs[name][1].values()]
            else:
                final = self._attack(k, name, eps, recs)
            robust = sum(int(f.sum()) for f in final)
            self._say(f"eps={eps_text(eps)} {name}: {100 * robust / max(mine_n, 1):.2f}% ({time.perf_counter() - t0:.1f}s)")
        return {"chunks": recs, "cascades": runs}

    def _budgets(self, k: int, name: str) -> dict | None:
        """The reduced budgets of an official name: a version's cascade takes aa_budget, a single attack
        its own key of it (Square n_queries, FAB n_iter); APGD's iterations are its steps."""
        if name in VERSION:
            return self.budgets
        steps = self.meta["attack_settings"][k][name].get("steps")
        if steps is not None:  # APGD: the request's steps, or the official iterations
            return None if steps == official.APGD_ITERS else {"n_iter": steps}
        key = official.BUDGET_KEY[name]
        return {key: self.budgets[key]} if self.budgets and key in self.budgets else None

    def _attack(self, k: int, name: str, eps: float, recs: dict) -> list:
        meta = self.meta
        atk = create_attack(name, _threat(meta, eps))
        todo = [r for r in recs.values() if name not in r["masks"]]
        bar = Progress(name, sum(r["stop"] - r["start"] for r in todo), label=f"  eps={eps:.4g}", every=5.0,
                       write=self.log)
        bar.begin()
        for rec in todo:
            s, e = rec["start"], rec["stop"]
            t0 = time.perf_counter()
            torch.manual_seed(_chunk_seed(meta["seed"], rec["chunk"]))
            ok, _ = atk.robust_mask(self.model, self.x[s:e], self.y[s:e], batch_size=self.bs, seed=meta["seed"],
                                    progress=bar)
            rec["masks"][name] = to_bits(ok.cpu().numpy())
            rec["time_s"][name] = time.perf_counter() - t0
            self.store.save_chunk(k, rec)
        return [from_bits(r["masks"][name]) for r in recs.values()]


__all__ = ["UNIT_BOX", "check_attacks", "evaluate"]

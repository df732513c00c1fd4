"""AutoAttack as a cascade robustfront drives itself: resumable, shardable, per-sample masks.

    res = autoattack_cascade(model, x, y, eps=8/255)                       # standard version
    res = autoattack_cascade(model, x, y, eps=8/255, state="runs/aa")      # kill it, run it again
    res = autoattack_cascade(model, x, y, eps=8/255, state="runs/aa", shard="1/4")   # one of 4 jobs
    res = merge_states("runs/aa")                                          # ... then one result
    res = autoattack_cascade(model, x, y, eps=8/255, attacks=["square"])   # a cascade of one attack
    # torchrun --nproc-per-node 4 ...: shard="env" takes RANK/WORLD_SIZE and gathers over gloo

The attacks, their budgets, seeds and n_target_classes are the official ones (official.py); `attacks`
picks single official attacks (fab, fab_t, square, apgd_ce, ...: at the version's budgets) instead of
the version's cascade, as `AutoAttack(attacks=[...])` does in the official runner. As the
official runner does, every attack runs on the points still robust after the previous ones, packed
in batches of `batch_size`; a point counts as robust at the end if no attack broke it.

Chunks: the points are cut into chunks of `chunk_size` (DEFAULT_CHUNK = 1000), each attacked on
its own, so a chunk's result does not depend on any other chunk, on the shard layout or on
interruptions. With all points in one chunk (chunk_size >= n, or "all") the batches are exactly the
official runner's and so are the per-sample results (tests/test_cascade.py checks this); with
smaller chunks only the packing of the batches differs (hence the random starts), not the method.

State (`state` folder, see cascade_state.py) is written atomically after every batch; a re-run
finds it, checks that it is the same evaluation (settings, budgets, points, weights) and continues
from the last finished batch. Each official perturb() re-seeds torch with the run's seed, which is
why the resumed result is identical. The whole run is exact fp32 (TF32 off, see robustfront.device).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

from ..attacks import official
from ..attacks.threat import NORMS
from ..checkpoint import write_json_atomic
from ..device import exact_fp32, precision_flags
from ..validation import check_choice, check_int, check_number, invalid
from .cascade_state import RESULT, CascadeState, digest_model, digest_points, merge_states, new_chunk, summarize
from .guards import check_randomized, train_mode_modules
from .masks import from_bits, to_bits, to_ranges
from .progress import Progress, to_stderr
from .shards import chunk_bounds, gloo_world, parse_shard, shard_chunks, shard_from_env

DEFAULT_CHUNK = 1000
GATHER_TIMEOUT_S = 24 * 3600  # a torchrun rank waits this long for the slowest one


def _device(model, x) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else x.device


def _ids(ids, n: int) -> np.ndarray:
    if ids is None:
        return np.arange(n)
    ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    if ids.size != n or np.unique(ids).size != n:
        raise invalid("ids", f"{ids.size} ids ({np.unique(ids).size} distinct)", f"{n} distinct ids, one per point")
    return ids


class _Runner:
    """Clean pass and attacks on chunk records, saving each record after every batch."""

    def __init__(self, aa, attacks, x, y, device, batch_size, store, log, seed, write, label):
        self.aa, self.attacks, self.x, self.y, self.device = aa, attacks, x, y, device
        self.bs, self.store, self.log, self.seed, self.write, self.label = batch_size, store, log, seed, write, label
        self.where = {"device": str(device), "precision": precision_flags()}
        self.piece = batch_size   # images per device call: halved on out-of-memory, batches stay as planned

    def _fitting(self, fn, xb, yb):
        """fn(xb, yb) in pieces of self.piece images; out of memory halves the piece and retries (the
        batch's bookkeeping, and so resume, is unchanged; an attack's random draws then differ)."""
        while True:
            try:
                return torch.cat([fn(xb[i:i + self.piece], yb[i:i + self.piece])
                                  for i in range(0, len(yb), self.piece)])
            except torch.cuda.OutOfMemoryError:
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                if self.piece == 1:
                    raise
                self.piece //= 2
                self.log.warning(f"robustfront: out of memory; the evaluation goes on {self.piece} images at a time")

    def _save(self, rec):
        rec.update(self.where)
        rec["warnings"] += self.log.take()
        self.store.save_chunk(rec)

    def checks(self, rec, version):
        """The official checks, plus robustfront's two-pass randomness check, on the chunk's first batch."""
        s, e = rec["start"], min(rec["stop"], rec["start"] + self.bs)
        xb, yb = self.x[s:e].to(self.device), self.y[s:e].to(self.device)
        self.log.take()
        official.run_checks(self.aa, version, self.attacks, xb, yb)
        found = self.log.take()
        rand = check_randomized(self.aa.model, xb)
        if rand["randomized"] and version != "rand":
            self.log.warning(f"robustfront: {rand['message']}")
        elif train_mode_modules(self.aa.model):
            names = train_mode_modules(self.aa.model)
            self.log.warning(f"robustfront: {len(names)} Dropout/BatchNorm module(s) in training mode "
                             f"({', '.join(names[:3])}); call model.eval() before evaluating")
        rec["checks"] = found + self.log.take()
        self._save(rec)

    def clean(self, rec):
        if rec["clean"] is not None:
            return
        t = time.monotonic()
        torch.manual_seed(self.seed)  # a randomised model then gives the same clean mask on a re-run
        ok = []
        for s in range(rec["start"], rec["stop"], self.bs):
            e = min(s + self.bs, rec["stop"])
            xb, yb = self.x[s:e].clone().to(self.device), self.y[s:e].clone().to(self.device)
            ok.append(self._fitting(lambda a, b: b.eq(self.aa.get_logits(a).max(dim=1)[1]), xb, yb).cpu())
        rec["clean"] = to_bits(torch.cat(ok).numpy())
        rec["time_s"]["clean"] = time.monotonic() - t
        self._save(rec)

    def _before(self, rec, attack) -> np.ndarray:
        i = self.attacks.index(attack)
        return from_bits(rec["masks"][self.attacks[i - 1]] if i else rec["clean"])

    def _resume(self, rec, attack):
        """(batches already done, robust mask so far) of `attack` on this chunk."""
        p = rec["partial"]
        if p and p["attack"] == attack:
            return p["batches"], from_bits(p["mask"])
        return 0, self._before(rec, attack).copy()

    def attack(self, attack, recs, all_recs):
        todo = [r for r in recs if attack not in r["masks"]]
        left = 0
        for r in todo:
            k = int(self._before(r, attack).sum())
            left += max(0, k - self._resume(r, attack)[0] * self.bs)
        prog = Progress(attack, left, label=self.label, write=self.write)
        prog.begin()
        for r in todo:
            self._attack_chunk(attack, r, prog)
        robust = sum(int(from_bits(r["masks"][attack]).sum()) for r in all_recs)
        total = sum(r["stop"] - r["start"] for r in all_recs)
        prog.done(f"robust after {attack.upper()}: {100 * robust / max(total, 1):.2f}% of {total}")

    def _attack_chunk(self, attack, rec, prog):
        idx = np.flatnonzero(self._before(rec, attack))
        done, robust = self._resume(rec, attack)
        for b in range(done, -(-idx.size // self.bs)):
            t = time.monotonic()
            sel = idx[b * self.bs:(b + 1) * self.bs]
            g = torch.as_tensor(sel + rec["start"], device=self.x.device)
            xb, yb = self.x[g].clone().to(self.device), self.y[g].clone().to(self.device)
            with prog.watch(self.aa.model):  # lines from inside the official attack's batch
                broken = self._fitting(lambda a, b: ~b.eq(self.aa.get_logits(official.perturb(self.aa, attack, a, b))
                                                          .max(dim=1)[1]), xb, yb).cpu().numpy()
            robust[sel[broken]] = False
            rec["partial"] = {"attack": attack, "batches": b + 1, "mask": to_bits(robust)}
            rec["time_s"][attack] = rec["time_s"].get(attack, 0.0) + time.monotonic() - t
            rec["attacked"][attack] = rec["attacked"].get(attack, 0) + int(sel.size)
            self._save(rec)
            prog.update(sel.size)
        rec["masks"][attack] = to_bits(robust)
        rec["partial"] = None
        self._save(rec)


def _gather(recs: dict, timeout_s: float) -> dict:
    """Every rank's chunk records on every rank, over a gloo group (CPU objects: no NCCL timeouts)."""
    with gloo_world(timeout_s) as world:
        parts = world.gather(recs)
    out = {}
    for p in parts:
        out.update(p)
    return out


def autoattack_cascade(model, x: torch.Tensor, y: torch.Tensor, *, eps, norm: str = "Linf",
                       version: str = "standard", attacks: list[str] | None = None, seed: int = 0,
                       batch_size: int | None = None,
                       chunk_size: int | str = DEFAULT_CHUNK, state=None, shard=None, ids=None,
                       budgets: dict | None = None, progress=True, echo_warnings: bool = True,
                       gather_timeout_s: float = GATHER_TIMEOUT_S) -> dict:
    """AutoAttack (official attacks) on (x, y), x in [0, 1]; returns the result dict (cascade_state.summarize).

    version: "standard" (APGD-CE, APGD-T, FAB-T, Square), "plus" (+ APGD-DLR, FAB, 5 restarts) or
      "rand" (APGD-CE, APGD-DLR with 20 EOT samples, for randomised models).
    attacks: single official attacks (robustfront's names) instead of the version's cascade; the
      result is named after them ("square", "fab-t", ...).
    batch_size: None = the state folder's, else robustfront.eval.metrics.auto_batch_size (recorded).
    chunk_size: points per independent chunk (see the module docstring); "all" = one chunk.
    state: a folder for resumable runs (None: in memory). shard: None, "i/N" (0-based) or (i, N): run
      only that shard's chunks (the result then covers those points; merge_states combines shards);
      "env": the shard from torchrun's RANK/WORLD_SIZE, results gathered so that every rank returns
      the whole result (plain run when WORLD_SIZE is unset or 1).
    ids: the points' sample ids (e.g. their indices in the test split), for the masks; default 0..n-1.
    budgets: {"n_iter", "n_queries"} reduced budgets (tests, quick looks): official_budgets=False.
    progress: True (stderr), False, or a callable taking each line.
    """
    from_env = isinstance(shard, str) and shard == "env"
    if from_env:
        shard = shard_from_env()
    meta, recs = cascade_records(model, x, y, eps=eps, norm=norm, version=version, attacks=attacks, seed=seed,
                                 batch_size=batch_size, chunk_size=chunk_size, state=state, shard=shard, ids=ids,
                                 budgets=budgets, progress=progress, echo_warnings=echo_warnings)
    shard = None if shard is None else parse_shard(shard)
    if from_env and shard is not None:
        recs = _gather(recs, gather_timeout_s)
    result = summarize(meta, recs, shard=None if from_env else shard)
    if state is not None and result["complete"] and (not from_env or shard is None or shard[0] == 0):
        write_json_atomic(Path(state) / RESULT, result)
    return result


def cascade_records(model, x: torch.Tensor, y: torch.Tensor, *, eps, norm: str = "Linf", version: str = "standard",
                    attacks: list[str] | None = None, seed: int = 0, batch_size: int | None = None, chunk_size: int | str = DEFAULT_CHUNK, state=None,
                    shard=None, ids=None, budgets: dict | None = None, progress=True,
                    echo_warnings: bool = True) -> tuple[dict, dict[int, dict]]:
    """The work of `autoattack_cascade` (same arguments; shard None, "i/N" or (i, N)): runs this
    shard's chunks (resuming from `state`) and returns (meta, {chunk: record}) of those chunks, for
    callers that gather and summarise records themselves (robustfront.eval.suite)."""
    version = check_choice("version", version, official.VERSIONS)
    norm = check_choice("norm", norm, NORMS)
    eps = check_number("eps", eps, 0, strict=True)
    seed = check_int("seed", seed, 0)
    n = int(y.shape[0])
    if n == 0 or x.shape[0] != n:
        raise invalid("points", f"x {tuple(x.shape)}, y {tuple(y.shape)}",
                      "at least one point, as many labels as inputs")
    ids = _ids(ids, n)
    shard = None if shard is None else parse_shard(shard)
    chunk_size = n if chunk_size in (0, "all") else check_int("chunk_size", chunk_size, 1)
    write = to_stderr if progress is True else (None if progress is False else progress)
    device = _device(model, x)
    store = CascadeState(state)
    old = store.existing_meta()
    only = attacks
    params = list(model.parameters())
    grads = [p.grad for p in params]  # FAB calls .backward(): the parameters' .grad is put back afterwards
    try:
        with exact_fp32():
            with torch.no_grad():
                n_classes = int(model(x[:1].to(device)).shape[1])
            aa, attacks, skipped, log = official.build(model, eps=eps, norm=norm, version=version, seed=seed,
                                                       device=device, n_classes=n_classes, budgets=budgets,
                                                       echo=echo_warnings)
            if only:  # a cascade of the attacks asked for (one, in evaluation), each at the version's budgets
                attacks, skipped = official.single(only, n_classes), {}
            name = official.NAME[version] if not only else "+".join(attacks)
            if skipped and echo_warnings:
                print(f"autoattack: K={n_classes} classes, dropped " + ", ".join(
                    f"{official.ours(a)} ({why})" for a, why in skipped.items()), file=sys.stderr, flush=True)
            if batch_size is None:
                from .metrics import auto_batch_size
                batch_size = old["batch_size"] if old else auto_batch_size(model, x[:32].to(device))
            meta = {"format": 1, "kind": "autoattack-cascade", "name": name, "version": version,
                    "attacks": attacks, "skipped": skipped, "eps": eps, "norm": norm, "seed": seed,
                    "batch_size": check_int("batch_size", batch_size, 1), "chunk_size": chunk_size, "n": n,
                    "ids": to_ranges(ids), "budgets": official.budgets_of(aa, attacks),
                    "official_budgets": not budgets, "n_classes": n_classes, "pyautoattack": official.package_version(),
                    "data_sha256": digest_points(x, y), "model_sha256": digest_model(model)}
            store.open(meta)
            bounds = chunk_bounds(n, chunk_size)
            mine = shard_chunks(len(bounds), shard)
            recs = {c: store.load_chunk(c) or new_chunk(c, *bounds[c]) for c in mine}
            label = name + (f"[{shard[0]}/{shard[1]}]" if shard else "")
            run = _Runner(aa, attacks, x, y, device, meta["batch_size"], store, log, seed, write, label)
            if 0 in mine:  # the checks run on the evaluation's first chunk, whichever shard holds it, so
                run.checks(recs[0], version)  # that sharded and plain runs record the same warnings
            with torch.no_grad():  # as in the official runner; the attacks enable gradients themselves
                for c in mine:
                    run.clean(recs[c])
                for a in attacks:
                    run.attack(a, [recs[c] for c in mine], list(recs.values()))
    finally:
        for p, g in zip(params, grads):
            p.grad = g
    return meta, recs


__all__ = ["DEFAULT_CHUNK", "autoattack_cascade", "cascade_records", "merge_states"]

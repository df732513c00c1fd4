"""Data-parallel training over processes: `torchrun --nproc_per_node=N -m robustfront train ...`.

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT; `session` reads them,
joins the process group (NCCL on GPUs, one GPU per local rank; gloo on CPUs) and leaves it.

The design (docs/distributed.md), chosen because it is simple and exact for every combiner:

- every rank holds the whole model; there is no DistributedDataParallel wrapper, so attacks, the
  objective's extra forwards and the per-term backward passes all run on the plain module;
- each rank takes an equal, disjoint shard of every global batch of the (seed, epoch) permutation
  (`DeviceLoader.shard`), augmented with the global batch's random draws;
- the Trainer writes each step's gradients (the one backward of a sum combiner, or the per-term
  gradients of a gradient-surgery combiner) into ONE flat buffer, averages it over the ranks with
  ONE all-reduce, and only then combines: every rank sees the global g_c and g_a, takes the same
  decision and the same step, so the weights stay identical without a broadcast per step;
- epoch sums are all-reduced once per epoch; rank 0 alone writes metrics and checkpoints, which
  hold every rank's RNG state for an exact resume.
"""
from __future__ import annotations

import hashlib
import json
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from ..device import resolve_device
from ..launch import process_group, torchrun_env


class PeerError(ValueError):
    """Another rank failed during set-up; that rank reports the error itself (this one stays quiet)."""


_SHARED = [False]  # the ranks have met (same_config, agree): from then on rank 0 reports every error


def error_shared() -> bool:
    """True once the ranks have met: an error is then either exchanged (rank 0 names the failing rank) or
    hits every rank alike (a differing config, divergence), so rank 0 alone reports it."""
    return _SHARED[0]


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    owned: bool = False          # this process created the group (and destroys it)

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def all_reduce_(self, t: torch.Tensor) -> torch.Tensor:
        """Sum over the ranks, in place (nothing with one process)."""
        if self.active:
            dist.all_reduce(t)
        return t

    def all_gather_object(self, obj) -> list:
        if not self.active:
            return [obj]
        out = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def broadcast_(self, tensors) -> None:
        """Rank 0's values into every rank's tensors (once, at the start: one identical model)."""
        if self.active:
            with torch.no_grad():
                for t in tensors:
                    dist.broadcast(t, 0)

    def agree(self, fn):
        """fn() on every rank; when it raises on any rank, it raises on all of them (the failing rank its
        own error, the others PeerError naming it), so no rank is left waiting in a collective. fn itself
        must not call collectives (a rank that failed before one would leave the others in it)."""
        try:
            value, error = fn(), None
        except Exception as e:  # noqa: BLE001 - exchanged, then re-raised below
            value, error = None, e
        if not self.active:
            if error is not None:
                raise error
            return value
        msgs = self.all_gather_object(None if error is None else " ".join(str(error).split()) or type(error).__name__)
        _SHARED[0] = True
        if error is not None:
            raise error
        failed = [(r, m) for r, m in enumerate(msgs) if m is not None]
        if failed:
            r, m = failed[0]
            raise PeerError(f"rank {r} failed: {m}")
        return value

    def same_config(self, cfg: dict) -> None:
        """Refuse, on every rank, ranks given different configs (another --seed on one rank would train on
        shards of another permutation without a word): a hash of the whole config is compared, and the
        first differing key is named."""
        if not self.active:
            return
        text = json.dumps(cfg, sort_keys=True, default=str)
        mine = (hashlib.sha256(text.encode()).hexdigest(), json.loads(text))
        ranks = self.all_gather_object(mine)
        _SHARED[0] = True
        ref = ranks[0][1]
        for r, (digest, other) in enumerate(ranks):
            if digest != ranks[0][0]:
                key = sorted(k for k in set(ref) | set(other) if ref.get(k) != other.get(k))[0]
                raise ValueError(f"the ranks were given different configs: rank {r} has {key}={other.get(key)!r}, "
                                 f"rank 0 has {key}={ref.get(key)!r}; allowed: the same flags and config file on "
                                 f"every rank")


def rank_seed(seed: int, rank: int) -> int:
    """The torch seed of one rank (attacks' random starts, RAAT's mixing draw): distinct per rank."""
    return int(np.random.SeedSequence([seed, rank, 0x5EED]).generate_state(1, np.uint64)[0]) & (2**63 - 1)


@contextmanager
def session(device: str = "auto"):
    """Yields (Dist, torch.device). One process: Dist() and resolve_device(device). Under torchrun (WORLD_SIZE
    > 1): joins the group (or uses one already initialised, e.g. by a test) and destroys it on exit if it
    made it."""
    launch = torchrun_env()
    if not launch.launched:
        yield Dist(), resolve_device(device)
        return
    rank, world, local = launch.rank, launch.world, launch.local_rank
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device={device!r} with {world} ranks is refused: each rank takes its own GPU "
                         f"(cuda:LOCAL_RANK); allowed: auto, cuda, cpu")
    if device != "cpu" and torch.cuda.is_available():
        if local >= torch.cuda.device_count():
            raise ValueError(f"LOCAL_RANK={local} but this node has {torch.cuda.device_count()} GPU(s); allowed: "
                             f"--nproc_per_node <= the GPU count")
        dev, backend = torch.device("cuda", local), "nccl"
        torch.cuda.set_device(dev)
    elif device == "cuda":
        raise ValueError(f"device='cuda' with {world} ranks, but no GPU is visible; allowed: device=cpu (gloo)")
    else:
        dev, backend = torch.device("cpu"), "gloo"
    with process_group(backend, rank=rank, world_size=world,
                       **({"device_id": dev} if dev.type == "cuda" else {})) as owned:
        if not owned and dist.get_world_size() != world:
            raise ValueError(f"WORLD_SIZE={world} but the process group has {dist.get_world_size()} ranks")
        yield Dist(rank=dist.get_rank(), world=world, local_rank=local, owned=owned), dev


def rank_from_env() -> tuple[int, int]:
    """(rank, world) as torchrun set them, without joining anything (e.g. for the CLI's messages)."""
    try:
        launch = torchrun_env()
    except ValueError:
        return 0, 1
    return launch.rank, launch.world


__all__ = ["Dist", "PeerError", "error_shared", "rank_from_env", "rank_seed", "session"]

"""Splitting an evaluation's points over processes: `shard i/N`, and torchrun's RANK/WORLD_SIZE.

The points (positions 0..n-1 of the evaluated tensors) are cut into contiguous chunks of
`chunk_size`; chunk c belongs to shard c mod N (strided over chunks, so that every shard gets
points from the whole range and the short last chunk does not pile onto one shard). Shards are
numbered from 0, like torchrun's ranks: "0/4" .. "3/4".

A chunk is the cascade's unit of independence (each one is attacked with the same seed, in batches
of its own still-robust points), so a result depends on the chunk size but never on how many
shards ran the chunks, or in which order, or how often the run was interrupted.
"""
from __future__ import annotations

import re
from contextlib import contextmanager
from datetime import timedelta

import numpy as np

from ..launch import process_group, torchrun_env
from ..validation import check_int, invalid

_SHARD = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*")


def parse_shard(spec) -> tuple[int, int]:
    """(i, N) from "i/N" (0 <= i < N) or a pair; one error line otherwise."""
    if isinstance(spec, (tuple, list)) and len(spec) == 2:
        i, n = spec
    else:
        m = _SHARD.fullmatch(spec) if isinstance(spec, str) else None
        if not m:
            raise invalid("shard", spec, "i/N with 0 <= i < N (e.g. 0/4 .. 3/4)")
        i, n = int(m.group(1)), int(m.group(2))
    n = check_int("shard count", n, 1)
    if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not 0 <= i < n:
        raise invalid("shard", f"{i}/{n}", f"i/N with 0 <= i < N; shards of {n} are 0/{n} .. {n - 1}/{n}",
                      "out of range")
    return int(i), int(n)


def shard_from_env(environ=None) -> tuple[int, int] | None:
    """(RANK, WORLD_SIZE) as torchrun sets them, or None outside a multi-process launch."""
    launch = torchrun_env(environ)
    return parse_shard((launch.rank, launch.world)) if launch.launched else None


def world_size() -> int:
    """torchrun's WORLD_SIZE (1 outside a multi-process launch)."""
    return torchrun_env().world


def rank() -> int:
    """torchrun's RANK (0 outside a multi-process launch)."""
    return torchrun_env().rank


def chunk_bounds(n: int, chunk_size: int) -> list[tuple[int, int]]:
    """[(start, stop), ...] covering range(n) in pieces of chunk_size (the last may be shorter)."""
    check_int("chunk_size", chunk_size, 1)
    return [(s, min(s + chunk_size, n)) for s in range(0, n, chunk_size)]


def shard_chunks(n_chunks: int, shard: tuple[int, int] | None) -> list[int]:
    """The chunk numbers shard (i, N) runs: i, i+N, i+2N, ... (all chunks for None)."""
    if shard is None:
        return list(range(n_chunks))
    i, n = parse_shard(shard)
    return list(range(i, n_chunks, n))


def shard_positions(n: int, chunk_size: int, shard) -> np.ndarray:
    """Positions (0..n-1) of the points shard `shard` evaluates, sorted."""
    bounds = chunk_bounds(n, chunk_size)
    parts = [np.arange(*bounds[c]) for c in shard_chunks(len(bounds), shard)]
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def device_for_rank(environ=None) -> str:
    """"cuda:LOCAL_RANK" under torchrun on a GPU machine, else "cuda"/"cpu"."""
    import torch
    if not torch.cuda.is_available():
        return "cpu"
    return f"cuda:{torchrun_env(environ).local_rank % max(1, torch.cuda.device_count())}"


class World:
    """The processes of a torchrun launch, talking over gloo (CPU-side Python objects: no NCCL
    watchdog fires while the slowest rank finishes its chunks)."""

    def __init__(self, group):
        self.group = group

    @property
    def rank(self) -> int:
        import torch.distributed as dist
        return dist.get_rank()

    def gather(self, obj) -> list:
        """Every rank's `obj`, in rank order, on every rank."""
        import torch.distributed as dist
        parts = [None] * dist.get_world_size()
        dist.all_gather_object(parts, obj, group=self.group)
        return parts

    def min(self, value: int) -> int:
        """The smallest `value` over the ranks (e.g. an automatic batch size, which must agree)."""
        return min(self.gather(int(value)))


@contextmanager
def gloo_world(timeout_s: float):
    """A `World` over the launch's processes: the existing process group when it is gloo (else a gloo
    group beside it), or one created here from torchrun's environment and destroyed on exit."""
    import torch.distributed as dist
    with process_group("gloo", timeout_s=timeout_s) as created:
        group = None if created or dist.get_backend() == "gloo" else dist.new_group(
            backend="gloo", timeout=timedelta(seconds=timeout_s))
        yield World(group)


__all__ = ["World", "chunk_bounds", "device_for_rank", "gloo_world", "parse_shard", "rank", "shard_chunks",
           "shard_from_env", "shard_positions", "world_size"]

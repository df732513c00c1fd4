"""Cooperating processes: torchrun's environment read in one place, and the one process-group context.

Training (train/distributed.py: NCCL or gloo, one model data-parallel) and evaluation (eval/shards.py:
gloo, every rank a shard of the points) both read RANK / WORLD_SIZE / LOCAL_RANK through `torchrun_env`
and open their group with `process_group`, which joins a group already initialised (e.g. by a test
or the other side) and destroys only a group it made itself.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta


@dataclass(frozen=True)
class Launch:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def launched(self) -> bool:
        """Several processes (WORLD_SIZE > 1)?"""
        return self.world > 1


def _env_int(env, name: str, default: int) -> int:
    v = env.get(name)
    if v is None or v == "":
        return default
    if not str(v).isdigit():
        raise ValueError(f"{name}={v!r} is not a non-negative integer; allowed: the values torchrun sets")
    return int(v)


def torchrun_env(environ=None) -> Launch:
    """(RANK, WORLD_SIZE, LOCAL_RANK) as torchrun sets them (0, 1, 0 when unset); one line for a bad value.
    Outside a multi-process launch the rank is 0 whatever RANK says."""
    env = os.environ if environ is None else environ
    world = _env_int(env, "WORLD_SIZE", 1)
    return Launch(_env_int(env, "RANK", 0) if world > 1 else 0, world, _env_int(env, "LOCAL_RANK", 0))


@contextmanager
def process_group(backend: str, *, timeout_s: float | None = None, **init):
    """Yields True when it created the default process group (and destroys it on exit), False when one
    was already initialised. `init`: init_process_group's other keywords (rank, world_size, device_id)."""
    import torch.distributed as dist
    created = not dist.is_initialized()
    if created:
        dist.init_process_group(backend, **({"timeout": timedelta(seconds=timeout_s)} if timeout_s else {}), **init)
    try:
        yield created
    finally:
        if created and dist.is_initialized():
            dist.destroy_process_group()


__all__ = ["Launch", "process_group", "torchrun_env"]

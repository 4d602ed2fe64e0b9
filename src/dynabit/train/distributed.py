"""``torch.distributed`` plumbing: init from the ``torchrun`` environment, rank-0 helpers, sharding.

Everything works unchanged in a single process (world size 1, no process group).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import Sampler


@dataclass(frozen=True)
class DistEnv:
    """Where this process sits in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False  # True when we created the process group (so we destroy it)

    @property
    def is_main(self) -> bool:
        """Rank 0 writes files and logs; the others stay quiet."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def current_env() -> DistEnv:
    """The environment of an already-initialized process group (or a single process)."""
    if dist.is_available() and dist.is_initialized():
        return DistEnv(
            rank=dist.get_rank(),
            world_size=dist.get_world_size(),
            local_rank=int(os.environ.get("LOCAL_RANK", dist.get_rank())),
        )
    return DistEnv()


def init_distributed(backend: str = "gloo") -> DistEnv:
    """Join the process group that ``torchrun`` describes in the environment, if any.

    Reuses a group that is already initialized (e.g. by a test harness). Threads per process
    are left to ``OMP_NUM_THREADS``, which ``torchrun`` sets.
    """
    if dist.is_available() and dist.is_initialized():
        return current_env()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistEnv()
    dist.init_process_group(backend=backend, init_method="env://")
    env = current_env()
    return DistEnv(env.rank, env.world_size, env.local_rank, owns_group=True)


def shutdown(env: DistEnv) -> None:
    """Destroy the process group if :func:`init_distributed` created it.

    All ranks meet at a barrier first: a gloo rank that tears its connections down while a
    peer still uses them can abort the peer ("terminate called without an active exception").
    """
    if env.owns_group and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def barrier(env: DistEnv) -> None:
    """Wait for every rank (no-op in a single process)."""
    if env.distributed:
        dist.barrier()


def all_reduce_sum(values: torch.Tensor, env: DistEnv) -> torch.Tensor:
    """Sum a tensor over ranks (returns a new tensor; the input is left alone)."""
    out = values.detach().clone()
    if env.distributed:
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def all_reduce_max(values: torch.Tensor, env: DistEnv) -> torch.Tensor:
    """Element-wise maximum of a tensor over ranks (a new tensor)."""
    out = values.detach().clone()
    if env.distributed:
        dist.all_reduce(out, op=dist.ReduceOp.MAX)
    return out


def broadcast_object(obj: Any, env: DistEnv) -> Any:
    """Rank 0's ``obj`` on every rank (e.g. a decision only rank 0 can make)."""
    if not env.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_gather_object(obj: Any, env: DistEnv) -> list[Any]:
    """Every rank's ``obj``, in rank order, on every rank."""
    if not env.distributed:
        return [obj]
    out: list[Any] = [None] * env.world_size
    dist.all_gather_object(out, obj)
    return out


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The global sample order of an epoch: a pure function of ``(seed, epoch)``."""
    g = torch.Generator()
    # Mix seed and epoch so that (seed, epoch) pairs don't collide as seed + epoch would.
    g.manual_seed((seed * 1_000_003 + epoch) % (2**63))
    return torch.randperm(n, generator=g)


class ShardedSampler(Sampler[int]):
    """A resumable ``DistributedSampler``: deterministic per epoch, sharded, skippable.

    Train mode (``shuffle=True``): the epoch's permutation is cut into global batches of
    ``per_rank * world_size`` samples; rank ``r`` takes the ``r``-th slice of each, so a step
    sees the same samples whatever the world size. Only full batches are used (every rank runs
    the same number of steps). ``set_position(epoch, step)`` restarts mid-epoch after a resume.

    Eval mode (``shuffle=False``): rank ``r`` takes ``indices[r::world]`` with no padding, so
    summed counts over ranks cover each sample exactly once.
    """

    def __init__(
        self,
        n: int,
        env: DistEnv,
        *,
        per_rank_batch: int = 1,
        seed: int = 0,
        shuffle: bool = True,
        max_steps: int | None = None,
    ) -> None:
        self.n = n
        self.env = env
        self.per_rank_batch = per_rank_batch
        self.seed = seed
        self.shuffle = shuffle
        self.max_steps = max_steps
        self.epoch = 0
        self.start_step = 0

    @property
    def global_batch(self) -> int:
        return self.per_rank_batch * self.env.world_size

    def steps_per_epoch(self) -> int:
        """Optimizer steps per epoch in train mode (full global batches, at least one)."""
        steps = max(1, self.n // self.global_batch)
        return min(steps, self.max_steps) if self.max_steps else steps

    def set_position(self, epoch: int, step: int = 0) -> None:
        """Start the next iteration at ``step`` (in batches) of ``epoch``."""
        self.epoch, self.start_step = epoch, step

    def set_epoch(self, epoch: int) -> None:
        """``DistributedSampler``-compatible: start ``epoch`` from its beginning."""
        self.set_position(epoch, 0)

    def _indices(self) -> torch.Tensor:
        if not self.shuffle:
            r = self.env.rank
            return torch.arange(r, max(self.n, r), self.env.world_size)
        perm = epoch_permutation(self.n, self.seed, self.epoch)
        b, w, r = self.per_rank_batch, self.env.world_size, self.env.rank
        steps = self.steps_per_epoch()
        if self.n < self.global_batch:  # tiny data: one step over all samples (repeated as needed)
            perm = perm.repeat(self.global_batch // self.n + 1)
        batches = perm[: steps * b * w].view(steps, w, b)
        return batches[self.start_step :, r].reshape(-1)

    def __iter__(self) -> Iterator[int]:
        return iter(self._indices().tolist())

    def __len__(self) -> int:
        if not self.shuffle:
            return len(range(self.env.rank, self.n, self.env.world_size))
        return (self.steps_per_epoch() - self.start_step) * self.per_rank_batch

"""Multi-process training: the engine under ``torchrun`` with PyTorch's DistributedDataParallel.

Nothing home-made: gradients are averaged by :class:`torch.nn.parallel.DistributedDataParallel`
and metrics summed with ``torch.distributed.all_reduce``. What ltkd adds is only the data side:
every rank draws the *same* epoch of indices from the sampler (same seed everywhere) and keeps a
disjoint shard of it, :class:`ShardedSampler`; the per-rank batch is the configured batch size
divided by the number of processes, so the global batch — and the recipe's learning-rate schedule
— stays what the profile says.

Launch, e.g. on two GPUs (or two CPU processes with the gloo backend)::

    torchrun --nproc_per_node 2 -m ltkd.cli train --method ce --dataset cifar10 --profile paper

:func:`ltkd.train.fit` calls :func:`init_from_env` itself, so any script that trains through the
engine runs under ``torchrun`` unchanged. BatchNorm statistics stay per process during an epoch (plain DDP, as the
papers' multi-GPU code does); at each epoch's end every rank takes rank 0's, so all ranks hold the
model rank 0 saves, and evaluation splits the test set over the ranks
(``ltkd.train.predict(..., distributed=True)``) instead of repeating it on each.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from .data import ClassSampler
from .errors import LtkdError

__all__ = ["init_from_env", "is_initialized", "world_size", "rank", "is_main", "ShardedSampler", "all_reduce_sum",
           "broadcast_buffers"]


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def init_from_env(backend: str | None = None) -> bool:
    """Join the process group ``torchrun`` describes (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``...).

    Returns True when this process is one of several. Backend: ``nccl`` when CUDA is there,
    else ``gloo`` (or ``$LTKD_DIST_BACKEND``). Under CUDA each process uses GPU ``LOCAL_RANK``.
    Does nothing outside ``torchrun`` (no ``WORLD_SIZE`` > 1) or when already initialised.
    """
    if is_initialized():
        return dist.get_world_size() > 1
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or "RANK" not in os.environ:
        return False
    if not dist.is_available():
        raise LtkdError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    use_cuda = torch.cuda.is_available() and os.environ.get("LTKD_DEVICE", "cuda").startswith("cuda")
    backend = backend or os.environ.get("LTKD_DIST_BACKEND") or ("nccl" if use_cuda else "gloo")
    if use_cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend=backend)
    return dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if is_initialized() else 0


def is_main() -> bool:
    """True on rank 0 (and in a single process): the one that writes files and shows progress."""
    return rank() == 0


class ShardedSampler:
    """Rank ``rank``'s disjoint share of ``base``'s epoch: indices ``rank, rank + W, rank + 2W, ...``.

    All ranks draw the same epoch (same generator seed) and drop the last ``len % W`` indices, so
    every rank takes the same number of steps; step s on all ranks together covers exactly the
    slice a single process with a W× larger batch would take at step s.
    """

    def __init__(self, base: ClassSampler, rank: int, world: int):
        if not 0 <= rank < world:
            raise LtkdError(f"rank {rank} outside a world of {world}")
        self.base, self.rank, self.world = base, rank, world

    def __len__(self) -> int:
        return len(self.base) // self.world

    def epoch(self, generator: torch.Generator) -> torch.Tensor:
        full = self.base.epoch(generator)
        n = len(full) - len(full) % self.world
        return full[self.rank : n : self.world]


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum ``t`` over all ranks, in place (no-op in a single process)."""
    if world_size() > 1:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def broadcast_buffers(module: torch.nn.Module) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every rank (no-op in a single process).

    DDP keeps parameters in step, but each rank updates its running statistics on its own shard;
    after this, every rank holds exactly rank 0's model."""
    if world_size() > 1:
        for b in module.buffers():
            dist.broadcast(b.data, src=0)

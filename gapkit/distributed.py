"""One run on several processes: ``torchrun --nproc_per_node=N -m gapkit train ...`` (DistributedDataParallel).

Each process (rank) holds the whole model; the trainer (:mod:`gapkit.training`) asks this module for the rest:

- the training split is sharded by mini-batch: every rank draws the same permutation from the run's generator
  (:func:`epoch_shard`), and global batch ``k`` of ``batch_size`` clips, the batch one process would train on, is
  cut into ``world_size`` consecutive parts of ``batch_size / world_size``, one per rank; DDP averages the
  gradients, so a step sees the whole global batch. Only full global batches are trained on (every rank must take
  the same number of steps), so up to ``batch_size - 1`` clips an epoch are left out, different ones every epoch.
  BatchNorm normalises each rank's part with its own statistics; the running statistics of rank 0 are the model's
  (broadcast at every forward pass and at the end of every epoch, :meth:`Distributed.sync_buffers`);
- the gaps of Algorithm 1 are collected by each rank over a fixed shard of the training split and gathered with
  their sample indices (:meth:`Distributed.gather_gaps`), so that every rank fits Eq. 8 to the same gaps in split
  order, the array one process would have collected;
- the loss sums and correct counts are summed over the ranks once an epoch, the non-finite flag at every check;
- evaluation, the history's record and the checkpoints are rank 0's; the record is sent to the other ranks.

NCCL on GPUs (one per rank: ``LOCAL_RANK``), gloo on CPUs. The methods that call their model only through its
forward pass train this way (:data:`DDP_METHODS`); the peers, which call its submodules directly or modulate
each modality's gradients between the backward pass and the step, refuse (:func:`check_method`).
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

#: the methods that train under DistributedDataParallel: their training step calls ``model(audio, visual)`` only
DDP_METHODS = ("concat", "adaptive", "warmup-only", "warmup-reset")


@dataclass
class Distributed:
    """This process's place in a multi-process run."""

    rank: int
    world_size: int
    backend: str

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def wrap(self, model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        """The model as the training step calls it: DDP around ``model`` (whose parameters it broadcasts from rank 0)."""
        ids = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def local_batch(self, batch_size: int) -> int:
        """Each rank's part of a global mini-batch of ``batch_size``."""
        if batch_size % self.world_size or batch_size // self.world_size < 2:
            raise ValueError(f"batch_size {batch_size} must split into {self.world_size} equal parts of at least 2 "
                             f"clips (one per process; BatchNorm needs two)")
        return batch_size // self.world_size

    def fixed_shard(self, n: int) -> torch.Tensor:
        """This rank's clips for a pass without shuffling (the gap collection): every ``world_size``-th one."""
        return torch.arange(self.rank, n, self.world_size)

    def all_sum(self, values: torch.Tensor) -> torch.Tensor:
        """``values`` summed over the ranks (every rank gets the sum)."""
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
        return values

    def first_nonfinite(self, batch: torch.Tensor) -> int:
        """The first batch (over all ranks) whose loss was non-finite, or -1: one all-reduce of a device flag."""
        flag = torch.where(batch < 0, torch.iinfo(torch.long).max, batch).reshape(1)
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        first = int(flag)
        return -1 if first == torch.iinfo(torch.long).max else first

    def broadcast(self, obj):
        """Rank 0's ``obj`` on every rank."""
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather_gaps(self, gaps: torch.Tensor, index: torch.Tensor, n: int) -> np.ndarray:
        """The gaps of all ``n`` training clips in split order, from each rank's ``gaps`` of the clips ``index``."""
        parts = [None] * self.world_size
        dist.all_gather_object(parts, (index.cpu().numpy(), gaps.cpu().numpy().astype(np.float32)))
        out = np.full(n, np.nan, dtype=np.float32)
        seen = np.zeros(n, dtype=bool)
        for idx, g in parts:
            out[idx] = g
            seen[idx] = True
        if not seen.all():
            raise RuntimeError(f"the ranks' gaps cover {int(seen.sum())} of {n} training clips")
        return out

    def sync_buffers(self, model: torch.nn.Module) -> None:
        """Rank 0's buffers (BatchNorm's running statistics) on every rank: the model evaluated and saved."""
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)

    def barrier(self) -> None:
        dist.barrier()


def current() -> Distributed | None:
    """The multi-process run this process belongs to (an initialised process group of two or more), else ``None``."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return None
    return Distributed(dist.get_rank(), dist.get_world_size(), dist.get_backend())


def init_from_env(device: str = "auto") -> Distributed | None:
    """Join the process group that ``torchrun`` describes (``WORLD_SIZE`` > 1 in the environment); ``None`` when this
    process runs alone. NCCL when the run's device is CUDA (each rank on GPU ``LOCAL_RANK``), gloo otherwise."""
    if int(os.environ.get("WORLD_SIZE", "1")) < 2:
        return None
    if not dist.is_initialized():
        cuda = device != "cpu" and torch.cuda.is_available()
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if cuda else "gloo")
    return current()


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@contextlib.contextmanager
def main_first(group: Distributed | None):
    """Rank 0 runs the block first (e.g. building the cache), the other ranks after it: no two write the same files."""
    if group is not None and not group.is_main:
        group.barrier()
    yield
    if group is not None and group.is_main:
        group.barrier()


def check_method(method: str, group: Distributed | None) -> None:
    """A method that cannot train under DDP is refused, before anything is trained."""
    if group is not None and method not in DDP_METHODS:
        raise ValueError(f"method {method!r} cannot train on {group.world_size} processes: it calls the model's "
                         f"submodules directly or changes gradients between the backward pass and the step, which "
                         f"DistributedDataParallel does not see. Train it in one process; the methods that train "
                         f"under torchrun are {', '.join(DDP_METHODS)}")


def epoch_shard(clips: torch.Tensor, batch_size: int, generator: torch.Generator, group: Distributed) -> torch.Tensor:
    """This rank's clips for one shuffled epoch, in order: its part of every full global batch.

    The permutation is drawn from ``generator`` exactly as one process draws it (every rank holds the same state),
    so global batch ``k`` is the one a single process would train on, cut into ``world_size`` parts.
    """
    order = clips[torch.randperm(len(clips), generator=generator)]
    local = group.local_batch(batch_size)
    full = len(order) // batch_size
    parts = order[:full * batch_size].view(full, group.world_size, local)[:, group.rank]
    return parts.reshape(-1)

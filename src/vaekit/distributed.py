"""Several processes, one model: joining torchrun's process group, sharding a global batch, rank 0 as the writer.

``torchrun`` starts one process per device and tells each its RANK, WORLD_SIZE,
LOCAL_RANK and where to meet (MASTER_ADDR, MASTER_PORT). A ``vaekit train`` started
that way joins the group (gloo on CPU, nccl on CUDA) and trains the one model with
DistributedDataParallel. ``train.batch_size`` stays the global batch: every rank
draws the same order, takes its contiguous share of each global batch, and the
losses are weighted so the all-reduced gradient is the gradient of the global
batch's mean. A run therefore means the same thing at any number of processes and
resumes at another.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from .errors import VaekitError


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Whether this process writes files and prints: rank 0 only."""
        return self.rank == 0


def world_from_env() -> World:
    """The process's place as torchrun's environment variables give it; a lone process is World()."""
    values = {}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        raw = os.environ.get(key)
        if raw is None:
            continue
        try:
            values[key] = int(raw)
        except ValueError:
            raise VaekitError(f"environment variable {key}={raw!r}: expected an integer, as torchrun sets it") from None
    world = World(values.get("RANK", 0), values.get("WORLD_SIZE", 1), values.get("LOCAL_RANK", 0))
    if world.size < 1 or not 0 <= world.rank < world.size:
        raise VaekitError(f"RANK={world.rank}, WORLD_SIZE={world.size}: expected 0 <= RANK < WORLD_SIZE")
    return world


def join(world: World, device: torch.device) -> bool:
    """Join the process group when there is more than one process; True when this call created it."""
    if world.size == 1 or dist.is_initialized():
        return False
    for key in ("MASTER_ADDR", "MASTER_PORT"):
        if key not in os.environ:
            raise VaekitError(f"WORLD_SIZE={world.size} but {key} is not set; start several processes with torchrun")
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=world.rank, world_size=world.size)
    return True


def leave(created: bool) -> None:
    """Destroy the process group if ``join`` created it."""
    if created and dist.is_initialized():
        dist.destroy_process_group()


def shard(n: int, world: World) -> slice:
    """This rank's contiguous rows of a global batch of ``n``: sizes differ by at most one."""
    base, extra = divmod(n, world.size)
    lo = world.rank * base + min(world.rank, extra)
    return slice(lo, lo + base + (world.rank < extra))


def sum_over_ranks(t: torch.Tensor, world: World) -> torch.Tensor:
    """``t`` summed over the ranks, in place."""
    if world.size > 1:
        dist.all_reduce(t)
    return t


def min_over_ranks(t: torch.Tensor, world: World) -> torch.Tensor:
    """``t`` reduced to its minimum over the ranks, in place."""
    if world.size > 1:
        dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return t


def barrier(world: World) -> None:
    """Wait for every rank (a no-op for one process)."""
    if world.size > 1:
        dist.barrier()


class LossModule(nn.Module):
    """``model.loss`` as a module's forward, which is what DistributedDataParallel hooks into.

    ``weight`` = WORLD_SIZE · (this rank's rows) / (the global batch's rows): DDP averages
    the ranks' gradients, so the weighted per-rank means average to the global mean.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x, y, kl_weight: float, generator, weight: float):
        out = self.model.loss(x, kl_weight=kl_weight, generator=generator, y=y)
        return out.loss * weight, torch.stack([out.loss.detach(), out.recon.detach(), out.kl.detach()])


def wrap(model: nn.Module, world: World, device: torch.device) -> nn.Module:
    """The model's loss as a module: DistributedDataParallel around it with several processes."""
    step = LossModule(model)
    if world.size == 1:
        return step
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(step, device_ids=ids)

"""Data-parallel training through torchrun: DDP, or FSDP (fully sharded) as an option.

Launch any script that builds a `Trainer` with, e.g.,

    torchrun --standalone --nproc_per_node 8 train.py ...

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK (and the rendezvous address); `setup_distributed`
reads them and joins the process group (NCCL on CUDA, gloo on CPU). The batch iterator
gives each rank its slice of the global batch (`TokenWindows(rank=, world_size=)`), and:

- DDP (`DistributedDataParallel`) keeps a full replica per rank and all-reduces (averages)
  the gradients during backward, bucket by bucket, overlapping communication with compute;
- FSDP (`torch.distributed.fsdp.fully_shard`, FSDP2) shards parameters, gradients and
  optimizer state over the ranks, all-gathering each block's weights just in time for its
  forward/backward and reduce-scattering its gradients.

With equal local batches the average of the per-rank mean losses is the global mean loss,
so N ranks with batch b each take the same step as one process with batch N·b.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def dist_info() -> DistInfo:
    """The current process's place in the (possibly absent) process group."""
    if dist.is_available() and dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
        local = int(os.environ.get("LOCAL_RANK", rank))
        device = torch.device(f"cuda:{local}") if torch.cuda.is_available() else torch.device("cpu")
        return DistInfo(rank, world, local, device)
    device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    return DistInfo(device=device)


def setup_distributed(backend: str | None = None) -> DistInfo:
    """Join the process group torchrun describes (no-op for a single plain process)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        if backend is None:
            backend = "nccl" if torch.cuda.is_available() else "gloo"
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend)
    return dist_info()


def cleanup_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def shard_blocks(model: nn.Module) -> list[nn.Module]:
    """The units FSDP shards one by one: `model.blocks` (a ModuleList) when it exists."""
    blocks = getattr(model, "blocks", None)
    return list(blocks) if isinstance(blocks, nn.ModuleList) else []


def wrap_model(model: nn.Module, mode: str, info: DistInfo) -> nn.Module:
    """DDP or FSDP2 around `model` (already on `info.device`); unchanged when not distributed.

    FSDP shards each of `model.blocks` separately, then the rest (embeddings, head) at the
    root, so at most one block's full weights are gathered at a time.
    """
    if mode not in ("ddp", "fsdp"):
        raise ValueError(f"distributed mode must be 'ddp' or 'fsdp', got {mode!r}")
    if not info.enabled:
        return model
    if mode == "ddp":
        ids = [info.device.index] if info.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids)
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(info.device.type, (info.world_size,))
    for block in shard_blocks(model):
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model


def all_reduce_mean(t: torch.Tensor) -> torch.Tensor:
    """Mean of `t` over ranks (identity when not distributed)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        t = t.clone()
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        t /= dist.get_world_size()
    return t

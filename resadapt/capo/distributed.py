"""Data-parallel CAPO on torch.distributed: torchrun starts the ranks, DDP all-reduces the gradients.

Rank r of W takes prompts ``share(B)`` of every step's global batch (the same draw on every rank) and rolls them out
on its own device; every loss is a sum over the rank's entries divided by the *global* count of valid entries (see
``Ranks.all_sum``), scaled by W because DDP averages gradients over the ranks, so the averaged gradient is the
one-process gradient of the whole batch and every rank applies the same update. Rank 0 alone logs and writes.

``relaunch`` is how ``stages/train.py`` honours ``train.nproc`` from a plain ``python stages/train.py`` (the command
DVC and the Prefect flows run): it execs ``torchrun --standalone`` on the same command line. Started by a launcher
(torchrun sets ``WORLD_SIZE``), the launcher decides the world, on one machine or several (``--nnodes`` with a
rendezvous); then ``checkpoints/`` must be on a filesystem every node sees, since every rank resumes from it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import timedelta

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

LAUNCHER_ENV = "WORLD_SIZE"  # set by torchrun (and by any launcher that follows torch.distributed's env:// rules)


@dataclass(frozen=True)
class Ranks:
    """This process's place in the run; the default is one process (every collective is then the identity)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1
    device: str = "cpu"  # where collectives run: this rank's GPU under nccl

    @property
    def main(self) -> bool:
        return self.rank == 0

    def share(self, n: int, rank: int | None = None) -> range:
        """The contiguous slice of n entries that ``rank`` (default: this one) owns; shares differ by at most 1."""
        r = self.rank if rank is None else rank
        return range(r * n // self.world, (r + 1) * n // self.world)

    def all_sum(self, t: torch.Tensor) -> torch.Tensor:
        """The sum of ``t`` over the ranks (a new tensor; ``t`` itself is left alone)."""
        if self.world == 1:
            return t
        total = t.detach().to(self.device, copy=True)
        dist.all_reduce(total)
        return total.to(t.device)

    def all_max(self, n: int) -> int:
        if self.world == 1:
            return n
        t = torch.tensor([n], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return int(t.item())

    def gather(self, t: torch.Tensor, n: int) -> torch.Tensor:
        """Every rank's ``share(n)`` rows of ``t`` [len(share), ...] joined back in global order → [n, ...]."""
        if self.world == 1:
            return t
        width = len(self.share(n, self.world - 1))  # the last share is the largest
        padded = torch.zeros((width, *t.shape[1:]), dtype=t.dtype, device=self.device)
        padded[: len(t)] = t
        pieces = [torch.empty_like(padded) for _ in range(self.world)]
        dist.all_gather(pieces, padded)
        return torch.cat([p[: len(self.share(n, r))] for r, p in enumerate(pieces)]).to(t.device)


SINGLE = Ranks()


def launched() -> bool:
    return LAUNCHER_ENV in os.environ


def relaunch(nproc: int, script: str, argv: list[str]) -> None:
    """Replace this process by ``torchrun --standalone --nproc-per-node nproc script argv`` (never returns)."""
    sys.stdout.flush()
    sys.stderr.flush()
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", script,
               *argv]
    os.execv(sys.executable, command)


def rank_device(name: str, ranks: Ranks) -> str:
    """A params device (auto, cpu, cuda, cuda:K) for this rank: each rank of a machine takes its own GPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu" or ranks.local_world == 1:
        return name
    if name.startswith("cuda:"):
        raise ValueError(f"device {name!r} names one GPU, but {ranks.local_world} ranks share this machine: use "
                         "auto or cuda (rank r takes cuda:r)")
    return f"cuda:{ranks.local_rank}"


def start(device: str) -> Ranks:
    """Join the process group the launcher describes (nccl on CUDA, gloo on CPU); one process without a launcher."""
    if not launched():
        return SINGLE
    env = {k: int(os.environ[k]) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")}
    ranks = Ranks(env["RANK"], env["WORLD_SIZE"], env["LOCAL_RANK"], env["LOCAL_WORLD_SIZE"])
    device = rank_device(device, ranks)
    if ":" in device:  # "cuda" tensors go to this rank's GPU
        torch.cuda.set_device(torch.device(device))
    cuda = device.startswith("cuda")
    dist.init_process_group("nccl" if cuda else "gloo", timeout=timedelta(minutes=30))
    return replace(ranks, device=f"cuda:{torch.cuda.current_device()}" if cuda else "cpu")


def stop(ranks: Ranks) -> None:
    if ranks.world > 1 and dist.is_initialized():
        dist.destroy_process_group()


def replicate(module: torch.nn.Module, ranks: Ranks, find_unused: bool = False) -> torch.nn.Module:
    """The module under DDP (its trainable parameters' gradients all-reduced in backward); itself for one rank.
    ``find_unused``: some parameters may get no gradient in a step (a backbone's heads the answers don't use)."""
    if ranks.world == 1:
        return module
    device = next(module.parameters()).device
    return DistributedDataParallel(module, device_ids=[device] if device.type == "cuda" else None,
                                   find_unused_parameters=find_unused)


class _Through:
    """A backbone's ``model`` during its update: calls go through DDP, attribute look-ups to the model itself."""

    def __init__(self, ddp: DistributedDataParallel):
        self.ddp = ddp

    def __call__(self, *args, **kwargs):
        return self.ddp(*args, **kwargs)

    def __getattr__(self, name: str):
        return getattr(self.ddp.module, name)


@contextmanager
def through(backbone, ddp: torch.nn.Module | None) -> Iterator[None]:
    """Route the backbone's forward calls through its DDP wrapper for the duration (its generate and save paths
    keep the plain model)."""
    if not isinstance(ddp, DistributedDataParallel):
        yield
        return
    model = backbone.model
    backbone.model = _Through(ddp)
    try:
        yield
    finally:
        backbone.model = model

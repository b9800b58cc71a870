"""What the loop calls to train on several processes: nothing, for one (``Ranks``), the
collectives of ``torch.distributed`` for a rank of several (``ProcessRanks``).

The loop (``core.train``) imports this module alone; starting the processes and relaying
their events is ``core.distributed``'s.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel


class Ranks:
    """One process: every method is the identity (what ``core.train`` uses by default)."""

    distributed = False
    rank, world, local_world = 0, 1, 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def threads(self, total: int) -> int:
        """Torch threads of this rank: the process's ``total`` shared by the ranks of this machine."""
        return max(1, total // self.local_world)

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        return model

    def use_class_weight(self, weight: torch.Tensor | None) -> None:
        """The loss's class weights (None: none), which decide each rank's share of a batch."""

    def shard(self, idx: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, float]:
        """(this rank's part of global batch ``idx``, its share of the batch's loss weight)."""
        return idx, 1.0

    def backward(self, loss: torch.Tensor, share: float) -> None:
        loss.backward()

    def step_figures(self, loss: torch.Tensor, correct: torch.Tensor, count: int, share: float):
        """The global batch's (mean loss, correct count, size) from this rank's."""
        return loss, correct, count

    def agree(self, flag: bool) -> bool:
        """Rank 0's answer, on every rank (a stop, a spent time budget)."""
        return flag

    def eval_starts(self, n: int, size: int) -> range:
        """The first index of each evaluation batch this rank computes."""
        return range(0, n, size)

    def all_sum(self, *tensors: torch.Tensor) -> None:
        """Sum each tensor over the ranks, in place."""

    def environment(self) -> dict[str, str]:
        return {}


class ProcessRanks(Ranks):
    """This rank of an initialised default process group (``torch.distributed``)."""

    distributed = True

    def __init__(self, device: torch.device) -> None:
        self.dist = dist
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        self.local_rank = int(os.environ.get("LOCAL_RANK", 0))
        self.local_world = int(os.environ.get("LOCAL_WORLD_SIZE", self.world))
        self.device = device
        self.class_weight: torch.Tensor | None = None  # the loss's, when the run weighs its classes

    def use_class_weight(self, weight: torch.Tensor | None) -> None:
        self.class_weight = weight

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        ids = [self.device.index if self.device.index is not None else torch.cuda.current_device()] \
            if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)

    def shard(self, idx: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, float]:
        self.batch = len(idx)  # the global batch's size: every rank knows it, no collective needed
        part = torch.tensor_split(idx, self.world)[self.rank]
        if self.class_weight is None:
            return part, len(part) / max(1, len(idx))
        weight = self.class_weight.to(labels.device)
        return part, float(weight[labels[part]].sum() / weight[labels[idx]].sum())

    def backward(self, loss: torch.Tensor, share: float) -> None:
        # DDP averages the ranks' gradients: scaled so the average is the global batch's.
        (loss * (share * self.world)).backward()

    def step_figures(self, loss: torch.Tensor, correct: torch.Tensor, count: int, share: float):
        # One collective, and no read of its result here: on CUDA the step buffer reads
        # the figures in batches, as for one process.
        figures = torch.stack((loss.detach().float() * share, correct.float()))
        self.dist.all_reduce(figures)
        return figures[0], figures[1], self.batch

    def agree(self, flag: bool) -> bool:
        value = torch.tensor([1 if flag else 0], device=self.device)
        self.dist.broadcast(value, src=0)
        return bool(value.item())

    def eval_starts(self, n: int, size: int) -> range:
        return range(self.rank * size, n, size * self.world)

    def all_sum(self, *tensors: torch.Tensor) -> None:
        for t in tensors:
            self.dist.all_reduce(t)

    def environment(self) -> dict[str, str]:
        return {"processes": str(self.world), "machines": str(self.world // max(1, self.local_world))}

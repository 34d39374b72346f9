"""Data-parallel training across processes with ``torch.distributed``.

Inside a process group (``torchrun``, or ``torch.distributed.init_process_group`` called by the
user), :func:`pyro_vae.fit` trains one model on ``W`` processes:

* each rank takes its share of every epoch's points from a ``DistributedSampler`` (the epoch's
  seed, ``drop_last``), and its minibatches of ``B`` points keep the data plate's size at the
  *global* ``N``, so each rank's loss is an unbiased estimate of the full-data objective;
* ``DistributedDataParallel`` averages the gradients, so a step on ``W`` ranks with ``B`` points
  each is the single-process step on the union of ``W B`` points (scale ``N / (W B)``);
* each rank draws its latents from its own stream, seeded by ``(seed, epoch, rank)``;
* training loss and validation ELBO are summed across ranks, so every rank takes the same
  early-stopping decision; only rank 0 writes checkpoints, history and progress.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Distributed:
    """This process's place in the process group (``rank 0 of 1`` outside one)."""

    rank: int = 0
    world_size: int = 1

    @classmethod
    def current(cls) -> Distributed:
        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size())
        return cls()

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, seed: int, epoch: int, num_data: int) -> torch.Tensor:
        """This rank's points of ``epoch``, in order: a ``DistributedSampler`` with the epoch's seed."""
        from torch.utils.data import DistributedSampler

        sampler = DistributedSampler(
            range(num_data), num_replicas=self.world_size, rank=self.rank, shuffle=True, seed=seed, drop_last=True
        )
        sampler.set_epoch(epoch)
        return torch.as_tensor(list(iter(sampler)), dtype=torch.long)

    def sum(self, *values: float) -> list[float]:
        """``values`` summed over the ranks (unchanged outside a process group)."""
        if not self.active:
            return list(values)
        tensor = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor.tolist()

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def seed_for(self, seed: int, epoch: int) -> int:
        """The seed of this rank's latent draws in ``epoch``."""
        return (int(seed) * 7_919 + epoch * 104_729 + self.rank * 1_299_709 + 17) % (2**63)

    @torch.no_grad()
    def parameter_difference(self, parameters) -> float:
        """Largest absolute difference between any parameter here and on rank 0, over all ranks (0.0
        when every rank holds the same model, as data-parallel training must leave them)."""
        if not self.active:
            return 0.0
        largest = torch.zeros((), dtype=torch.float64)
        for param in parameters.parameters() if isinstance(parameters, torch.nn.Module) else parameters:
            reference = param.detach().clone()
            dist.broadcast(reference, src=0)
            largest = torch.maximum(largest, (param.detach() - reference).abs().max().double().cpu())
        dist.all_reduce(largest, op=dist.ReduceOp.MAX)
        return float(largest)


def init_from_environment(device: str = "cpu") -> bool:
    """Join the process group that ``torchrun`` describes in the environment (``WORLD_SIZE > 1``):
    gloo on CPU, NCCL on CUDA. Returns whether this process is one of several."""
    import os

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or (dist.is_available() and dist.is_initialized()):
        return dist.is_available() and dist.is_initialized()
    backend = "nccl" if str(device).startswith("cuda") else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend=backend)
    return True

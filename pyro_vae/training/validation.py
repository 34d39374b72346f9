"""The per-point validation ELBO, on a program prepared once and reused every epoch."""

from __future__ import annotations

import pyro
import torch

from .._isolation import isolated
from ..program import Data, Program
from ..sites import Sites


@torch.no_grad()
def mean_elbo_of(program: Program, data: Data, sites: Sites, *, seed: int, batch_size: int) -> float:
    """``(1/N) sum_i [log p(x_i, z_i) - log q(z_i|x_i)]``, one draw ``z_i ~ q(z|x_i)`` per point, in
    chunks of ``batch_size`` that pass their positions to the program; seeded, so repeatable."""
    from ..evaluate import _weights

    total = 0.0
    with isolated(seed), pyro.validation_enabled(False):
        for start in range(0, len(data), batch_size):
            rows = torch.arange(start, min(start + batch_size, len(data)))
            latent, observed = _weights(program, data.rows(rows), 1, sites, indices=rows, num_data=len(data))
            total += float((latent + sum(observed.values())).double().sum())
    return total / len(data)


class Validation:
    """Call to get the validation ELBO per point of ``data`` under ``program``'s current parameters.

    In a process group (``group``, a :class:`~pyro_vae.training.distributed.Distributed`) each rank
    scores every ``W``-th row, with its own seed, and the sums are added across ranks: every rank
    gets the same value.
    """

    def __init__(self, program: Program, data: Data, *, seed: int, batch_size: int, group=None):
        self.program, self.seed, self.batch_size, self.group = program, seed, batch_size, group
        self.sites = program.sites(data)
        self.total_points = len(data)
        if group is not None and group.active:
            data = data.subset(torch.arange(group.rank, len(data), group.world_size))
            self.seed = seed + group.rank
        self.data = data

    def __call__(self) -> float:
        if self.group is None or not self.group.active:
            return mean_elbo_of(self.program, self.data, self.sites, seed=self.seed, batch_size=self.batch_size)
        # A rank with no validation rows (fewer rows than ranks) still joins the sum.
        mean = (mean_elbo_of(self.program, self.data, self.sites, seed=self.seed, batch_size=self.batch_size)
                if len(self.data) else 0.0)  # fmt: skip
        total, count = self.group.sum(mean * len(self.data), float(len(self.data)))
        return total / count

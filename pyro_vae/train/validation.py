"""The per-point validation bound, on a program prepared once and reused every epoch: the ELBO, or
the importance-weighted ELBO when that is what training maximises (:mod:`pyro_vae.evaluate.elbo`)."""

from __future__ import annotations

import torch

from ..evaluate.elbo import mean_elbo_of
from ..program.protocol import Data, Program


class Validation:
    """Call to get the validation ELBO per point of ``data`` under ``program``'s current parameters.

    ``num_particles`` ``K > 1`` scores the K-sample importance-weighted ELBO instead, so that a
    model trained on that bound is validated (and stopped early) on the same bound.

    In a process group (``group``, a :class:`~pyro_vae.train.distributed.Distributed`) each rank
    scores every ``W``-th row, with its own seed, and the sums are added across ranks: every rank
    gets the same value.
    """

    def __init__(self, program: Program, data: Data, *, seed: int, batch_size: int, group=None, num_particles: int = 1):
        self.program, self.seed, self.batch_size, self.group = program, seed, batch_size, group
        self.num_particles = num_particles
        self.sites = program.sites(data)
        self.total_points = len(data)
        self.positions = None  # a rank's rows keep their positions in the whole validation set
        if group is not None and group.active:
            self.positions = torch.arange(group.rank, len(data), group.world_size)
            data = data.subset(self.positions)
            self.seed = seed + group.rank
        self.data = data

    def _mean(self) -> float:
        return mean_elbo_of(
            self.program,
            self.data,
            self.sites,
            seed=self.seed,
            batch_size=self.batch_size,
            num_particles=self.num_particles,
            positions=self.positions,
            num_data=self.total_points,
        )

    def __call__(self) -> float:
        if self.group is None or not self.group.active:
            return self._mean()
        # A rank with no validation rows (fewer rows than ranks) still joins the sum.
        mean = self._mean() if len(self.data) else 0.0
        total, count = self.group.sum(mean * len(self.data), float(len(self.data)))
        return total / count

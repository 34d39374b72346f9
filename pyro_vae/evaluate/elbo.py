"""The per-point ELBO of a data set: the one-draw estimate (with enumerated sites summed), or the
K-sample importance-weighted ELBO; what ``fit`` validates on each epoch and what
:func:`pyro_vae.mean_elbo` reports."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pyro
import torch

from .._util.isolation import isolated, leaves_pyro_state_alone
from .._util.maths import log_mean_exp
from ..program.binding import bind
from ..program.protocol import Data, Program
from ..program.sites import Sites
from ..program.weights import point_weights


@torch.no_grad()
def mean_elbo_of(
    program: Program,
    data: Data,
    sites: Sites,
    *,
    seed: int,
    batch_size: int,
    num_particles: int = 1,
    positions: torch.Tensor | None = None,
    num_data: int | None = None,
) -> float:
    """``(1/N) sum_i log (1/K) sum_k w_ik`` with ``w_ik = p(x_i, z_ik) / q(z_ik|x_i)``, ``z_ik ~ q(z|x_i)``.

    With ``num_particles`` ``K = 1`` this is a one-draw estimate of the ELBO (enumerated discrete
    sites summed exactly, :mod:`pyro_vae.program.weights`); with ``K > 1`` it is the K-sample
    importance-weighted ELBO (Burda et al. 2016) that ``fit(elbo="iwae")`` maximises.
    Points go in chunks of ``batch_size`` that pass their positions to the program (``positions``
    of the rows of ``data`` in a data set of ``num_data`` points, when ``data`` is part of one);
    seeded, so repeatable.
    """

    total = 0.0
    with isolated(seed), pyro.validation_enabled(False):
        for start in range(0, len(data), batch_size):
            rows = torch.arange(start, min(start + batch_size, len(data)))
            indices = rows if positions is None else positions[rows]
            weights = point_weights(
                program, data.rows(rows), num_particles, sites, indices=indices, num_data=num_data or len(data)
            )
            if num_particles == 1:  # the ELBO, with enumerated sites summed as TraceEnum_ELBO does
                total += float(weights.elbo.double().sum())
            else:
                total += float(log_mean_exp(weights.joint.double(), dim=0).sum())  # (K, points)
    return total / len(data)


@leaves_pyro_state_alone
@torch.no_grad()
def mean_elbo(
    model: Any,
    x: Any,
    *,
    guide: Any = None,
    covariates: Mapping[str, Any] | None = None,
    plate: str | None = None,
    global_values: Any = None,
    seed: int = 0,
    batch_size: int = 1024,
    mask: Any = None,
) -> float:
    """Average over points of a one-draw ELBO estimate, ``(1/N) sum_i [log p(x_i, z_i) - log q(z_i|x_i)]``.

    Works on any program (:mod:`pyro_vae.program`); every chunk passes its rows' positions to a
    model that declares ``indices``. Uses a private generator seeded by ``seed``, so repeated
    calls on the same model agree.
    """
    bound = bind(model, x, guide=guide, covariates=covariates, plate=plate, global_values=global_values, mask=mask)
    return mean_elbo_of(bound.program, bound.data, bound.sites, seed=seed, batch_size=batch_size)

"""Per-point log importance weights of a program: the one computation that importance sampling,
validation and the diagnostics share.

For ``S`` draws ``z_s ~ q(z|x_i)`` of each of ``B`` points,

.. math::

    \\log w_{s,i} = \\log p(z_s) - \\log q(z_s \\mid x_i) + \\sum_k \\log p(x_{k,i} \\mid z_s),

returned as the latent part and one observed part per site ``k``, each of shape ``(S, B)``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from .binding import bind
from .protocol import Data, Program
from .sites import Sites, per_point


def log_weights(
    model: Any,
    x: torch.Tensor,
    num_particles: int,
    *,
    guide: Callable | None = None,
    covariates: Mapping[str, Any] | None = None,
    indices: torch.Tensor | None = None,
    num_data: int | None = None,
    global_values: Any = None,
) -> torch.Tensor:
    """Log importance weights ``log p(x, z_s) - log q(z_s|x)`` of shape ``(num_particles, B)``.

    ``x`` is one batch of ``B`` points. Draws use torch's global generator, so call this inside a
    seeded block; reading the program's structure does not consume it. ``global_values`` as for
    :func:`pyro_vae.log_likelihood`.
    """
    bound = bind(model, x, guide=guide, covariates=covariates, global_values=global_values)
    program, data, sites = bound.program, bound.data, bound.sites
    latent, observed = point_weights(program, data, num_particles, sites, indices=indices, num_data=num_data)
    return latent + sum(observed.values())


def point_weights(
    program: Program,
    data: Data,
    num_particles: int,
    sites: Sites,
    *,
    indices=None,
    num_data=None,
    guide: Callable | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``(log p(z) - log q(z|x), {site: log p(x_k|z)})``, each of shape ``(S, B)``."""
    guide_trace, model_trace = program.traces(
        data, num_particles, indices=indices, num_data=num_data, guide=guide, sites=sites
    )
    batch = len(data)
    latent = torch.zeros(
        num_particles, batch, dtype=torch.float64 if data.x.dtype == torch.float64 else None, device=data.x.device
    )
    for name in sites.local:
        latent = latent + per_point(model_trace.nodes[name], sites, program.plate, num_particles, batch)
        latent = latent - per_point(guide_trace.nodes[name], sites, program.plate, num_particles, batch)
    observed = {
        name: per_point(model_trace.nodes[name], sites, program.plate, num_particles, batch) for name in sites.observed
    }
    return latent, observed

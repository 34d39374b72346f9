"""Missing entries filled in by the model: importance-weighted imputation (Mattei & Frellsen 2019).

For a point with observed entries ``x_o`` and missing ``x_m``, ``S`` draws ``z_s ~ q(z | x_o)`` and
their normalised weights ``w_s ∝ p(x_o, z_s) / q(z_s | x_o)`` give

.. math::

    \\mathbb{E}[x_m \\mid x_o] \\approx \\sum_s w_s\\, \\mathbb{E}[x_m \\mid z_s], \\qquad
    x_m^{(k)} \\sim p(x_m \\mid z_{s_k}),\\; s_k \\sim \\mathrm{Categorical}(w),

the self-normalised importance-sampling estimate of the conditional mean and draws from the
conditional by sampling importance resampling (MIWAE, Mattei & Frellsen 2019, section 4). Both
converge to the model's own ``p(x_m | x_o)`` as ``S`` grows, whatever the guide; unweighted
posterior-predictive draws (``w_s = 1/S``) converge only if ``q(z|x_o)`` is the posterior.
Observed entries are returned as they were.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pyro
import torch

from .._util.checks import positive_int
from .._util.isolation import isolated, leaves_pyro_state_alone
from ..program.binding import bind
from ..program.sites import site_values
from ..program.weights import point_weights
from .predictive import MAX_VALUES, check_output_size

#: Particles times rows of one chunk of imputation work.
_DRAWS_PER_CHUNK = 2**16


@dataclass(frozen=True)
class Imputation:
    """Imputed data.

    Attributes:
        mean: ``x`` with each missing entry replaced by ``E[x_m | x_o]``, shape ``(N, D)``.
        draws: ``num_draws`` completions from ``p(x_m | x_o)``, shape ``(num_draws, N, D)``;
            observed entries are those of ``x`` in every draw.
        mask: True where ``x`` was observed, shape ``(N, D)``.
        effective_sample_size: per point, ``1 / sum_s w_s^2`` of the normalised weights, ``(N,)``:
            near ``num_particles`` when the guide matches the posterior, near 1 when one draw dominates
            (then raise ``num_particles``).
        num_particles: ``S``.
    """

    mean: torch.Tensor
    draws: torch.Tensor
    mask: torch.Tensor
    effective_sample_size: torch.Tensor
    num_particles: int

    def __repr__(self) -> str:
        missing = int((~self.mask).sum())
        return (
            f"Imputation({self.mean.shape[0]} rows, {missing} missing entries, {self.draws.shape[0]} draws each, "
            f"{self.num_particles} particles; median effective sample size "
            f"{float(self.effective_sample_size.float().median()):.1f})"
        )


@leaves_pyro_state_alone
@torch.no_grad()
def impute(
    model: Any,
    x: Any,
    *,
    mask: Any,
    num_particles: int = 1000,
    num_draws: int = 10,
    guide: Callable | None = None,
    covariates: Mapping[str, Any] | None = None,
    plate: str | None = None,
    global_values: Any = None,
    seed: int = 0,
    max_values: int = MAX_VALUES,
) -> Imputation:
    """Importance-weighted imputation of the entries of ``x`` where ``mask`` is False.

    Args:
        model: a :class:`~pyro_vae.VAE` (best built with ``missing=True``) or a Pyro program with ``guide=``.
        x: data ``(N, D)``; entries where ``mask`` is False may be NaN.
        mask: boolean, ``x``'s shape, True where observed.
        num_particles: ``S`` draws of ``z`` per point.
        num_draws: completions drawn per point (0 for the mean alone).
        covariates, plate, global_values: as for :func:`pyro_vae.log_likelihood`.
        seed: seeds every draw.
        max_values: refuse, before any work, draws of more numbers than this in all, and particles
            of one point holding more.

    Returns: an :class:`Imputation`.

    Length: checks every argument before any draw, then one pass over chunks of rows.
    """
    positive_int(num_particles, "num_particles")
    if not isinstance(num_draws, int) or isinstance(num_draws, bool) or num_draws < 0:
        raise ValueError(f"num_draws must be an integer >= 0, got {num_draws!r}.")
    if mask is None:
        raise ValueError("impute needs mask=, True where x was observed.")
    bound = bind(model, x, guide=guide, covariates=covariates, plate=plate, global_values=global_values, mask=mask)
    program, data, sites = bound.program, bound.data, bound.sites
    if sites.enumerated:
        raise ValueError(
            f"impute does not sum out enumerated sites ({list(sites.enumerated)}); impute with a program that samples them."
        )
    if len(sites.generated) != 1:
        raise ValueError(f"impute fills the one observed site read from x; this program's are {list(sites.generated)}.")
    name = sites.x_site
    if sites.sources and "x" not in sites.sources.get(name, ()):
        raise ValueError(
            f"impute fills missing entries of x, but no observed site reads x (the model observes {name!r} given x): "
            "a conditional model's inputs are not imputed."
        )
    one_row = data.rows(slice(0, 1))
    check_output_size(program, one_row, num_particles, max_values)  # the particles of one point at once
    check_output_size(program, one_row, max(1, num_draws) * len(data), max_values)  # the draws returned
    step = max(1, _DRAWS_PER_CHUNK // num_particles)
    means, draws, sizes = [], [], []
    with isolated(seed), pyro.validation_enabled(False):
        for start in range(0, len(data), step):
            rows = torch.arange(start, min(start + step, len(data)))
            chunk = data.rows(rows)
            weights, model_trace = point_weights(
                program, chunk, num_particles, sites, indices=rows, num_data=len(data), with_trace=True
            )
            normalised = torch.softmax(weights.joint.double(), dim=0)  # (S, B)
            site = model_trace.nodes[name]
            completions = site_values({**site, "value": site["fn"].mean}, sites, program.plate)  # (S, B, D)
            mean = torch.einsum("sb,sb...->b...", normalised.to(completions.dtype), completions)
            means.append(torch.where(chunk.mask, chunk.x, mean.reshape(chunk.x.shape)))  # x's shape (obs=x.reshape)
            sizes.append(1.0 / normalised.pow(2).sum(0))
            chosen = [torch.multinomial(normalised.T.float(), 1).squeeze(-1) for _ in range(num_draws)]
            picked = []
            for particles in chosen:
                sample = site_values({**site, "value": site["fn"].sample()}, sites, program.plate)  # (S, B, D)
                one = sample[particles, torch.arange(len(rows))]
                picked.append(torch.where(chunk.mask, chunk.x, one.reshape(chunk.x.shape)))
            draws.append(torch.stack(picked) if picked else chunk.x.new_zeros(0, *chunk.x.shape))
    return Imputation(
        mean=torch.cat(means),
        draws=torch.cat(draws, dim=1),
        mask=data.mask,
        effective_sample_size=torch.cat(sizes),
        num_particles=num_particles,
    )

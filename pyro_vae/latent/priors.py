"""The model's own prior over the codes, as a distribution: ``p(z)``, or the marginal of a prior
that depends on the row.

* :func:`prior_of` -- ``p(z)`` read from a trace at one row (``p(z|y)`` at its covariates), the
  Monte Carlo marginal of a site with latent parents, or, for a prior that depends on the row
  itself (a CVAE's ``p(z|x)``), the exact marginal ``(1/N) sum_i p(z|x_i)``;
* :func:`conditional_prior` -- whether the prior depends on the row, and that marginal if so;
* :class:`RowDistribution` -- one row of a batched distribution.
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch

from .._util.checks import positive_int
from ..program.dependencies import ancestors
from ..program.protocol import Data, Program
from .aggregate import REBUILT, AggregatePosterior, gaussian_parts
from .marginals import AncestralPrior


class RowDistribution(dist.TorchDistribution):
    """The distribution of one row of a batched distribution ``fn`` (batch shape ``(..., B)``).

    A model's latent site inside the data plate has a batch dimension for the points; the prior
    of the code of one point is this distribution at ``row``.
    """

    arg_constraints: dict = {}
    has_rsample = False

    def __init__(self, fn: dist.TorchDistribution, row: int = 0):
        self.fn, self.row = fn, row
        super().__init__(batch_shape=torch.Size(), event_shape=fn.event_shape, validate_args=False)

    @property
    def support(self):
        return self.fn.support

    def _select(self, values: torch.Tensor, event_dims: int) -> torch.Tensor:
        # Flatten fn's batch dimensions (the data plate and size-1 plates) into one and pick the row.
        leading = values.ndim - event_dims - len(self.fn.batch_shape)
        flat = values.reshape(*values.shape[:leading], -1, *values.shape[values.ndim - event_dims :])
        return flat.select(leading, self.row)

    def sample(self, sample_shape=torch.Size()):
        return self._select(self.fn.sample(sample_shape), len(self.event_shape))

    def log_prob(self, value):
        expanded = value.reshape(
            *value.shape[: value.ndim - len(self.event_shape)], *([1] * len(self.fn.batch_shape)), *self.event_shape
        )
        return self._select(self.fn.log_prob(expanded), 0)

    @property
    def mean(self):
        return self._select(self.fn.mean, len(self.event_shape))

    def expand(self, batch_shape, _instance=None):
        if torch.Size(batch_shape) != torch.Size():
            raise NotImplementedError("A RowDistribution has no batch dimensions.")
        return self


@torch.no_grad()
def prior_of(
    program: Program, rows: Data, *, site: str | None = None, marginal_particles: int = 1000
) -> dist.TorchDistribution:
    """The model's marginal distribution of the latent ``site`` over ``rows``: ``p(z)``, ``p(z|y)``
    at the first row's covariates, or the marginal of a prior that depends on the row.

    A site whose prior depends on other latents (``p(z1 | z2)``) gets its marginal
    ``E_{p(z2)}[p(z1 | z2)]``: exact ancestral draws, and a ``marginal_particles``-draw Monte Carlo
    density (:class:`~pyro_vae.latent.marginals.AncestralPrior`). A prior that depends on the row
    itself (a CVAE's ``p(z|x)``) gets the marginal over the rows,
    ``p(z) = (1/N) sum_i p(z|x_i)``, exactly (:func:`conditional_prior`).
    """
    sites = program.sites(rows)
    name = sites.latent(site, tool="The prior of a site")
    marginal = conditional_prior(program, rows, name)
    if marginal is not None:
        return marginal
    first = rows.rows(slice(0, 1))
    with torch.random.fork_rng(devices=[]), pyro.validation_enabled(False):
        if not sites.prior_is_marginal(name):
            return AncestralPrior(
                program, first, name, num_draws=positive_int(marginal_particles, "marginal_particles")
            )
        trace = program.generate(first)
    return RowDistribution(trace.nodes[name]["fn"], 0)


#: Rows whose priors are compared to tell a conditional prior from one shared by every row.
_PROBE_ROWS = 256


@torch.no_grad()
def conditional_prior(program: Program, data: Data, site: str, *, batch_size: int = 4096) -> AggregatePosterior | None:
    """``None`` where the model's prior of ``site`` is the same for every row of ``data``; else the
    marginal prior over the rows, ``(1/N) sum_i p(z|x_i)``, as an exact ``N``-component mixture.

    A prior that depends on the row (a CVAE's ``p(z|x)``, a prior network reading covariates) is
    detected from its densities: draws from the first row's prior are scored under the priors of
    the first 256 rows, and any difference means the rows have priors of their own. Then one row's
    prior is not "the prior": the tools that compare codes with ``p(z)`` use the marginal, built
    like the aggregate posterior from every row's component. It must be a diagonal Gaussian
    (possibly through shared transforms); a site with latent parents and a row-dependent prior is
    refused by name.
    """
    sites = program.sites(data)
    with torch.random.fork_rng(devices=[]), pyro.validation_enabled(False):
        torch.manual_seed(0)
        probe = data.rows(slice(0, min(len(data), _PROBE_ROWS)))
        trace = program.generate(probe)
        above = ancestors(sites.model_parents, site)
        if above:  # every row gets the first row's parents, so that only the row itself can differ
            fixed = {name: _first_row(trace.nodes[name], sites) for name in above}
            trace = program.generate(probe, condition=fixed)
        if not _varies_by_row(trace.nodes[site]["fn"]):
            return None
        if above:
            raise ValueError(
                f"The model's prior of {site!r} depends both on other latent sites and on the row (its data or "
                "covariates); the marginal over rows and parents is not computed here. Use a site whose prior "
                "depends on one or the other."
            )
        locs, scales, transforms = [], [], None
        for start in range(0, len(data), batch_size):
            chunk = data.rows(slice(start, min(start + batch_size, len(data))))
            loc, scale, shared = gaussian_parts(
                program.generate(chunk).nodes[site]["fn"], site, len(chunk), what=f"The model's prior p({site}|x)"
            )
            if transforms is not None and any(a is not b for a, b in zip(transforms, shared)):
                raise ValueError(REBUILT.format(site=site))
            transforms = shared
            locs.append(loc)
            scales.append(scale)
    return AggregatePosterior(torch.cat(locs), torch.cat(scales), transforms or ())


def _first_row(node: dict, sites) -> torch.Tensor:
    """A traced site's value with its first row (along the data plate) repeated for every row."""
    value = node["value"]
    axis = value.ndim - len(node["fn"].event_shape) + sites.data_dim
    if axis < 0 or value.shape[axis] == 1:
        return value
    return value.narrow(axis, 0, 1).expand_as(value)


def _varies_by_row(fn: dist.TorchDistribution) -> bool:
    """Whether a batched distribution (one row per point) gives different densities on different rows."""
    probes = RowDistribution(fn, 0).sample((8,))
    event = len(fn.event_shape)
    log_p = fn.log_prob(probes.reshape(8, *([1] * len(fn.batch_shape)), *probes.shape[probes.ndim - event :]))
    log_p = log_p.reshape(8, -1).double()
    spread = (log_p.max(dim=1).values - log_p.min(dim=1).values).max()
    return bool(spread > 1e-6 * (1.0 + log_p.abs().max()))

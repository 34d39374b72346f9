"""Marginal densities of one latent site of a hierarchical program, by Monte Carlo over its parents.

In ``z2 -> z1 -> x`` the model's ``fn`` at ``z1`` is ``p(z1 | z2)`` for one draw of ``z2``, not the
marginal ``p(z1) = E_{p(z2)}[p(z1 | z2)]``; with the guide ``x -> z1 -> z2``, the guide's ``fn`` at
``z2`` is ``q(z2 | z1, x)``, not ``q(z2 | x) = E_{q(z1|x)}[q(z2 | z1, x)]``. Where a site has latent
parents (:class:`~pyro_vae.program.sites.Sites`), these functions give the marginal as a mixture
over ``M`` draws of the parents,

.. math::

    \\hat p(z_k) = \\frac{1}{M} \\sum_{m=1}^M p(z_k \\mid \\mathrm{pa}_m), \\qquad
    \\mathrm{pa}_m \\sim p(\\mathrm{pa}(z_k)),

an unbiased estimate of the density whose log is biased low by about ``se^2 / 2``, where ``se``
(returned beside it) is the delta-method standard error of ``log p-hat``,
``sd_m(p(z_k | pa_m)) / (sqrt(M) mean_m(p(z_k | pa_m)))``. Where a site has no latent parents,
its ``fn`` is the marginal itself and the error is 0.

Only the program up to the site runs (:func:`site_distribution` stops it there), so the cost of
``M`` draws is that of the site's ancestors, not of the whole decoder.

Where each point's codes come with the point itself, the prior marginal is estimated better by
importance sampling the ancestors from the guide (:func:`prior_by_guide`); a mixture over prior
draws is what is left for codes without a point (:class:`AncestralPrior`).
"""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.poutine.runtime import NonlocalExit

from ..program.dependencies import ancestors
from ..program.protocol import Data, Program, with_particles
from ..program.sites import Sites, per_point, site_values

#: Elements of the ``(chunk, M, ...)`` log-density array one chunk may hold.
_CHUNK_ELEMENTS = 2**22


def site_distribution(
    program: Program,
    rows: Data,
    site: str,
    num_draws: int,
    *,
    in_guide: bool,
    indices: torch.Tensor | None = None,
    num_data: int | None = None,
) -> dist.TorchDistribution:
    """The ``fn`` at ``site`` under ``num_draws`` particles, running the program only up to it.

    The model runs with its observed sites unconditioned, so the parents are prior draws; the
    guide draws them from ``q``. The result has batch shape ``(num_draws, ..., B, ...)`` in the
    program's plate layout.
    """
    sites = program.sites(rows)
    fn = program.guide if in_guide else poutine.uncondition(program.model)
    stopped = poutine.escape(
        with_particles(fn, num_draws, sites.particle_dim), escape_fn=lambda msg: msg["name"] == site
    )
    indices = torch.arange(len(rows)) if indices is None else indices
    arguments = program.arguments(program.guide if in_guide else program.model, rows, indices, num_data or len(rows))
    try:
        stopped(rows.x, **arguments)
    except NonlocalExit as exit_:
        return exit_.site["fn"]
    raise ValueError(f"The {'guide' if in_guide else 'model'} never reached the site {site!r}.")


def mixture_log_prob(fn: dist.TorchDistribution, z: torch.Tensor, sites: Sites) -> tuple[torch.Tensor, torch.Tensor]:
    """``log (1/M) sum_m fn_m(z_i)`` and its delta-method standard error, each of shape ``(K, B)``.

    ``fn`` has ``M`` draws along the particle dimension and ``B`` points along the data dimension
    (batch shape ``(M, ..., B, ...)``); ``z`` has shape ``(K, B, *event)``: ``K`` codes per point.
    """
    rank = len(fn.batch_shape)
    num_draws = fn.batch_shape[0]
    per_code = int(math.prod(fn.batch_shape)) * max(1, int(math.prod(fn.event_shape)))
    step = max(1, _CHUNK_ELEMENTS // per_code)
    logs, errors = [], []
    for start in range(0, z.shape[0], step):
        codes = z[start : start + step]  # (k, B, *event)
        # To the layout (k, 1 for the draws, ..., B, ..., *event), B at the data dimension.
        shape = [1] * rank
        shape[rank + sites.data_dim] = codes.shape[1]
        value = codes.reshape(codes.shape[0], *shape, *codes.shape[2:])
        log_p = fn.log_prob(value)  # (k, M, ..., B, ...)
        log_p = log_p.reshape(codes.shape[0], num_draws, -1).double()  # (k, M, B)
        logs.append(torch.logsumexp(log_p, dim=1) - math.log(num_draws))
        errors.append(_log_mean_se(log_p, dim=1))
    return torch.cat(logs), torch.cat(errors)


def _log_mean_se(log_values: torch.Tensor, dim: int) -> torch.Tensor:
    """Delta-method standard error of ``log mean(exp(values))`` along ``dim``."""
    count = log_values.shape[dim]
    if count < 2:
        return torch.full_like(log_values.select(dim, 0), math.inf)
    ratios = torch.exp(log_values - log_values.max(dim=dim, keepdim=True).values)
    mean = ratios.mean(dim)
    return ratios.std(dim, correction=1) / (math.sqrt(count) * mean)


def prior_by_guide(
    program: Program,
    rows: Data,
    site: str,
    z: torch.Tensor,
    num_draws: int,
    *,
    indices: torch.Tensor | None = None,
    num_data: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""``log p(z_k)`` at codes ``z`` ``(K, B, *event)`` by importance sampling the site's ancestors.

    The guide, run with ``z_k`` fixed at each code, proposes the model's ancestors ``A`` of the
    site (in a guide ``x -> z1 -> z2`` that is ``q(z2 | z1, x)``, the natural proposal for
    ``p(z2 | z1)``):

    .. math::

        \hat p(z_k) = \frac{1}{M} \sum_m \frac{p(z_k \mid \mathrm{pa}_m)\, p(A_m)}{q(A_m \mid z_k, \dots)},
        \qquad A_m \sim q(A \mid z_k, \dots).

    Any proposal that covers ``p(A | z_k)`` makes this unbiased; the guide's is exact where the
    guide is the model's posterior, and the error (returned, shape ``(K, B)`` like the estimate)
    says how close it comes.
    """
    sites = program.sites(rows)
    above = sorted(ancestors(sites.model_parents, site))
    codes, batch = z.shape[0], z.shape[1]
    particles = num_draws * codes  # particle m * K + k holds code k
    shape = [1] * sites.nesting
    shape[sites.nesting + sites.data_dim] = batch
    value = z.repeat(num_draws, *([1] * (z.ndim - 1))).reshape(particles, *shape, *z.shape[2:])
    fixed = {site: value}
    guide = with_particles(poutine.condition(program.guide, data=fixed), particles, sites.particle_dim)
    model = with_particles(poutine.condition(program.model, data=fixed), particles, sites.particle_dim)
    indices = torch.arange(batch) if indices is None else indices
    num_data = num_data or batch
    guide_trace = poutine.trace(guide).get_trace(rows.x, **program.arguments(program.guide, rows, indices, num_data))
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(
        rows.x, **program.arguments(program.model, rows, indices, num_data)
    )
    log_w = per_point(model_trace.nodes[site], sites, program.plate, particles, batch).double()
    for name in above:
        log_w = log_w + per_point(model_trace.nodes[name], sites, program.plate, particles, batch).double()
        log_w = log_w - per_point(guide_trace.nodes[name], sites, program.plate, particles, batch).double()
    log_w = log_w.reshape(num_draws, codes, batch)
    return torch.logsumexp(log_w, dim=0) - math.log(num_draws), _log_mean_se(log_w, dim=0)


@torch.no_grad()
def marginal_log_density(
    program: Program,
    data: Data,
    site: str,
    z: torch.Tensor,
    *,
    in_guide: bool,
    num_draws: int,
    batch_size: int = 1024,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``log q(z_k | x_i)`` (``in_guide``) or ``log p(z_k)`` at each point's own codes, with errors.

    ``z`` has shape ``(K, N, *event)``: ``K`` codes of each of the ``N`` rows of ``data``. The prior
    is taken at each row's covariates. Returns two tensors of shape ``(K, N)``: the estimates and
    their Monte Carlo standard errors (0 where the site has no latent parents and ``fn`` is used).
    """
    sites = program.sites(data)
    logs, errors = [], []
    with pyro.validation_enabled(False):
        for start in range(0, len(data), batch_size):
            rows = torch.arange(start, min(start + batch_size, len(data)))
            if not in_guide and program.optional_guide is not None and _guide_samples_ancestors(sites, site):
                log_q, se = prior_by_guide(
                    program, data.rows(rows), site, z[:, rows], num_draws, indices=rows, num_data=len(data)
                )
            else:
                fn = site_distribution(
                    program, data.rows(rows), site, num_draws, in_guide=in_guide, indices=rows, num_data=len(data)
                )
                log_q, se = mixture_log_prob(fn, z[:, rows], sites)
            logs.append(log_q)
            errors.append(se)
    return torch.cat(logs, dim=1), torch.cat(errors, dim=1)


def _guide_samples_ancestors(sites: Sites, site: str) -> bool:
    """Whether the guide samples every model ancestor of ``site`` inside the data plate, so that it
    can propose them for :func:`prior_by_guide` (any guide that does is a valid proposal)."""
    return set(ancestors(sites.model_parents, site)) <= set(sites.local)


class AncestralPrior(dist.TorchDistribution):
    """The model's marginal ``p(z_k)`` of a site with latent parents, at one row's covariates.

    ``sample`` runs the model ancestrally (exact draws of the marginal); ``log_prob`` is the
    ``M``-draw mixture of the module docstring, and :meth:`log_prob_and_se` gives its error too.
    """

    arg_constraints: dict = {}
    has_rsample = False

    def __init__(self, program: Program, row: Data, site: str, *, num_draws: int = 1000):
        self.program, self.row, self.site = program, row.rows(slice(0, 1)), site
        self.sites = program.sites(self.row)
        with pyro.validation_enabled(False):
            self.components = site_distribution(program, self.row, site, num_draws, in_guide=False)
        self.num_draws = num_draws
        super().__init__(batch_shape=torch.Size(), event_shape=self.sites.event_shapes[site], validate_args=False)

    @property
    def support(self):
        return self.components.support

    @torch.no_grad()
    def sample(self, sample_shape=torch.Size()):
        shape = torch.Size(sample_shape)
        count = max(1, int(math.prod(shape)))
        with pyro.validation_enabled(False):
            fn = site_distribution(self.program, self.row, self.site, count, in_guide=False)
            value = fn.sample()
        draws = site_values({"value": value, "fn": fn, "cond_indep_stack": ()}, self.sites, self.program.plate)
        return draws.reshape(*shape, *self.event_shape)

    def log_prob_and_se(self, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        event = len(self.event_shape)
        batch = value.shape[: value.ndim - event]
        flat = value.reshape(-1, 1, *self.event_shape)  # (n, B=1, *event)
        log_p, se = mixture_log_prob(self.components, flat, self.sites)
        return log_p.reshape(batch).to(value.dtype), se.reshape(batch)

    def log_prob(self, value):
        return self.log_prob_and_se(value)[0]

    def expand(self, batch_shape, _instance=None):
        if torch.Size(batch_shape) != torch.Size():
            raise NotImplementedError("An AncestralPrior has no batch dimensions; sample it with a sample shape.")
        return self

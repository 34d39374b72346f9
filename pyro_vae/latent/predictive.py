"""Predictive draws from any Pyro program following :mod:`pyro_vae.program`, vectorised over samples.

* :func:`prior_predictive` -- latents from the model itself, observed sites sampled;
* :func:`posterior_predictive` -- latents from the guide ``q(z|x)``, observed sites sampled;
* :func:`reconstruct` -- ``E[x | z = E_q[z|x]]``.

Each returns likelihood samples *and* likelihood means (``site["fn"].mean``): a Bernoulli sample
is pixel noise, its mean is the picture.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pyro
import torch
from pyro import poutine

from .._util.checks import positive_int
from .._util.isolation import isolated, leaves_pyro_state_alone
from ..program.binding import Bound, bind
from ..program.protocol import Data, Program, as_program
from ..program.sites import Sites, site_values

#: Draws times rows per chunk of posterior predictive work.
_DRAWS_PER_CHUNK = 2**16
#: Most numbers a predictive result may hold unless the caller raises ``max_values``.
MAX_VALUES = 100_000_000


@dataclass(frozen=True)
class PredictiveSamples:
    """Draws from a predictive distribution.

    Attributes:
        x: draws of the site the tools call ``x`` (:attr:`~pyro_vae.program.sites.Sites.x_site`: the
            observed site read from the data ``x``), shape ``(*sample_shape, D)``.
        mean: its likelihood means ``E[x|z]``, same shape as ``x`` (``None`` where the
            distribution has no mean).
        sites: every latent and observed site's draws, by name: ``result.sites["z1"]``.
        means: every observed site's means, by name.
        latent: the latent site :attr:`z` stands for: the site a tool was asked about, or the
            program's only local latent; ``None`` when the program has several and none was named.
    """

    x: torch.Tensor
    mean: torch.Tensor | None
    sites: dict[str, torch.Tensor] = field(default_factory=dict)
    means: dict[str, torch.Tensor | None] = field(default_factory=dict)
    latent: str | None = None

    def __repr__(self) -> str:
        shapes = ", ".join(f"{name} {tuple(value.shape)}" for name, value in self.sites.items())
        return f"PredictiveSamples(x {tuple(self.x.shape)}; sites: {shapes})"

    @property
    def z(self) -> torch.Tensor | None:
        """Draws of :attr:`latent`, shape ``(*sample_shape, L)``; with several latent sites and none
        named, refused (read ``sites[name]``): ``z`` never means different sites in different tools."""
        if self.latent is None:
            latents = [name for name in self.sites if name not in self.means]
            if not latents:
                return None
            raise AttributeError(
                f"This program has several latent sites {latents}; read result.sites[name] for the one you want."
            )
        return self.sites[self.latent]


@leaves_pyro_state_alone
@torch.no_grad()
def prior_predictive(
    model: Any,
    num_samples: int,
    *,
    x: Any = None,
    covariates: Mapping[str, Any] | None = None,
    guide: Callable | None = None,
    plate: str | None = None,
    seed: int = 0,
    max_values: int = MAX_VALUES,
) -> PredictiveSamples:
    """Draw latents from the model's prior and observed sites from ``p(x|z)``.

    ``guide`` is accepted for a uniform call form and not used: prior draws need no posterior.

    The model runs on ``num_samples`` rows: the VAE's template batch, or the rows of ``x`` (and
    ``covariates``) repeated in order; a covariate of one row (``{"y": label_one_hot}``) is used
    for every draw. The values of ``x`` are never scored.

    Returns: :class:`PredictiveSamples` with ``z`` of shape ``(num_samples, L)`` and ``x``,
    ``mean`` of shape ``(num_samples, D)``. More than ``max_values`` numbers in all are refused
    before any work.
    """
    positive_int(num_samples, "num_samples")
    program = as_program(model, guide, plate=plate)
    check_output_size(program, generation_rows(program, 1, x, covariates), num_samples, max_values)
    rows = generation_rows(program, num_samples, x, covariates)
    with isolated(seed), pyro.validation_enabled(False):
        sites = program.sites(rows)
        draws = [
            program.generate(rows.rows(slice(s, s + _DRAWS_PER_CHUNK))) for s in range(0, len(rows), _DRAWS_PER_CHUNK)
        ]
    return collect_sites(program, sites, draws, particles=False, data_axis=0)


@leaves_pyro_state_alone
@torch.no_grad()
def posterior_predictive(
    model: Any,
    x: Any,
    num_samples: int,
    *,
    guide: Callable | None = None,
    covariates: Mapping[str, Any] | None = None,
    plate: str | None = None,
    seed: int = 0,
    max_values: int = MAX_VALUES,
    mask: Any = None,
) -> PredictiveSamples:
    """Draw latents from the guide ``q(z|x_i)`` and new observations ``x' ~ p(x|z)`` for every point.

    With ``mask`` (True where ``x`` was observed; NaN allowed elsewhere) the guide sees only the
    observed entries, and ``x'`` is drawn for every entry: :func:`pyro_vae.impute` weighs the
    draws by how well they explain the observed entries.

    Returns: :class:`PredictiveSamples` with ``z`` of shape ``(num_samples, N, L)`` and ``x``,
    ``mean`` of shape ``(num_samples, N, D)``; global latents have shape ``(num_samples, ...)``.
    """
    positive_int(num_samples, "num_samples")
    bound = bind(model, x, guide=guide, covariates=covariates, plate=plate, draw_globals=True, mask=mask)
    return posterior_predictive_of(bound, num_samples, seed=seed, max_values=max_values)


def posterior_predictive_of(bound: Bound, num_samples: int, *, seed: int, max_values: int = MAX_VALUES):
    """:func:`posterior_predictive` of a program and data bound already (:func:`~pyro_vae.program.bind`
    with ``draw_globals=True``): tools that draw replicates in parts bind once."""
    program, data, sites = bound.program, bound.data, bound.sites
    sites.refuse_model_enumeration("posterior_predictive")
    check_output_size(program, data, num_samples * len(data), max_values)
    step = max(1, _DRAWS_PER_CHUNK // num_samples)
    with isolated(seed), pyro.validation_enabled(False):
        traces = []
        for start in range(0, len(data), step):
            rows = torch.arange(start, min(start + step, len(data)))
            guide_trace, model_trace = program.traces(
                data.rows(rows), num_samples, indices=rows, num_data=len(data), uncondition=True, sites=sites
            )
            traces.append((guide_trace, model_trace))
    return collect_sites(program, sites, traces, particles=True, data_axis=1)


@leaves_pyro_state_alone
@torch.no_grad()
def reconstruct(
    model: Any,
    x: Any,
    *,
    guide: Callable | None = None,
    covariates: Mapping[str, Any] | None = None,
    site: str | None = None,
    plate: str | None = None,
    global_values: Any = None,
    mask: Any = None,
) -> torch.Tensor:
    """Deterministic reconstruction ``E[x | z = E_q[z|x]]`` of the first observed site, shape ``(N, D)``
    (``global_values`` and ``mask`` as for :func:`pyro_vae.log_likelihood`: with a mask the codes
    come from the observed entries, and every entry is reconstructed)."""
    bound = bind(model, x, guide=guide, covariates=covariates, plate=plate, global_values=global_values, mask=mask)
    program, data, sites = bound.program, bound.data, bound.sites
    name = sites.latent(site, tool="reconstruct")
    sites.refuse_shared_ancestors(name, "Reconstructing from the codes of one site")
    loc, _ = latent_means(program, data, name)
    with pyro.validation_enabled(False):
        trace = program.generate(data, condition={name: shaped_like_site(loc, sites, len(data))})
    return _mean(trace.nodes[sites.x_site], sites, program.plate)


@leaves_pyro_state_alone
@torch.no_grad()
def get_latent(
    model: Any,
    x: Any,
    *,
    guide: Callable | None = None,
    covariates: Mapping[str, Any] | None = None,
    site: str | None = None,
    plate: str | None = None,
    global_values: Any = None,
    mask: Any = None,
) -> torch.Tensor:
    """The latent representation of every row: the posterior means ``E_q[z | x_i]``, shape ``(N, L)``
    (``(N, *event)`` for a site with another event shape), what scvi-tools'
    ``get_latent_representation`` returns, for plots, clustering or ``obsm`` of an AnnData.

    ``site`` names the latent site of a program with several (a hierarchy); the mean is the guide's
    own where it has one in closed form, else a 256-draw average (flows, a site with parents in the
    guide). ``mask`` as for :func:`pyro_vae.log_likelihood`: the encoder sees the observed entries.
    """
    bound = bind(model, x, guide=guide, covariates=covariates, plate=plate, global_values=global_values, mask=mask)
    program, data, sites = bound.program, bound.data, bound.sites
    name = sites.latent(site, tool="get_latent")
    means, _ = latent_means(program, data, name)
    return means


@torch.no_grad()
def observed_data(program: Program, data: Data, site: str) -> torch.Tensor:
    """The data of the observed ``site`` for every row, ``(N, *event)``, as the model itself reads them
    (from ``x`` or from a covariate, reshaped or not): the value of the site in the model's trace."""
    sites = program.sites(data)
    out = []
    with torch.random.fork_rng(devices=[]), pyro.validation_enabled(False):
        for start in range(0, len(data), _DRAWS_PER_CHUNK):
            rows = torch.arange(start, min(start + _DRAWS_PER_CHUNK, len(data)))
            chunk = data.rows(rows)
            trace = poutine.trace(program.model).get_trace(
                chunk.x, **program.arguments(program.model, chunk, rows, len(data))
            )
            out.append(site_values(trace.nodes[site], sites, program.plate, particles=False))
    return torch.cat(out)


# ---------------------------------------------------------------------- shared with sampling
def generation_rows(program: Program, n: int, x: Any, covariates: Mapping[str, Any] | None) -> Data:
    """``n`` rows to generate on: from ``x`` and its covariates, or the template with given covariates."""
    covariates = {k: _rows_of(v) for k, v in (covariates or {}).items()}
    if x is not None:
        count = x.shape[0] if hasattr(x, "shape") else torch.as_tensor(x).shape[0]
        return program.data(x, _broadcast_rows(covariates, count)).cycled(n)
    if covariates:
        count = max(v.shape[0] for v in covariates.values())
        template = program.template(count)
        return program.data(
            template.x, {**template.covariates, **_broadcast_rows(covariates, count)}, what="template"
        ).cycled(n)
    return program.template(n)


def _broadcast_rows(covariates: dict[str, torch.Tensor], count: int) -> dict[str, torch.Tensor]:
    """Covariates of one row repeated to ``count`` rows (one label for every draw)."""
    return {k: v.expand(count, *v.shape[1:]) if v.shape[0] == 1 and count > 1 else v for k, v in covariates.items()}


def check_output_size(program: Program, rows: Data, draws: int, max_values: int) -> None:
    """Refuse, before any work, a result of more than ``max_values`` numbers (latent draws, observed
    draws and their means, ``draws`` of each)."""
    positive_int(max_values, "max_values")
    sites = program.sites(rows)
    per_draw = sum(int(torch.Size(sites.event_shapes[k]).numel()) for k in sites.local)
    per_draw += 2 * sum(int(torch.Size(sites.event_shapes[k]).numel()) for k in sites.observed)
    if draws * per_draw > max_values:
        raise ValueError(
            f"The draws would hold {draws * per_draw:,} numbers ({draws:,} draws of {per_draw:,}), more than "
            f"max_values={max_values:,} (about {4 * draws * per_draw / 2**30:.1f} GiB as float32); draw fewer, "
            "in batches, or raise max_values deliberately."
        )


def shaped_like_site(z: torch.Tensor, sites: Sites, rows: int) -> torch.Tensor:
    """Codes ``(n, *event)`` reshaped to a latent site's value shape for a batch of ``n`` rows."""
    shape = [1] * sites.nesting
    shape[sites.nesting + sites.data_dim] = rows
    return z.reshape(*shape, *z.shape[1:])


@torch.no_grad()
def latent_means(
    program: Program, data: Data, site: str, *, num_draws: int = 256, batch_size: int = 4096
) -> tuple[torch.Tensor, torch.Tensor]:
    """``E_q[z|x_i]`` for every row, shape ``(N, *event)``, and the Monte Carlo variance of each.

    The mean is the guide's closed-form ``fn.mean`` (variance 0), or a ``num_draws``-draw average
    where the distribution has none (flows) or depends on other latents (a hierarchy, where
    ``fn.mean`` is the mean given one draw of them), whose variance is ``Var_q[z|x_i] / num_draws``.
    """
    sites = program.sites(data)
    out, noise = [], []
    with torch.random.fork_rng(devices=[]), pyro.validation_enabled(False):
        torch.manual_seed(0)
        for start in range(0, len(data), batch_size):
            rows = torch.arange(start, min(start + batch_size, len(data)))
            chunk = data.rows(rows)
            trace = poutine.trace(program.guide).get_trace(
                chunk.x, **program.arguments(program.guide, chunk, rows, len(data))
            )
            node = trace.nodes[site]
            try:
                if not sites.guide_is_marginal(site):  # fn is q(z_k | parents, x): average over the parents
                    raise NotImplementedError
                mean = node["fn"].mean
                if mean is None or not bool(torch.isfinite(mean).all()):
                    raise NotImplementedError
                node = {**node, "value": mean.expand_as(node["value"])}
                out.append(site_values(node, sites, program.plate, particles=False))
                noise.append(torch.zeros_like(out[-1]))
            except NotImplementedError:
                guide_trace, _ = program.traces(chunk, num_draws, indices=rows, num_data=len(data), sites=sites)
                draws = site_values(guide_trace.nodes[site], sites, program.plate)
                out.append(draws.mean(0))
                noise.append(draws.var(0, correction=1) / num_draws)
    return torch.cat(out), torch.cat(noise)


def _rows_of(value: Any) -> torch.Tensor:
    value = torch.as_tensor(value)
    return value.unsqueeze(0) if value.ndim <= 1 else value


def _mean(site: dict, sites: Sites, plate: str, particles: bool = False) -> torch.Tensor | None:
    try:
        mean = site["fn"].mean
    except NotImplementedError:
        return None
    shape = torch.broadcast_shapes(mean.shape, site["value"].shape)
    return site_values({**site, "value": mean.expand(shape)}, sites, plate, particles=particles)


def collect_sites(
    program: Program, sites: Sites, runs: list, *, particles: bool, data_axis: int, latent: str | None = None
) -> PredictiveSamples:
    """Concatenate site values of several runs along the data axis (global latents from the first run)."""
    values: dict[str, list] = {}
    means: dict[str, list] = {}
    for run in runs:
        trace = run[-1] if isinstance(run, tuple) else run  # the model's trace holds the replayed latents too
        for name, site in trace.nodes.items():
            if site["type"] != "sample" or name not in sites.event_shapes:
                continue
            values.setdefault(name, []).append(site_values(site, sites, program.plate, particles=particles))
            if name in sites.observed:
                means.setdefault(name, []).append(_mean(site, sites, program.plate, particles=particles))
    local = set(sites.local) | set(sites.observed) | set(sites.enumerated)
    joined = {k: torch.cat(v, dim=data_axis) if k in local else v[0] for k, v in values.items()}
    joined_means = {k: None if any(m is None for m in v) else torch.cat(v, dim=data_axis) for k, v in means.items()}
    if latent is None:
        latents = sites.local + tuple(n for n in sites.enumerated if n not in sites.local)
        latent = latents[0] if len(latents) == 1 else None
    first_observed = sites.x_site
    return PredictiveSamples(
        latent=latent,
        x=joined[first_observed],
        mean=joined_means[first_observed],
        sites=joined,
        means=joined_means,
    )

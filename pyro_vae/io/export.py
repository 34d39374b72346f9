"""Export a trained program and data to ArviZ's :class:`arviz.InferenceData`, from traces.

Groups and their variables (``S`` draws, ``N`` points); one variable per site of the program::

    posterior              every latent site of the guide    local: (chain, draw, obs, ...)
                                                              global: (chain, draw, ...)
    posterior_predictive   every observed site, x' ~ p(x|z) with z from the posterior
    log_likelihood         every observed site, log p(x_i | z) per draw: (chain, draw, obs)
    prior                  every latent site of the model, drawn from the model itself
    prior_predictive       every observed site, with latents from the prior
    observed_data          every observed site: (obs, ...)

The ``log_likelihood`` group holds ``log p(x_i | z_s)`` for posterior draws, the quantity ArviZ
expects there, read from each observed site's ``fn`` -- the model's own value, whatever its
latents. It is *not* ``log p(x_i)``: each ``z`` is a local latent of its own point, so for
held-out ``log p(x)`` use :func:`pyro_vae.log_likelihood` and :func:`pyro_vae.compare`.

Dimension names: the data points are ``obs`` (``obs_index`` when a site is itself named ``obs``);
a site's event dimensions are ``latent`` (``feature``) when the program has one latent (observed)
site with a one-dimensional event, else ``<site>_dim_<i>``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pyro
import torch

from .._util.checks import positive_int, positive_number
from .._util.compat import arviz
from .._util.isolation import isolated
from .._util.memory import HeapGuard
from .._version import __version__
from ..program.binding import bind
from ..program.protocol import Data
from ..program.sites import Sites, per_point, site_values


def to_inference_data(
    model: Any,
    x: Any,
    *,
    guide: Callable | None = None,
    covariates: Mapping[str, Any] | None = None,
    plate: str | None = None,
    num_samples: int = 100,
    num_chains: int = 1,
    seed: int = 0,
    obs_coords: np.ndarray | list | None = None,
    max_values: int = 50_000_000,
    max_memory_mb: float = 512.0,
):
    """Draws from the amortized posterior and the prior, with their predictive distributions.

    Args:
        model: a :class:`~pyro_vae.VAE` or a Pyro program (see :mod:`pyro_vae.program`).
        x: observed data with the points along the first dimension.
        guide, covariates, plate: as for :func:`pyro_vae.log_likelihood`.
        num_samples: draws per chain.
        num_chains: independent chains; the draws are independent anyway, chains only shape them.
        seed: seeds all draws.
        obs_coords: labels for the ``obs`` dimension (default ``0..N-1``).
        max_values: refuse to build groups with more numbers than this (each predictive group holds
            ``chains * draws * N * D`` of them); raise it deliberately for large exports.
        max_memory_mb: rough bound on the memory of the traces behind one chunk of points (their
            decoder outputs included), measured on the program; the points are exported in chunks.

    Returns: an :class:`arviz.InferenceData` with the groups listed in the module docstring; its
    attrs record the inference library (Pyro), pyro_vae's version, the observed sites'
    distributions and, for a VAE, its configuration as JSON.
    """
    az = arviz()
    bound = bind(model, x, guide=guide, covariates=covariates, plate=plate, draw_globals=True)
    program, data = bound.program, bound.data
    for value, name in ((num_samples, "num_samples"), (num_chains, "num_chains")):
        positive_int(value, name)
    sites = program.sites(data)
    program.check_vectorised(data, sites)
    n = len(data)
    draws = num_samples * num_chains
    per_point_values = sum(int(math.prod(sites.event_shapes[k])) for k in sites.observed)
    if draws * n * per_point_values > max_values:
        raise ValueError(
            f"The predictive groups would hold {draws * n * per_point_values:,} numbers (draws x points x "
            f"features), more than max_values={max_values:,}; pass fewer points or draws, or raise max_values."
        )
    if obs_coords is None:
        obs_coords = np.arange(n)
    elif len(obs_coords) != n:
        raise ValueError(f"obs_coords has {len(obs_coords)} labels for {n} observations.")

    rows_per_chunk = _rows_per_chunk(program, data, sites, draws, max_memory_mb)
    local = set(sites.local) | set(sites.observed)
    groups = ("posterior", "predictive", "log_lik", "prior", "prior_pred", "observed")
    parts: dict[str, dict[str, list]] = {g: {} for g in groups}

    def keep(group: str, name: str, value: torch.Tensor, first: bool) -> None:
        # Global latents come from the one chunk there is (see _rows_per_chunk); local ones are joined.
        if name in local or first:
            parts[group].setdefault(name, []).append(value)

    # Freed chunks can stay in glibc's per-thread arenas; the guard hands them back past an allowance.
    guard = HeapGuard(allowance_mb=2 * max_memory_mb + 64)
    with torch.no_grad(), pyro.validation_enabled(False):
        with isolated(seed):
            for start in range(0, n, rows_per_chunk):
                guard.check()
                rows = torch.arange(start, min(start + rows_per_chunk, n))
                chunk = data.rows(rows)
                guide_trace, model_trace = program.traces(
                    chunk, draws, indices=rows, num_data=n, uncondition=True, sites=sites
                )
                for name in sites.local + sites.globals:
                    if name in guide_trace.nodes:
                        keep("posterior", name, site_values(guide_trace.nodes[name], sites, program.plate), start == 0)
                for name in sites.observed:
                    site = model_trace.nodes[name]
                    keep("predictive", name, site_values(site, sites, program.plate), True)
                    keep("observed", name, _observed_rows(site, sites, program.plate), True)
                    keep(
                        "log_lik",
                        name,
                        per_point({**site, "value": _observed_value(site)}, sites, program.plate, draws, len(rows)),
                        True,
                    )
        with isolated(seed + 1):  # latents from the prior, one per observation and draw
            for start in range(0, n, rows_per_chunk):
                guard.check()
                chunk = data.rows(slice(start, start + rows_per_chunk))
                prior_trace = program.generate(chunk, num_particles=draws, sites=sites)
                for name in sites.local + sites.globals:
                    if name in prior_trace.nodes:
                        keep("prior", name, site_values(prior_trace.nodes[name], sites, program.plate), start == 0)
                for name in sites.observed:
                    keep("prior_pred", name, site_values(prior_trace.nodes[name], sites, program.plate), True)
    joined = {
        g: {k: torch.cat(v, dim=0 if g == "observed" else 1) if k in local else v[0] for k, v in values.items()}
        for g, values in parts.items()
    }
    posterior, predictive, log_lik = joined["posterior"], joined["predictive"], joined["log_lik"]
    prior, prior_predictive = joined["prior"], joined["prior_pred"]
    observed_data = joined["observed"]

    # A site named like the observation dimension would collide with it (xarray makes it a coordinate).
    obs_dim = "obs" if "obs" not in sites.event_shapes else "obs_index"
    dims = _dims(sites, {**posterior, **predictive}, obs_dim)
    coords = {obs_dim: np.asarray(obs_coords)}
    for name, values in {**posterior, **predictive}.items():
        for dim, size in zip(dims[name], values.shape[1:]):
            coords.setdefault(dim, np.arange(size))

    def shaped(tensor: torch.Tensor) -> np.ndarray:
        # (chains * draws, ...) -> (chain, draw, ...)
        return tensor.reshape(num_chains, num_samples, *tensor.shape[1:]).detach().cpu().numpy()

    attrs = {
        "pyro_vae_version": __version__,
        "likelihood": program.name or ", ".join(sites.observed),
        "observed_sites": json.dumps(list(sites.observed)),
        "latent_sites": json.dumps(list(sites.local + sites.globals)),
    }
    if hasattr(model, "config"):
        attrs["model_config"] = json.dumps(model.config())

    def group(values: dict, sampled: bool = True, per_point: bool = False):
        numpy = {k: shaped(v) if sampled else v.detach().cpu().numpy() for k, v in values.items()}
        group_dims = {k: [obs_dim] if per_point else dims[k] for k in numpy}
        return az.dict_to_dataset(
            numpy, attrs=attrs, library=pyro, coords=coords, dims=group_dims, default_dims=None if sampled else []
        )

    datasets = {
        "posterior": group(posterior),
        "posterior_predictive": group(predictive),
        "log_likelihood": group(log_lik, per_point=True),
        "prior": group(prior),
        "prior_predictive": group(prior_predictive),
        "observed_data": group(observed_data, sampled=False),
    }
    idata = az.InferenceData(**datasets)
    missing = sorted(set(datasets) - set(idata.groups()))
    if missing:  # never hand back an export that silently lacks a group
        raise RuntimeError(f"ArviZ dropped the group(s) {missing} of this export; please report this as a bug.")
    return idata


def _observed_value(site: dict) -> torch.Tensor:
    """An observed site's data, kept by ``poutine.uncondition`` in ``infer["obs"]``."""
    value = site["infer"].get("obs")
    if value is None:
        raise ValueError(f"The observed site {site['name']!r} kept no observed value.")
    return value


def _observed_rows(site: dict, sites: Sites, plate: str) -> torch.Tensor:
    """A chunk's observations of an observed site, ``(B, ...)``, laid out like its draws."""
    value = _observed_value(site)
    expanded = value.expand(site["value"].shape[-value.ndim :]).unsqueeze(0)
    return site_values({**site, "value": expanded}, sites, plate)[0]


def _rows_per_chunk(program, data: Data, sites: Sites, draws: int, max_memory_mb: float) -> int:
    """Rows per chunk so that a chunk's traces stay near ``max_memory_mb``; one chunk with global latents,
    whose draws must be shared by every point (refused if that one chunk would not fit)."""
    positive_number(max_memory_mb, "max_memory_mb")
    with torch.random.fork_rng(devices=[]):
        per_row = 2 * draws * program.bytes_per_draw(data, sites)  # the posterior traces, then the prior's
    rows = max(1, int(max_memory_mb * 2**20 // per_row))
    if sites.globals and rows < len(data):
        raise ValueError(
            f"This export needs about {per_row * len(data) / 2**20:,.0f} MB at once: the global latent(s) "
            f"{list(sites.globals)} must be drawn once for every point, so the points cannot be split into chunks "
            f"within max_memory_mb={max_memory_mb:g}. Pass fewer points or draws, or raise max_memory_mb."
        )
    return rows


def _dims(sites: Sites, values: dict[str, torch.Tensor], obs_dim: str) -> dict[str, list[str]]:
    """Dimension names after (chain, draw) for every site, as described in the module docstring."""
    out = {}
    for names, single in ((sites.local + sites.globals, "latent"), (sites.observed, "feature")):
        one = len(names) == 1
        for name in names:
            event = len(sites.event_shapes[name])
            local = name in sites.local or name in sites.observed
            lead = [obs_dim] if local else []
            if name in values:
                extra = values[name].ndim - 1 - len(lead) - event
            else:
                extra = 0
            rest = [f"{name}_dim_{i}" for i in range(extra + event)]
            if one and event == 1 and extra == 0:
                rest = [single]
            out[name] = ["chain", "draw", *lead, *rest]
    return {k: v[2:] for k, v in out.items()}

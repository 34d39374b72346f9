"""The draws behind an ArviZ export, taken once from traces of the program and held as tensors.

:func:`draw` runs the guide and model over the points in memory-bounded chunks (one chunk when
the program has global latents, whose draws every point shares) and returns, per group, one tensor
per site: ``(draws, N, ...)`` for local and observed sites, ``(draws, ...)`` for global ones, and
``(N, ...)`` for the observed data. Nothing here depends on ArviZ.
"""

from __future__ import annotations

import math

import pyro
import torch
from pyro.distributions.torch_distribution import MaskedDistribution

from .._util.checks import positive_number
from .._util.isolation import isolated
from .._util.memory import HeapGuard
from ..program.chunks import bytes_per_draw
from ..program.missing import mask_features, views_x
from ..program.protocol import Data, Program
from ..program.sites import Sites, per_point, site_values

#: The groups :func:`draw` fills, in the order of the export (``mask`` only for data with missing entries).
GROUPS = ("posterior", "predictive", "log_lik", "prior", "prior_pred", "observed", "mask")


def draw(
    program: Program, data: Data, sites: Sites, draws: int, *, seed: int, max_memory_mb: float
) -> dict[str, dict[str, torch.Tensor]]:
    """``{group: {site: tensor}}`` for the groups in :data:`GROUPS`, from ``draws`` posterior draws
    (seeded by ``seed``) and as many prior draws (seeded by ``seed + 1``) per point.

    Length: one draw of every group ArviZ holds (posterior, predictive, log-likelihood) from the same traces,
    so their draws stay aligned.
    """
    n = len(data)
    rows_per_chunk = _rows_per_chunk(program, data, sites, draws, max_memory_mb)
    local = set(sites.local) | set(sites.observed)
    parts: dict[str, dict[str, list]] = {g: {} for g in GROUPS}

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
                    observed = _observed_rows(site, sites, program.plate)
                    scored = {**site, "value": _observed_value(site)}
                    if chunk.mask is not None and views_x(_observed_value(site), chunk.x):
                        # Missing entries are not data: NaN in observed_data, left out of log p(x_i|z).
                        mask = chunk.mask.reshape(observed.shape)
                        observed = torch.where(mask, observed, torch.full_like(observed, math.nan))
                        scored["fn"] = mask_features(site["fn"], chunk.mask.reshape(_observed_value(site).shape))
                        keep("mask", name, mask, True)
                    elif (own := _own_mask(site, observed)) is not None:
                        # A site the program masks itself (obs_mask=, fn.mask): its masked rows are no data.
                        observed = torch.where(own, observed.double(), torch.full(observed.shape, math.nan))
                        keep("mask", name, own, True)
                    keep("observed", name, observed, True)
                    keep("log_lik", name, per_point(scored, sites, program.plate, draws, len(rows)), True)
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
    return {
        g: {
            k: torch.cat(v, dim=0 if g in ("observed", "mask") else 1) if k in local else v[0]
            for k, v in values.items()
        }
        for g, values in parts.items()
    }


def _own_mask(site: dict, observed: torch.Tensor) -> torch.Tensor | None:
    """The mask a program put on an observed site itself (``obs_mask=``, ``fn.mask(m)``), laid out like
    ``observed`` (``(B, ...)``), or ``None`` where every row is data."""
    fn, mask = site["fn"], site.get("mask")
    while isinstance(fn, torch.distributions.Independent):
        fn = fn.base_dist
    if isinstance(fn, MaskedDistribution):
        mask = fn._mask if mask is None else mask & fn._mask
    if mask is None or not isinstance(mask, torch.Tensor) or bool(mask.all()):
        return None
    batch = observed.shape[: observed.ndim - len(site["fn"].event_shape)]
    mask = mask.reshape(mask.shape[mask.ndim - len(batch) :]) if mask.ndim > len(batch) else mask
    return mask.expand(batch).reshape(*batch, *([1] * len(site["fn"].event_shape))).expand(observed.shape)


def _observed_value(site: dict) -> torch.Tensor:
    """An observed site's data: kept by ``poutine.uncondition`` in ``infer["obs"]`` for a generated
    site, its value for one that stays observed (read from a covariate)."""
    value = site["value"] if site["is_observed"] else site["infer"].get("obs")
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
        per_row = 2 * draws * bytes_per_draw(program, data, sites)  # the posterior traces, then the prior's
    rows = max(1, int(max_memory_mb * 2**20 // per_row))
    if sites.globals and rows < len(data):
        raise ValueError(
            f"This export needs about {per_row * len(data) / 2**20:,.0f} MB at once: the global latent(s) "
            f"{list(sites.globals)} must be drawn once for every point, so the points cannot be split into chunks "
            f"within max_memory_mb={max_memory_mb:g}. Pass fewer points or draws, or raise max_memory_mb."
        )
    return rows

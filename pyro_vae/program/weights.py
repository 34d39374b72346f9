"""Per-point log importance weights of a program: the one computation that importance sampling,
validation and the diagnostics share.

For ``S`` draws ``z_s ~ q(z|x_i)`` of each of ``B`` points,

.. math::

    \\log w_{s,i} = \\log p(z_s) - \\log q(z_s \\mid x_i) + \\sum_k \\log p(x_{k,i} \\mid z_s).

Discrete sites marked for enumeration (:attr:`~pyro_vae.program.sites.Sites.enumerated`) are
summed out exactly rather than sampled: the program runs once with every value of each such
site at once (Pyro's parallel enumeration), and for a site ``y``

.. math::

    w_{s,i} = \\sum_y \\frac{p(x_i, y, z_{s,y})}{q(z_{s,y} \\mid x_i, y)}, \\qquad z_{s,y} \\sim q(z \\mid x_i, y),

an unbiased estimate of ``p(x_i)`` for every ``s`` (``q(y|x)`` does not enter it). Each particle's
ELBO term is then ``sum_y q(y|x_i) [log p(x_i, y, z_{s,y}) - log q(y|x_i) - log q(z_{s,y}|x_i, y)]``
for the guide's enumerated sites (what ``TraceEnum_ELBO`` maximises), with the model's own
enumerated sites summed inside the logarithm.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from pyro.distributions.torch_distribution import MaskedDistribution

from .binding import bind
from .protocol import Data, Program
from .sites import Sites, in_plate, per_point


@dataclass(frozen=True)
class PointWeights:
    """Log weights of ``S`` particles of ``B`` points, each of shape ``(S, B)``.

    Attributes:
        joint: ``log w`` of the joint ``p(x, z) / q(z|x)`` (enumerated sites summed out).
        per_site: for each observed site ``k``, ``log w`` of ``p(x_k, z) / q(z|x)`` alone.
        elbo: each particle's ELBO term (``joint`` itself without enumeration).
    """

    joint: torch.Tensor
    per_site: dict[str, torch.Tensor]
    elbo: torch.Tensor


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
    mask: Any = None,
) -> torch.Tensor:
    """Log importance weights ``log p(x, z_s) - log q(z_s|x)`` of shape ``(num_particles, B)``.

    ``x`` is one batch of ``B`` points. Draws use torch's global generator, so call this inside a
    seeded block; reading the program's structure does not consume it. ``global_values`` and
    ``mask`` as for :func:`pyro_vae.log_likelihood`. Enumerated discrete sites are summed out
    (module docstring).
    """
    bound = bind(model, x, guide=guide, covariates=covariates, global_values=global_values, mask=mask)
    program, data, sites = bound.program, bound.data, bound.sites
    return point_weights(program, data, num_particles, sites, indices=indices, num_data=num_data).joint


def point_weights(
    program: Program,
    data: Data,
    num_particles: int,
    sites: Sites,
    *,
    indices=None,
    num_data=None,
    guide: Callable | None = None,
    with_trace: bool = False,
):
    """The :class:`PointWeights` of ``num_particles`` draws for every row of ``data`` (and, with
    ``with_trace``, the model's trace they came from: ``(weights, model_trace)``)."""
    enumerate_ = bool(sites.enumerated)
    if program.direct_weights is not None and not (enumerate_ or with_trace or guide is not None):
        joint = program.direct_weights(data, num_particles)
        return PointWeights(joint=joint, per_site={name: joint for name in sites.observed}, elbo=joint)
    guide_trace, model_trace = program.traces(
        data, num_particles, indices=indices, num_data=num_data, guide=guide, sites=sites, enumerate=enumerate_
    )
    if not enumerate_:
        weights = _sampled(program, sites, guide_trace, model_trace, num_particles, len(data), data.x)
    else:
        weights = _enumerated(program, sites, guide_trace, model_trace, num_particles, len(data))
    return (weights, model_trace) if with_trace else weights


def _sampled(program, sites, guide_trace, model_trace, num_particles, batch, x) -> PointWeights:
    latent = torch.zeros(
        num_particles, batch, dtype=torch.float64 if x.dtype == torch.float64 else None, device=x.device
    )
    for name in sites.local:
        latent = latent + per_point(model_trace.nodes[name], sites, program.plate, num_particles, batch)
        latent = latent - per_point(guide_trace.nodes[name], sites, program.plate, num_particles, batch)
    observed = {
        name: per_point(model_trace.nodes[name], sites, program.plate, num_particles, batch) for name in sites.observed
    }
    joint = latent + sum(observed.values())
    return PointWeights(joint=joint, per_site={k: latent + v for k, v in observed.items()}, elbo=joint)


def _enumerated(program, sites, guide_trace, model_trace, num_particles, batch) -> PointWeights:
    model_sites = [n for n in sites.local + sites.enumerated if n in model_trace.nodes]
    guide_enumerated = [n for n in sites.enumerated if n in guide_trace.nodes]
    terms = [(model_trace.nodes[n], 1.0) for n in dict.fromkeys(model_sites)]
    terms += [(guide_trace.nodes[n], -1.0) for n in sites.local if n not in guide_enumerated]
    observed = [model_trace.nodes[n] for n in sites.observed]
    q_enumerated = [guide_trace.nodes[n] for n in guide_enumerated]
    enum_rank = max(site["fn"].log_prob(site["value"]).ndim for site, _ in terms + [(s, 0) for s in observed])
    enum_rank = max(0, enum_rank - (sites.nesting + 1))
    guide_axes = [enum_rank + _enum_dim(guide_trace.nodes[n], sites) for n in guide_enumerated]
    all_axes = list(range(enum_rank))
    model_axes = [a for a in all_axes if a not in guide_axes]

    def points(site, summed_out=False):
        # An enumerated site masked out at a row (a labelled row of a semi-supervised program) takes
        # -log E there, so the E copies of that row sum to one rather than to E.
        fill = -math.log(site["value"].shape[site["infer"]["_enumerate_dim"]]) if summed_out else 0.0
        return _enum_points(site, sites, program.plate, enum_rank, num_particles, batch, fill)

    enumerated = set(sites.enumerated)
    by_guide = [site for site, sign in terms if sign > 0 and site["name"] in guide_enumerated]
    latent = sum(sign * points(site, site["name"] in enumerated) for site, sign in terms)
    per_observed = {site["name"]: points(site) for site in observed}
    full = latent + sum(per_observed.values())  # (E..., S, B)

    def summed(values, axes):
        return torch.logsumexp(values, dim=axes) if axes else values

    joint = summed(full, all_axes)
    per_site = {k: summed(latent + v, all_axes) for k, v in per_observed.items()}
    # In the ELBO q(y|x) weighs the guide's enumerated values, so a masked-out row needs no -log E.
    for site in by_guide:
        full = full - points(site, True) + points(site)
    inner = summed(full, model_axes)  # the model's own enumerated sites inside the logarithm
    if guide_axes:
        # q(y|x) weighs the values; its entropy counts only where the site is not masked out.
        log_q = sum(points(site, True) for site in q_enumerated)
        log_q_own = sum(points(site) for site in q_enumerated)
        log_q, log_q_own = (summed(t, model_axes) if model_axes else t for t in (log_q, log_q_own))
        shifted = [a - sum(1 for m in model_axes if m < a) for a in sorted(guide_axes)]
        elbo = (log_q.exp() * (inner - log_q_own)).sum(dim=shifted)
    else:
        elbo = inner
    return PointWeights(joint=joint, per_site=per_site, elbo=elbo)


def _enum_dim(site: dict, sites: Sites) -> int:
    """The (negative) enumeration dimension of an enumerated site, counted within the enum block."""
    dim = site["infer"].get("_enumerate_dim")
    if dim is None:
        raise ValueError(f"The site {site['name']!r} was not enumerated; mark it infer={{'enumerate': 'parallel'}}.")
    return dim - sites.enum_dim - 1  # enum_dim maps to -1 of the block, one further left to -2, ...


def _enum_points(
    site: dict, sites: Sites, plate: str, enum_rank: int, num_particles: int, batch: int, fill: float = 0.0
) -> torch.Tensor:
    """``site``'s log-density with its enumeration dimensions kept and the plates reduced: shape
    ``(E_1, ..., E_r, S, B)`` (size 1 where the site does not depend on an enumerated value).

    Entries masked out (``poutine.mask``, ``fn.mask``, ``obs_mask``) take ``fill``."""
    fn, mask = site["fn"], site.get("mask")
    if isinstance(fn, MaskedDistribution):
        fn, mask = fn.base_dist, fn._mask if mask is None else mask & fn._mask
    log_prob = fn.log_prob(site["value"])
    if mask is not None:
        log_prob = torch.where(mask, log_prob, torch.full_like(log_prob, fill))
    rank = enum_rank + sites.nesting + 1
    if log_prob.ndim > rank:
        raise ValueError(
            f"Site {site['name']!r} has log_prob of shape {tuple(log_prob.shape)}, with batch dimensions that no "
            "pyro.plate or enumeration declares."
        )
    values = log_prob.reshape((1,) * (rank - log_prob.ndim) + tuple(log_prob.shape))
    local = in_plate(site, plate)
    keep = list(range(enum_rank + 1)) + ([rank + sites.data_dim] if local else [])
    other = [d for d in range(rank) if d not in keep]
    if other:
        values = values.sum(other)
    if not local:
        values = values.unsqueeze(-1)
    return values.expand(*values.shape[:enum_rank], num_particles, batch)

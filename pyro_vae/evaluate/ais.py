"""Annealed importance sampling (AIS) of ``log p(x)``.

AIS (Neal 2001; for decoder-based models, Wu et al. 2017) moves ``C`` chains per data point from a
start distribution ``p_0(z)`` -- the guide ``q(z|x)`` or the prior ``p(z)`` -- to the posterior
through the geometric path

.. math::

    f_t(z) = p_0(z)^{1 - \\beta_t}\\, p(x, z)^{\\beta_t}, \\qquad 0 = \\beta_0 < \\beta_1 < \\dots < \\beta_T = 1,

with one Hamiltonian Monte Carlo transition that leaves ``f_t`` invariant at each temperature.
Its step sizes (one per point and temperature) come from a pilot run of one adaptive chain per
point, so the kernels of the chains that are weighted do not depend on their own past.
Each chain's log weight

.. math::

    \\log w = \\sum_{t=1}^{T} (\\beta_t - \\beta_{t-1}) \\big[\\log p(x, z_{t-1}) - \\log p_0(z_{t-1})\\big]

is the log of an unbiased estimate of ``p(x)``, so ``log (1/C) sum_c w_c`` is a stochastic lower
bound whose slack vanishes as ``T`` grows -- unlike importance sampling from the guide, whose
slack depends on how well ``q(z|x)`` covers the posterior.

Bidirectional Monte Carlo, which brackets the truth on simulated data with these chains run both
ways, is in :mod:`pyro_vae.evaluate.bdmc`.

Everything is vectorised over points and chains, runs on any program of :mod:`pyro_vae.program`
whose local latents are continuous (HMC runs in the unconstrained space of each latent's support,
with its Jacobian), and is chunked so one chunk's memory stays near ``max_memory_mb``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pyro
import torch
from pyro import poutine
from torch.distributions import biject_to

from .._util.checks import positive_int
from .._util.isolation import isolated
from ..program.chunks import plan_chunks
from ..program.protocol import Data, Program, with_particles
from ..program.sites import Sites, per_point, to_points

STARTS = ("guide", "prior")
#: Acceptance rate the per-chain step sizes are steered towards (Neal 2011 recommends ~0.65).
TARGET_ACCEPTANCE = 0.65
#: Memory of a chunk relative to a forward pass: the autograd graph and leapfrog temporaries.
_GRADIENT_FACTOR = 6


@dataclass(frozen=True)
class Schedule:
    """How AIS anneals: ``steps`` temperatures on a sigmoid path, HMC with ``leapfrog_steps``.

    The sigmoid path of Grosse et al. (2015) spends more temperatures near both ends, where
    ``f_t`` changes fastest. Step sizes start at ``initial_step_size``; a pilot run tunes them per
    point and temperature towards :data:`TARGET_ACCEPTANCE` (:func:`tuned_step_sizes`).
    """

    steps: int = 500
    leapfrog_steps: int = 10
    initial_step_size: float = 0.05

    def __post_init__(self):
        positive_int(self.steps, "ais_steps")
        positive_int(self.leapfrog_steps, "leapfrog_steps")
        if not (isinstance(self.initial_step_size, (int, float)) and self.initial_step_size > 0):
            raise ValueError(f"initial_step_size must be a positive number, got {self.initial_step_size!r}.")

    def betas(self, dtype=torch.float64) -> torch.Tensor:
        """``beta_0 = 0, ..., beta_T = 1`` (shape ``(T + 1,)``)."""
        if self.steps == 1:
            return torch.tensor([0.0, 1.0], dtype=dtype)
        s = torch.sigmoid(torch.linspace(-4.0, 4.0, self.steps + 1, dtype=torch.float64))
        return ((s - s[0]) / (s[-1] - s[0])).to(dtype)

    def describe(self, start: str) -> str:
        return (
            f"annealed importance sampling from the {start}, {self.steps} temperatures, "
            f"HMC with {self.leapfrog_steps} leapfrog steps"
        )


class _Chunk:
    """The densities of one chunk of points, as functions of the local latents in unconstrained space."""

    def __init__(self, program: Program, rows: Data, sites: Sites, chains: int, start: str, indices, num_data):
        self.program, self.rows, self.sites, self.chains, self.start = program, rows, sites, chains, start
        self.indices, self.num_data = indices, num_data
        dim = sites.particle_dim
        self.model = with_particles(program.model, chains, dim)
        self.guide = with_particles(program.guide, chains, dim) if start == "guide" else None
        self.transforms: dict[str, Any] = {}

    def _kwargs(self, fn):
        return self.program.arguments(fn, self.rows, self.indices, self.num_data)

    def reduce(self, values: torch.Tensor, event_dims: int) -> torch.Tensor:
        """Sum ``values`` (a site's layout with ``event_dims`` trailing dims) to ``(C, B)``."""
        if event_dims:
            values = values.sum(tuple(range(-event_dims, 0)))
        return to_points(values, self.sites, True, self.chains, len(self.rows))

    def initial(self) -> dict[str, torch.Tensor]:
        """``C`` draws per point from the start distribution, in each site's own layout."""
        with torch.no_grad():
            if self.start == "guide":
                trace = poutine.trace(self.guide).get_trace(self.rows.x, **self._kwargs(self.program.guide))
            else:
                trace = self.program.generate(self.rows, num_particles=self.chains, sites=self.sites)
        return {name: trace.nodes[name]["value"].detach() for name in self.sites.local}

    def set_transforms(self, z: Mapping[str, torch.Tensor]) -> None:
        trace = self._model_trace(z)
        for name in self.sites.local:
            fn = trace.nodes[name]["fn"]
            if fn.support.is_discrete:
                raise ValueError(f"AIS moves continuous latents with HMC; the local latent {name!r} is discrete.")
            self.transforms[name] = biject_to(fn.support)

    def to_unconstrained(self, z: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {name: self.transforms[name].inv(value) for name, value in z.items()}

    def _model_trace(self, z):
        model = poutine.condition(self.model, data=dict(z))
        return poutine.trace(model).get_trace(self.rows.x, **self._kwargs(self.program.model))

    def densities(self, u: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(log p_0(z), log p(x, z), log |dz/du|)``, each ``(C, B)``, at ``z = T(u)``."""
        z, log_det = {}, 0.0
        for name, value in u.items():
            transform = self.transforms[name]
            z[name] = transform(value)
            event = len(self.sites.event_shapes[name]) - transform.codomain.event_dim
            log_det = log_det + self.reduce(transform.log_abs_det_jacobian(value, z[name]), max(event, 0))
        trace = self._model_trace(z)
        chains, batch = self.chains, len(self.rows)
        plate = self.program.plate
        log_prior = sum(per_point(trace.nodes[n], self.sites, plate, chains, batch) for n in self.sites.local)
        log_lik = sum(per_point(trace.nodes[n], self.sites, plate, chains, batch) for n in self.sites.observed)
        if self.start == "guide":
            guide = poutine.condition(self.guide, data=z)
            guide_trace = poutine.trace(guide).get_trace(self.rows.x, **self._kwargs(self.program.guide))
            log_start = sum(per_point(guide_trace.nodes[n], self.sites, plate, chains, batch) for n in self.sites.local)
        else:
            log_start = log_prior
        return log_start, log_prior + log_lik, log_det


def _log_target(chunk: _Chunk, u, beta):
    """``log f_beta`` in unconstrained space, its parts and its gradient with respect to every ``u``."""
    with torch.enable_grad():
        leaves = {k: v.detach().requires_grad_(True) for k, v in u.items()}
        log_start, log_joint, log_det = chunk.densities(leaves)
        log_f = (1.0 - beta) * log_start + beta * log_joint + log_det
        grads = torch.autograd.grad(log_f.sum(), list(leaves.values()), allow_unused=True)
    grads = {k: (g if g is not None else torch.zeros_like(leaves[k])) for k, g in zip(leaves, grads)}
    return log_f.detach(), log_start.detach(), log_joint.detach(), grads


def _per_chain(chunk: _Chunk, name: str, scalar: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Broadcast a ``(C, B)`` tensor against a site's value ``like``."""
    event = len(chunk.sites.event_shapes[name])
    rank = like.ndim - event
    shape = [1] * like.ndim
    shape[0] = scalar.shape[0]
    shape[rank + chunk.sites.data_dim] = scalar.shape[1]
    return scalar.reshape(shape)


def _hmc(chunk: _Chunk, u, beta, step_size, schedule: Schedule, start):
    """One HMC transition leaving ``f_beta`` invariant, per chain, from ``u`` whose ``(log f, gradient)``
    is ``start``; returns the new state and the acceptance probabilities ``(C, B)``."""
    log_f0, grad = start
    momentum = {k: torch.randn_like(v) for k, v in u.items()}
    kinetic0 = sum(chunk.reduce(p.pow(2), len(chunk.sites.event_shapes[k])) for k, p in momentum.items()) / 2
    eps = {k: _per_chain(chunk, k, step_size, v) for k, v in u.items()}
    position = dict(u)
    p = {k: momentum[k] + 0.5 * eps[k] * grad[k] for k in u}
    for step in range(schedule.leapfrog_steps):
        position = {k: position[k] + eps[k] * p[k] for k in u}
        log_f1, _, _, grad = _log_target(chunk, position, beta)
        factor = 1.0 if step < schedule.leapfrog_steps - 1 else 0.5
        p = {k: p[k] + factor * eps[k] * grad[k] for k in u}
    kinetic1 = sum(chunk.reduce(v.pow(2), len(chunk.sites.event_shapes[k])) for k, v in p.items()) / 2
    log_accept = (log_f1 - kinetic1) - (log_f0 - kinetic0)
    log_accept = torch.where(torch.isfinite(log_accept), log_accept, torch.full_like(log_accept, -math.inf))
    accept_prob = log_accept.clamp(max=0.0).exp()
    accept = torch.rand_like(accept_prob) < accept_prob
    new = {k: torch.where(_per_chain(chunk, k, accept, u[k]), position[k], u[k]) for k in u}
    return new, accept_prob


def run_ais(
    chunk: _Chunk,
    schedule: Schedule,
    *,
    step_sizes: torch.Tensor | None = None,
    initial: Mapping[str, torch.Tensor] | None = None,
    reverse: bool = False,
):
    """Log weights ``(C, B)`` of one chunk, the mean acceptance probability per point ``(B,)`` and
    the step sizes used at each temperature ``(T + 1, B)``.

    Forward (``reverse=False``) starts from ``p_0`` and returns log-estimates of ``p(x)``; reverse
    starts from ``initial`` (exact posterior draws) and returns log-estimates of ``1 / p(x)``.

    With ``step_sizes`` (indexed by temperature, one per point) the kernels are fixed in advance,
    as unbiasedness needs. Without, each chain steers its own step size towards
    :data:`TARGET_ACCEPTANCE` after every transition: a kernel that depends on the chain's own
    past, which biases the weights, so that mode only tunes the step sizes of a pilot run.
    """
    z = dict(initial) if initial is not None else chunk.initial()
    chunk.set_transforms(z)
    u = {k: v.detach() for k, v in chunk.to_unconstrained(z).items()}
    betas = schedule.betas()
    order = list(range(len(betas)))
    if reverse:
        order = order[::-1]
    first = next(iter(u.values()))
    chains, batch = chunk.chains, len(chunk.rows)
    log_w = torch.zeros(chains, batch, dtype=torch.float64)
    adaptive = torch.full((chains, batch), schedule.initial_step_size, dtype=first.dtype, device=first.device)
    used = torch.full((len(betas), batch), schedule.initial_step_size, dtype=first.dtype, device=first.device)
    acceptance = torch.zeros(batch, dtype=torch.float64)
    for previous, current in zip(order[:-1], order[1:]):
        beta = float(betas[current])
        log_f, log_start, log_joint, grad = _log_target(chunk, u, beta)
        log_w += (betas[current] - betas[previous]) * (log_joint - log_start).double().cpu()
        if step_sizes is not None:
            step_size = step_sizes[current].to(first).expand(chains, batch)
        else:
            step_size = adaptive
        used[current] = step_size.mean(0)
        u, accept_prob = _hmc(chunk, u, beta, step_size, schedule, (log_f, grad))
        if step_sizes is None:
            adaptive = adaptive * torch.exp(0.1 * (accept_prob - TARGET_ACCEPTANCE)).to(first.dtype)
        acceptance += accept_prob.double().mean(0).cpu()
    if step_sizes is None:
        used[order[0]] = used[order[1]]
    return log_w, acceptance / (len(betas) - 1), used


def tuned_step_sizes(
    program: Program, rows: Data, sites: Sites, schedule: Schedule, start: str, indices, num_data: int
) -> torch.Tensor:
    """Per-temperature, per-point HMC step sizes ``(T + 1, B)`` from one adaptive pilot chain per point.

    The pilot's chains are independent of the chains that use the step sizes, so the final
    kernels are fixed in advance and the AIS weights stay unbiased.
    """
    pilot = _Chunk(program, rows, sites, 1, start, indices, num_data)
    return run_ais(pilot, schedule)[2]


def chunks(program: Program, data: Data, sites: Sites, chains: int, max_memory_mb: float):
    """Row ranges of at most as many points as keep one chunk of ``chains`` chains within memory."""

    points, particles = plan_chunks(program, data, sites, chains, max_memory_mb / _GRADIENT_FACTOR)
    if particles < chains:
        points = 1
    for start in range(0, len(data), max(points, 1)):
        yield torch.arange(start, min(start + points, len(data)))


def forward_ais(program, data, indices, sites, chains, schedule, start):
    """Forward AIS on the rows ``indices``: ``(chunk, step sizes, log weights (C, B), acceptance (B,))``."""
    rows = data.rows(indices)
    step_sizes = tuned_step_sizes(program, rows, sites, schedule, start, indices, len(data))
    chunk = _Chunk(program, rows, sites, chains, start, indices, len(data))
    log_w, accept, _ = run_ais(chunk, schedule, step_sizes=step_sizes)
    return chunk, step_sizes, log_w, accept


def ais_log_weights(
    program: Program,
    data: Data,
    sites: Sites,
    *,
    chains: int,
    schedule: Schedule,
    start: str,
    seed: int,
    max_memory_mb: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(N, C)`` forward AIS log weights of every point and each point's mean acceptance probability."""
    if start not in STARTS:
        raise ValueError(f"ais_start must be one of {STARTS}, got {start!r}.")
    if start == "guide":
        program.guide  # noqa: B018 -- refuse a missing guide before any work
    refuse_discrete_latents(sites)
    weights, acceptance = [], []
    with isolated(seed), pyro.validation_enabled(False):
        for indices in chunks(program, data, sites, chains, max_memory_mb):
            _, _, log_w, accept = forward_ais(program, data, indices, sites, chains, schedule, start)
            weights.append(log_w.T)
            acceptance.append(accept)
    return torch.cat(weights), torch.cat(acceptance)


def refuse_discrete_latents(sites: Sites) -> None:
    """AIS moves every latent with HMC: refuse discrete local latents (enumerated or not) by name."""
    if sites.discrete_latent:
        raise ValueError(
            f"AIS moves continuous latents with HMC; the latent site(s) {list(sites.discrete_latent)} are discrete. "
            "Estimate log p(x) with method='importance', which sums enumerated sites exactly."
        )

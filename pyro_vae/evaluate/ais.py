"""Annealed importance sampling (AIS) of ``log p(x)`` and its bidirectional check (BDMC).

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

Bidirectional Monte Carlo (Grosse, Ghahramani & Adams 2015) brackets the truth on data simulated
from the model: for ``(x, z*) ~ p(x, z)``, ``z*`` is an exact posterior draw, so AIS run backwards
from ``z*`` (temperatures ``1 -> 0``) gives an unbiased estimate of ``1 / p(x)``, hence a stochastic
*upper* bound on ``log p(x)``. The gap between the two bounds bounds the error of either.

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

from .._util.checks import positive_int, positive_number
from .._util.isolation import isolated
from .._util.maths import log_mean_exp
from ..program.chunks import plan_chunks
from ..program.protocol import Data, Program, as_program, with_particles
from ..program.sites import Sites, per_point, site_values, to_points

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


def _forward(program, data, indices, sites, chains, schedule, start):
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
            _, _, log_w, accept = _forward(program, data, indices, sites, chains, schedule, start)
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


@dataclass(frozen=True)
class BDMC:
    """Bidirectional Monte Carlo bounds on ``log p(x_i)`` for points simulated from the model.

    Attributes:
        lower: forward AIS estimates, shape ``(N,)``: stochastic lower bounds.
        upper: reverse AIS estimates from the exact posterior draws, shape ``(N,)``: stochastic upper bounds.
        x: the simulated points ``(N, ...)``; ``covariates`` the rows' covariates.
        schedule: the annealing used in both directions; ``chains`` per point.
        acceptance: mean HMC acceptance probability, forward and reverse.
    """

    lower: torch.Tensor
    upper: torch.Tensor
    x: torch.Tensor
    covariates: dict
    schedule: Schedule
    chains: int
    start: str
    acceptance: tuple[float, float]

    def __repr__(self) -> str:
        return (
            f"BDMC({self.lower.numel()} simulated points, {self.chains} chains: mean lower bound "
            f"{float(self.lower.mean()):.3f}, upper {float(self.upper.mean()):.3f}, gap {self.gap:.3f} nats)"
        )

    @property
    def gap(self) -> float:
        """Average ``upper - lower`` per point: how far from exact either estimate can be, in nats."""
        return float((self.upper - self.lower).mean())

    def summary(self) -> dict[str, Any]:
        return {
            "num_points": int(self.lower.shape[0]),
            "chains": self.chains,
            "steps": self.schedule.steps,
            "leapfrog_steps": self.schedule.leapfrog_steps,
            "start": self.start,
            "lower_mean": float(self.lower.mean()),
            "upper_mean": float(self.upper.mean()),
            "gap": self.gap,
            "acceptance_forward": self.acceptance[0],
            "acceptance_reverse": self.acceptance[1],
        }


def bdmc(
    model: Any,
    num_points: int,
    *,
    guide: Any = None,
    rows: Any = None,
    covariates: Mapping[str, Any] | None = None,
    plate: str | None = None,
    num_chains: int = 10,
    ais_steps: int = 500,
    leapfrog_steps: int = 10,
    ais_start: str = "guide",
    initial_step_size: float = 0.05,
    max_memory_mb: float = 64.0,
    seed: int = 0,
) -> BDMC:
    """Simulate ``num_points`` points ``(x_i, z_i*) ~ p(x, z)`` and bracket ``log p(x_i)`` by BDMC.

    Args:
        model, guide, covariates, plate: the program, as for :func:`pyro_vae.log_likelihood`.
        rows: data rows whose covariates (and shapes) the simulation uses, cycled to
            ``num_points``; a VAE generates from its own template without them.
        num_chains: chains per point in each direction.
        ais_steps, leapfrog_steps, ais_start, initial_step_size: the annealing (:class:`Schedule`)
            and its start distribution (``"guide"`` or ``"prior"``).

    Returns: a :class:`BDMC` whose :attr:`~BDMC.gap` says how far from exact the AIS estimate of a
    simulated point can be. On data from the model, the gap of real data is not certified, but
    a small gap means the schedule is long enough for points like these.
    """
    positive_number(max_memory_mb, "max_memory_mb")
    program = as_program(model, guide, plate=plate)
    positive_int(num_points, "num_points")
    positive_int(num_chains, "num_chains")
    schedule = Schedule(ais_steps, leapfrog_steps, initial_step_size)
    if ais_start not in STARTS:
        raise ValueError(f"ais_start must be one of {STARTS}, got {ais_start!r}.")
    like = program.data(rows, covariates) if rows is not None else None
    template = program.template(num_points, like)
    sites = program.sites(template)
    refuse_discrete_latents(sites)
    if sites.globals:
        raise ValueError(
            f"BDMC simulates from the model, whose global latents {list(sites.globals)} would then "
            "differ from point to point; fix them in the program (poutine.condition) first."
        )
    if len(sites.generated) > 1:
        raise ValueError(f"BDMC simulates one observed site; this program's data fill {list(sites.generated)}.")
    # A site kept at the value given (an observed label) must not depend on the latents: simulated
    # ancestrally beside it, they would not be draws from their posterior given it.
    given = [name for name in sites.observed if name not in sites.generated and sites.model_parents.get(name)]
    if given:
        raise ValueError(
            f"BDMC simulates x with {given} kept at the values given, but {given} depend on latent sites, so "
            "the simulated latents would not be posterior draws given them; simulate a program without them."
        )
    with torch.no_grad(), isolated(seed), pyro.validation_enabled(False):
        # One particle: every latent keeps the particle dimension in front, as the chains need.
        trace = program.generate(template, num_particles=1, sites=sites)
        x = site_values(trace.nodes[sites.x_site], sites, program.plate)[0].detach()
        z_star = {name: _full_rank(trace.nodes[name]["value"].detach(), name, sites) for name in sites.local}
    data = Data(x, dict(template.covariates))
    lower, upper, acc_f, acc_r = [], [], [], []
    with isolated(seed + 1), pyro.validation_enabled(False):
        for indices in chunks(program, data, sites, num_chains, max_memory_mb):
            chunk, step_sizes, log_w, accept = _forward(program, data, indices, sites, num_chains, schedule, ais_start)
            lower.append(log_mean_exp(log_w, 0))
            acc_f.append(accept)
            rank = sites.nesting + 1
            initial = {
                name: value.index_select(rank + sites.data_dim, indices.to(value.device))
                .expand(num_chains, *value.shape[1:])
                .contiguous()
                for name, value in z_star.items()
            }
            # The same kernels, run backwards from the exact posterior draws.
            log_w_rev, accept, _ = run_ais(chunk, schedule, step_sizes=step_sizes, initial=initial, reverse=True)
            upper.append(-log_mean_exp(log_w_rev, 0))
            acc_r.append(accept)
    return BDMC(
        torch.cat(lower),
        torch.cat(upper),
        x,
        dict(template.covariates),
        schedule,
        num_chains,
        ais_start,
        (float(torch.cat(acc_f).mean()), float(torch.cat(acc_r).mean())),
    )


def _full_rank(value: torch.Tensor, name: str, sites: Sites) -> torch.Tensor:
    """``value`` with all ``nesting + 1`` batch dimensions present (size 1 where it broadcasts)."""
    event = len(sites.event_shapes[name])
    rank = sites.nesting + 1
    batch = value.ndim - event
    return value.reshape((1,) * (rank - batch) + tuple(value.shape))

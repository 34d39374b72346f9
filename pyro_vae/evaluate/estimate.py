"""Importance-weighted estimates of ``log p(x)`` for every data point.

For a data point ``x`` and ``S`` draws ``z_s ~ q(z|x)``, the log importance weights are

.. math::

    \\log w_s = \\log p(x \\mid z_s) + \\log p(z_s) - \\log q(z_s \\mid x),

and

.. math::

    \\widehat{\\log p}(x) = \\log \\frac{1}{S} \\sum_{s=1}^{S} w_s, \\qquad
    \\widehat{\\mathrm{ELBO}}(x) = \\frac{1}{S} \\sum_{s=1}^{S} \\log w_s .

The first is the importance-weighted bound of Burda, Grosse & Salakhutdinov (2016): its
expectation never exceeds ``log p(x)`` and rises towards it as ``S`` grows. The second is an
unbiased estimate of the per-point ELBO.

The weights come from genuine Pyro traces of any program that follows :mod:`pyro_vae.program`:
the guide runs under a ``"particles"`` plate, the model is replayed against it, and each site's
``log_prob`` is reduced to the ``(particles, data)`` shape, so nothing is summed over data points.
Work is split into chunks of (points x particles) whose allocations stay near ``max_memory_mb``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pyro
import torch

from .._util.arviz_compat import load_pareto
from .._util.arviz_compat import pareto_k as psis_pareto_k
from .._util.checks import positive_int, positive_number
from .._util.isolation import isolated, leaves_pyro_state_alone
from .._util.maths import log_mean_exp
from .._util.memory import MAX_MEMORY_MB, HeapGuard
from ..program.binding import bind
from ..program.chunks import plan_chunks
from ..program.protocol import Data, Program, as_program
from ..program.sites import Sites
from ..program.weights import point_weights
from .ais import STARTS, Schedule, ais_log_weights
from .result import LogLikelihood

METHODS = ("importance", "ais")
#: Default draws per point of each method: importance samples from the guide, and AIS chains, each
#: of which costs ``ais_steps * (leapfrog_steps + 1)`` gradient evaluations (88,000 network passes
#: per point at the defaults, against 1,000 for importance sampling).
DEFAULT_DRAWS = {"importance": 1000, "ais": 16}


@leaves_pyro_state_alone
def log_likelihood(
    model: Any,
    x: Any,
    *,
    guide: Callable | None = None,
    covariates: Mapping[str, Any] | None = None,
    plate: str | None = None,
    global_values: Any = None,
    mask: Any = None,
    num_particles: int | None = None,
    max_memory_mb: float = MAX_MEMORY_MB,
    seed: int = 0,
    psis: bool | None = None,
    return_log_weights: bool = False,
    method: str = "importance",
    ais_steps: int = 500,
    leapfrog_steps: int = 10,
    ais_start: str = "guide",
    initial_step_size: float = 0.05,
) -> LogLikelihood:
    """Importance-weighted (or annealed) ``log p(x_i)`` and ELBO for every data point of a Pyro program.

    Args:
        model: a :class:`~pyro_vae.VAE`, or a Pyro program ``model(x, **covariates)`` (see
            :mod:`pyro_vae.program` for the protocol).
        x: data with the points along the first dimension, e.g. ``(N, D)``.
        guide: the proposal ``guide(x, **covariates)``; a VAE brings its own encoder. A guide that
            declares ``indices`` receives the positions of the chunk's rows in ``x``.
        covariates: data-aligned keyword arguments of model and guide (labels, a second
            modality), sliced with ``x`` chunk by chunk.
        plate: name of the data plate (``"data"`` by default).
        global_values: how to fix latent sites outside the data plate, which make ``log p(x_i)``
            exist only conditionally: ``"guide_median"`` or ``{site: value}``. Without it a
            program with global latents is refused. The result's ``conditioned_on`` says what
            was used.
        mask: boolean, ``x``'s shape, True where a value was observed (``x`` may hold NaN
            elsewhere): ``log p(x_obs,i)`` of the observed entries (:mod:`pyro_vae.program.missing`).
        num_particles: importance samples ``S`` per point, 1,000 by default; with ``method="ais"``,
            AIS chains per point, 16 by default (:data:`DEFAULT_DRAWS`). One chain costs
            ``ais_steps * (leapfrog_steps + 1)`` gradient evaluations of the model (5,500 at the
            defaults), so the default AIS call does about 88 times the network work of the default
            importance-sampling call. The result's ``mc_se`` says whether more chains are needed.
        max_memory_mb: rough bound on the memory of one chunk (points x particles), measured
            from the program itself; the default keeps chunks in cache, which is also fastest.
        seed: seeds the draws; the same seed and ``max_memory_mb`` give the same result.
        psis: also fit the Pareto shape ``k`` of each point's weights (ArviZ's ``psislw``); by
            default for importance sampling with more than one particle (one particle, exact for an
            enumerated sum, needs no fit), and for AIS with at least 10 chains.
        return_log_weights: keep the ``(N, S)`` log weights in the result.
        method: ``"importance"`` (importance sampling from the guide, the IWAE estimate) or
            ``"ais"``: annealed importance sampling with HMC (:mod:`pyro_vae.evaluate.ais`), whose slack
            shrinks as ``ais_steps`` grows whatever the guide's quality.
        ais_steps, leapfrog_steps, initial_step_size: AIS temperatures, leapfrog steps per HMC
            transition and the starting HMC step size (adapted per chain).
        ais_start: AIS starts from the ``"guide"`` ``q(z|x)`` or the ``"prior"`` ``p(z)``.

    Returns: a :class:`LogLikelihood`. With several observed sites, ``log_px`` estimates the
    joint ``log p(x_i)`` and ``per_site`` holds an estimate of each site's own marginal
    ``log p(x_i^{(k)})`` from the same draws (weights ``p(x^{(k)}|z) p(z) / q(z|x)``).

    Length: checks every argument (and loads ArviZ for the Pareto fit) before the memory guard takes its
    baseline, then importance sampling or AIS fills one result.
    """
    program = as_program(model, guide, plate=plate)
    draws = positive_int(DEFAULT_DRAWS.get(method, 1) if num_particles is None else num_particles, "num_particles")
    positive_number(max_memory_mb, "max_memory_mb")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}.")
    if psis is None:
        # One weight has no tail to fit (an enumerated sum is exact at one particle); 2 to 9 importance
        # weights are too few for the Pareto fit that says whether the estimate can be trusted.
        psis = draws > 1 if method == "importance" else draws >= 10
    if psis and draws < 10:
        raise ValueError("Pareto k needs at least 10 particles per point; raise num_particles or pass psis=False.")
    if psis:
        # The Pareto fit is ArviZ's: an unsupported version is refused before the work, and the
        # modules load (~100 MB, once per process) before the memory guard below takes its baseline.
        load_pareto()
    schedule = Schedule(ais_steps, leapfrog_steps, initial_step_size) if method == "ais" else None
    if method == "ais" and ais_start not in STARTS:
        raise ValueError(f"ais_start must be one of {STARTS}, got {ais_start!r}.")
    bound = bind(
        program,
        x,
        covariates=covariates,
        global_values=global_values,
        needs_guide=method == "importance" or ais_start == "guide",
        mask=mask,
    )
    program, data, sites, conditioned = bound.program, bound.data, bound.sites, bound.globals_used
    if method == "ais":
        return _ais(
            program,
            data,
            sites,
            draws,
            schedule,
            ais_start,
            seed,
            max_memory_mb,
            psis,
            return_log_weights,
            conditioned,
        )
    points, particles = plan_chunks(program, data, sites, draws, max_memory_mb)
    # Freed memory goes back to the system once the heap has grown by 2 x max_memory_mb + 64 MB
    # (glibc's per-thread arenas otherwise keep it), so that with one chunk's own working memory on
    # top a call stays within its stated bound of 4 x max_memory_mb + 128 MB.
    memory = HeapGuard(allowance_mb=2 * max_memory_mb + 64)
    log_px, elbo, mc_se, khat, kept, gains = [], [], [], [], [], []
    per_site: dict[str, list[torch.Tensor]] = {name: [] for name in sites.observed} if len(sites.observed) > 1 else {}
    per_site_k: dict[str, list[torch.Tensor]] = {name: [] for name in per_site} if psis else {}
    # The data was checked above and every z comes from the guide itself, so Pyro's per-site
    # argument checks are switched off in the inner loop, where they cost ~10% of the time.
    with torch.no_grad(), isolated(seed), pyro.validation_enabled(False):
        for start in range(0, len(data), points):
            indices = torch.arange(start, min(start + points, len(data)))
            parts = [
                point_weights(
                    program,
                    data.rows(indices),
                    min(particles, draws - done),
                    sites,
                    indices=indices,
                    num_data=len(data),
                )
                for done in range(0, draws, particles)
            ]
            lw = torch.cat([p.joint for p in parts]).T.double().cpu()  # (B, S); statistics on the CPU
            stats = _weight_statistics(lw)
            log_px.append(stats[0])
            elbo.append(stats[1] if not sites.enumerated else torch.cat([p.elbo for p in parts]).T.double().mean(1))
            mc_se.append(stats[2])
            gains.append(doubling_gain(lw))
            for name in per_site:
                own = torch.cat([p.per_site[name] for p in parts]).T.double().cpu()
                per_site[name].append(_weight_statistics(own)[0])
                if psis:
                    per_site_k[name].append(pareto_k(own))
            if psis:
                khat.append(pareto_k(lw))
            if return_log_weights:
                kept.append(lw.to(data.x.dtype if data.x.is_floating_point() else torch.get_default_dtype()))
            del parts
            memory.check()  # after the chunk's work, when its temporaries are freed
    khat_all = torch.cat(khat) if psis else None
    program.warn_if_guide_ignores_mask(data, khat_all, "log_likelihood")
    return LogLikelihood(
        log_px=torch.cat(log_px),
        elbo=torch.cat(elbo),
        mc_se=torch.cat(mc_se),
        pareto_k=khat_all,
        log_weights=torch.cat(kept) if return_log_weights else None,
        num_particles=draws,
        likelihood=describe_observed(program, data, sites),
        is_discrete=all(sites.discrete.values()),
        num_features=sum(int(math.prod(sites.event_shapes[k])) or 1 for k in sites.observed),
        per_site={k: torch.cat(v) for k, v in per_site.items()} or None,
        per_site_pareto_k={k: torch.cat(v) for k, v in per_site_k.items()} or None,
        conditioned_on=conditioned,
        doubling_gain=torch.cat(gains),
    )


def _ais(
    program, data, sites, chains, schedule, start, seed, max_memory_mb, psis, return_log_weights, conditioned
) -> LogLikelihood:
    lw, acceptance = ais_log_weights(
        program, data, sites, chains=chains, schedule=schedule, start=start, seed=seed, max_memory_mb=max_memory_mb
    )
    log_px, mean_log_w, mc_se = _weight_statistics(lw)
    return LogLikelihood(
        log_px=log_px,
        elbo=mean_log_w,
        mc_se=mc_se,
        pareto_k=pareto_k(lw) if psis else None,
        log_weights=lw.to(torch.get_default_dtype()) if return_log_weights else None,
        num_particles=chains,
        likelihood=describe_observed(program, data, sites),
        is_discrete=all(sites.discrete.values()),
        num_features=sum(int(math.prod(sites.event_shapes[k])) or 1 for k in sites.observed),
        conditioned_on=conditioned,
        estimator=schedule.describe(start),
        acceptance=acceptance,
        doubling_gain=doubling_gain(lw),
    )


def describe_observed(program: Program, data: Data, sites: Sites) -> str:
    """The program's name, or its observed sites and their distributions: ``"x: Bernoulli"``."""
    if program.name:
        return program.name
    with torch.no_grad(), torch.random.fork_rng(devices=[]), pyro.validation_enabled(False):
        _, trace = program.traces(
            data.rows(slice(0, 1)), None, indices=torch.arange(1), num_data=len(data), sites=sites
        )
    return ", ".join(f"{k}: {_distribution_name(trace.nodes[k]['fn'])}" for k in sites.observed)


def _distribution_name(fn) -> str:
    while hasattr(fn, "base_dist") and type(fn).__name__ in ("Independent", "ExpandedDistribution"):
        fn = fn.base_dist
    return type(fn).__name__


def pareto_k(log_weights: torch.Tensor) -> torch.Tensor:
    """Pareto shape ``k`` of each row's importance weights, via ArviZ's PSIS (``psislw``).

    ``log_weights`` has shape ``(N, S)``; returns shape ``(N,)``. Vehtari et al. (2024, JMLR
    25:72) read ``k < 0.5`` as reliable, ``0.5 <= k <= 0.7`` as usable with slow convergence, and
    ``k > 0.7`` as an estimate that cannot be trusted at practical sample sizes.
    """
    if log_weights.ndim != 2 or log_weights.shape[1] < 10:
        raise ValueError(f"log_weights must have shape (N, S) with S >= 10, got {tuple(log_weights.shape)}.")
    values = log_weights.detach().double().numpy()
    # A copy in torch's own memory: results kept across chunks that wrap NumPy's allocations pin
    # freed heap (the resident size grew by ~7 MB per chunk of 4 x 1,000 draws).
    k = torch.tensor(psis_pareto_k(values))
    # Weights equal up to rounding (an exact guide) are bounded, the best case; a Pareto fit to
    # rounding noise would be meaningless. Rounding of float32 log weights is ~1e-7 relative.
    spread = values.max(axis=1) - values.min(axis=1)
    constant = spread <= 1e-5 * np.maximum(1.0, np.abs(values).max(axis=1))
    k[torch.as_tensor(constant)] = -math.inf
    return k


def doubling_gain(lw: torch.Tensor) -> torch.Tensor:
    """``log p-hat(S) - log p-hat(S/2)`` per row of ``(B, S)``: what the last doubling of the draws added,
    with the half-size estimate averaged over both halves."""
    num = lw.shape[1]
    if num < 2:
        return torch.full(lw.shape[:1], math.inf, dtype=torch.float64)
    half = num // 2
    full = log_mean_exp(lw, dim=1)
    halves = (torch.logsumexp(lw[:, :half], dim=1) + torch.logsumexp(lw[:, half : 2 * half], dim=1)) / 2 - math.log(
        half
    )
    return (full - halves).double()


def _weight_statistics(lw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """IWAE estimate, mean log weight and the delta-method error of the former, per row of ``(B, S)``."""
    num = lw.shape[1]
    log_mean = log_mean_exp(lw, dim=1)
    # Var(mean w) / (mean w)^2 = var(w) / (S mean(w)^2), with w rescaled by exp(-log_mean).
    ratio = (lw - log_mean[:, None]).exp()
    rel_var = ratio.var(dim=1, correction=1) / num if num > 1 else torch.full_like(log_mean, math.inf)
    return log_mean, lw.mean(dim=1), rel_var.sqrt()

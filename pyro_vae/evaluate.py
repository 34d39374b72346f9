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

The weights come from genuine Pyro traces: the guide runs under a ``"particles"`` plate, the model
is replayed against it, and each site's ``log_prob`` keeps the ``(particles, data)`` shape, so
nothing is summed over data points. Work is split into chunks of (points x particles) whose
activations stay near ``max_memory_mb``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyro
import torch
from pyro import poutine
from pyro.poutine.util import site_is_subsample

from ._checks import positive_int
from ._isolation import isolated
from .model import VAE

#: Tensors of the decoder's output size alive at once per draw of ``z``: the raw output, the
#: log-density terms and the temporaries of the likelihood's ``log_prob``. Measured, see
#: ``experiments/benchmarks/log_likelihood.py``.
_OUTPUT_COPIES = 6
#: Tensors of each hidden layer's size alive at once per draw (pre- and post-activation).
_HIDDEN_COPIES = 2


@dataclass(frozen=True)
class LogLikelihood:
    """Per-point importance-weighted estimates for ``N`` data points.

    Attributes:
        log_px: ``log p(x_i)`` estimates, shape ``(N,)``, float64.
        elbo: per-point ELBO estimates (mean log weight), shape ``(N,)``, float64.
        mc_se: Monte Carlo standard error of each ``log_px`` (delta method), shape ``(N,)``;
            unreliable where ``pareto_k`` exceeds 0.7.
        pareto_k: Pareto shape ``k`` of each point's importance weights (PSIS), shape ``(N,)``,
            or ``None`` when not computed.
        log_weights: the ``(N, S)`` log weights, kept only on request.
        num_particles: ``S``.
        likelihood: name of the model's likelihood.
        is_discrete: whether that likelihood is a mass function (``log_px`` in log-probability
            units) rather than a density. Densities with ``num_levels`` count as mass functions:
            their estimate is the dequantised log-probability of the levels.
        num_features: ``D``, the values per point, for :attr:`bits_per_dim`.
    """

    log_px: torch.Tensor
    elbo: torch.Tensor
    mc_se: torch.Tensor
    pareto_k: torch.Tensor | None
    log_weights: torch.Tensor | None
    num_particles: int
    likelihood: str
    is_discrete: bool
    num_features: int | None = None

    @property
    def num_points(self) -> int:
        return self.log_px.shape[0]

    @property
    def total(self) -> float:
        """``sum_i log p(x_i)``: the held-out expected log predictive density (elpd)."""
        return float(self.log_px.sum())

    @property
    def se(self) -> float:
        """Standard error of :attr:`total` over data points, ``sqrt(N var_i log p(x_i))``."""
        return _sum_se(self.log_px)

    @property
    def mean(self) -> float:
        """Average ``log p(x_i)`` per point; ``-mean`` is the negative log-likelihood in nats."""
        return float(self.log_px.mean())

    @property
    def mean_se(self) -> float:
        """Standard error of :attr:`mean` over data points."""
        return self.se / self.num_points

    @property
    def total_mc_se(self) -> float:
        """Monte Carlo error of :attr:`total`, ``sqrt(sum_i mc_se_i^2)`` (draws are independent)."""
        return float(self.mc_se.pow(2).sum().sqrt())

    @property
    def bits_per_dim(self) -> float:
        """Negative log-likelihood per value in bits, ``-mean / (D ln 2)``.

        For a mass function this is the average code length per pixel; for a density it depends
        on the units of ``x`` (and can be negative).
        """
        if not self.num_features:
            raise ValueError("bits_per_dim needs num_features, the number of values per point.")
        return -self.mean / (self.num_features * math.log(2))

    def share_k_above(self, threshold: float = 0.7) -> float:
        """Share of points whose Pareto ``k`` exceeds ``threshold``."""
        if self.pareto_k is None:
            raise ValueError("Pareto k was not computed; call log_likelihood(..., psis=True).")
        return float((self.pareto_k > threshold).double().mean())

    def summary(self) -> dict[str, float | int | str | bool]:
        """Headline numbers as a JSON-serialisable dict (per-point means in nats)."""
        out = {
            "num_points": self.num_points,
            "num_particles": self.num_particles,
            "likelihood": self.likelihood,
            "is_discrete": self.is_discrete,
            "nll": -self.mean,
            "nll_se": self.mean_se,
            "nll_mc_se": self.total_mc_se / self.num_points,
            **({"bits_per_dim": self.bits_per_dim, "bits_per_dim_se": self.mean_se / (self.num_features * math.log(2))}
               if self.num_features else {}),  # fmt: skip
            "elbo": float(self.elbo.mean()),
            "elbo_se": _sum_se(self.elbo) / self.num_points,
        }
        if self.pareto_k is not None:
            out["share_k_above_0.7"] = self.share_k_above(0.7)
        return out


def log_likelihood(
    vae: VAE,
    x: torch.Tensor,
    *,
    num_particles: int = 1000,
    max_memory_mb: float = 64.0,
    seed: int = 0,
    psis: bool = True,
    return_log_weights: bool = False,
    guide: Callable | None = None,
) -> LogLikelihood:
    """Importance-weighted ``log p(x_i)`` and ELBO for every row of ``x``.

    Args:
        vae: a trained model.
        x: data of shape ``(N, D)`` (or ``(N, *image_shape)``), in the likelihood's support.
        num_particles: importance samples ``S`` per point.
        max_memory_mb: rough bound on the activations of one chunk (points x particles); the
            default keeps chunks small enough to stay in cache, which is also fastest on CPU.
        seed: seeds the draws of ``z``; the same seed and ``max_memory_mb`` give the same result.
        psis: also fit the Pareto shape ``k`` of each point's weights (ArviZ's ``psislw``).
        return_log_weights: keep the ``(N, S)`` log weights in the result.
        guide: a proposal with the signature of :meth:`VAE.guide` plus an ``indices`` keyword
            (positions of the chunk's rows in ``x``); defaults to the encoder's ``q(z|x)``.

    Returns: a :class:`LogLikelihood`.
    """
    x = vae.check_data(x)
    positive_int(num_particles, "num_particles")
    if not (isinstance(max_memory_mb, (int, float)) and max_memory_mb > 0):
        raise ValueError(f"max_memory_mb must be a positive number, got {max_memory_mb!r}.")
    if psis and num_particles < 10:
        raise ValueError("Pareto k needs at least 10 particles per point; raise num_particles or pass psis=False.")
    points, particles = chunk_plan(vae, num_particles, max_memory_mb)
    memory = _HeapGuard(allowance_mb=4 * max_memory_mb + 128)
    log_px, elbo, mc_se, khat, kept = [], [], [], [], []
    # The data was checked above and every z comes from the guide itself, so Pyro's per-site
    # argument checks are switched off in the inner loop, where they cost ~10% of the time.
    with torch.no_grad(), isolated(seed), pyro.validation_enabled(False):
        for start in range(0, len(x), points):
            indices = torch.arange(start, min(start + points, len(x)))
            lw = torch.cat(
                [
                    log_weights(vae, x[indices], min(particles, num_particles - done), guide=guide, indices=indices)
                    for done in range(0, num_particles, particles)
                ],
                dim=0,
            ).T.double().cpu()  # (B, S); statistics on the CPU whatever the model's device
            memory.check()
            stats = _weight_statistics(lw)
            log_px.append(stats[0])
            elbo.append(stats[1])
            mc_se.append(stats[2])
            if psis:
                khat.append(pareto_k(lw))
            if return_log_weights:
                kept.append(lw.to(x.dtype))
    return LogLikelihood(
        log_px=torch.cat(log_px),
        elbo=torch.cat(elbo),
        mc_se=torch.cat(mc_se),
        pareto_k=torch.cat(khat) if psis else None,
        log_weights=torch.cat(kept) if return_log_weights else None,
        num_particles=num_particles,
        likelihood=vae.likelihood.name,
        is_discrete=vae.likelihood.is_discrete,
        num_features=vae.input_dim,
    )


def log_weights(
    vae: VAE,
    x: torch.Tensor,
    num_particles: int,
    *,
    guide: Callable | None = None,
    indices: torch.Tensor | None = None,
) -> torch.Tensor:
    """Log importance weights ``log p(x, z_s) - log q(z_s|x)`` of shape ``(num_particles, B)``.

    ``x`` has shape ``(B, D)`` and has been checked. Draws use torch's global generator, so call
    this inside a seeded block.
    """

    def particles(fn):
        def vectorised(*args, **kwargs):
            with pyro.plate("particles", num_particles, dim=-2):
                return fn(*args, **kwargs)

        return vectorised

    guide = guide or vae.guide
    guide_kwargs = {"indices": indices} if indices is not None and guide is not vae.guide else {}
    guide_trace = poutine.trace(particles(guide)).get_trace(x, **guide_kwargs)
    model_trace = poutine.trace(poutine.replay(particles(vae.model), trace=guide_trace)).get_trace(x)
    expected = (num_particles, x.shape[0])
    total = torch.zeros(expected, dtype=x.dtype, device=x.device)
    for sign, trace in ((1.0, model_trace), (-1.0, guide_trace)):
        for name, site in trace.nodes.items():
            if site["type"] != "sample" or site_is_subsample(site):
                continue
            log_prob = site["fn"].log_prob(site["value"])
            if log_prob.shape != expected:
                raise ValueError(
                    f"Site {name!r} has log_prob of shape {tuple(log_prob.shape)}; importance weights "
                    f"need every sample site inside the data plate, shape {expected}."
                )
            total = total + sign * log_prob
    return total


def pareto_k(log_weights: torch.Tensor) -> torch.Tensor:
    """Pareto shape ``k`` of each row's importance weights, via ArviZ's PSIS (``az.psislw``).

    ``log_weights`` has shape ``(N, S)``; returns shape ``(N,)``. Vehtari et al. (2024, JMLR
    25:72) read ``k < 0.5`` as reliable, ``0.5 <= k <= 0.7`` as usable with slow convergence, and
    ``k > 0.7`` as an estimate that cannot be trusted at practical sample sizes.
    """
    if log_weights.ndim != 2 or log_weights.shape[1] < 10:
        raise ValueError(f"log_weights must have shape (N, S) with S >= 10, got {tuple(log_weights.shape)}.")
    values = log_weights.detach().double().numpy()
    _, k = arviz().psislw(values.copy(), reff=1.0)
    k = torch.as_tensor(np.asarray(k, dtype=np.float64))
    # Weights equal up to rounding (an exact guide) are bounded, the best case; a Pareto fit to
    # rounding noise would be meaningless. Rounding of float32 log weights is ~1e-7 relative.
    spread = values.max(axis=1) - values.min(axis=1)
    constant = spread <= 1e-5 * np.maximum(1.0, np.abs(values).max(axis=1))
    k[torch.as_tensor(constant)] = -math.inf
    return k


def arviz():
    """Import ArviZ without its import-time notice about a future refactor."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        import arviz as az
    return az


def chunk_plan(vae: VAE, num_particles: int, max_memory_mb: float) -> tuple[int, int]:
    """``(points, particles)`` per chunk so one chunk's activations stay near ``max_memory_mb``."""
    draws = max(1, int(max_memory_mb * 2**20 // _bytes_per_draw(vae)))
    if draws >= num_particles:
        return draws // num_particles, num_particles
    return 1, draws


def _bytes_per_draw(vae: VAE) -> int:
    """Estimated bytes of activations per draw of ``z`` in the model's forward pass."""
    widths = [m.out_features for m in vae.decoder.modules() if isinstance(m, torch.nn.Linear)]
    output = vae.input_dim * vae.likelihood.params_per_feature
    hidden = sum(widths[:-1]) if widths else output
    floats = _OUTPUT_COPIES * max(output, vae.input_dim) + _HIDDEN_COPIES * hidden + 6 * vae.latent_dim
    return floats * torch.finfo(torch.get_default_dtype()).bits // 8


class _HeapGuard:
    """Return freed heap memory to the system when the process has grown past an allowance.

    With several threads, glibc's allocator can keep the memory of freed chunks in per-thread
    arenas instead of reusing it, so the resident size of a long evaluation creeps upwards (by
    gigabytes over 1,000 Fashion-MNIST images) although each chunk stays within its budget.
    ``malloc_trim`` hands it back. Trimming after every chunk would cost ~70% more time through
    fresh page faults, so it runs only when the growth exceeds ``allowance_mb``. Elsewhere than
    Linux with glibc this does nothing.
    """

    def __init__(self, allowance_mb: float):
        self.allowance = allowance_mb * 2**20
        self.trim = _malloc_trim()
        self.start = _resident_bytes() if self.trim else 0

    def check(self) -> None:
        if self.trim and _resident_bytes() - self.start > self.allowance:
            self.trim(0)


def _malloc_trim():
    try:
        import ctypes

        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def _resident_bytes() -> int:
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _weight_statistics(lw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """IWAE estimate, mean log weight and the delta-method error of the former, per row of ``(B, S)``."""
    num = lw.shape[1]
    log_mean = torch.logsumexp(lw, dim=1) - math.log(num)
    # Var(mean w) / (mean w)^2 = var(w) / (S mean(w)^2), with w rescaled by exp(-log_mean).
    ratio = (lw - log_mean[:, None]).exp()
    rel_var = ratio.var(dim=1, correction=1) / num if num > 1 else torch.full_like(log_mean, math.inf)
    return log_mean, lw.mean(dim=1), rel_var.sqrt()


def _sum_se(values: torch.Tensor) -> float:
    n = values.shape[0]
    return float(math.sqrt(n * values.double().var(correction=0))) if n > 1 else math.nan


"""Predictive utilities over a trained :class:`~pyro_vae.VAE`, vectorised over samples.

* :func:`prior_predictive` -- ``z ~ p(z)``, ``x ~ p(x|z)``;
* :func:`posterior_predictive` -- ``z ~ q(z|x)`` (amortized), ``x ~ p(x|z)``;
* :func:`reconstruct` -- ``E[x | z = E_q[z|x]]``;
* :class:`AggregatePosterior` -- the exact mixture ``q(z) = (1/N) sum_i q(z|x_i)``.

Each returns likelihood samples *and* likelihood means: a Bernoulli sample is pixel noise, its
mean is the picture.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.infer import Predictive

from ._checks import positive_int
from ._isolation import isolated
from .model import VAE

_SITES = ("z", "x", "_RETURN")


@dataclass(frozen=True)
class PredictiveSamples:
    """Draws from a predictive distribution.

    Attributes:
        z: latent draws, shape ``(*sample_shape, L)``.
        x: likelihood draws ``x ~ p(x|z)``, shape ``(*sample_shape, D)``.
        mean: likelihood means ``E[x|z]``, shape ``(*sample_shape, D)``.
    """

    z: torch.Tensor
    x: torch.Tensor
    mean: torch.Tensor


@torch.no_grad()
def prior_predictive(vae: VAE, num_samples: int, *, seed: int = 0) -> PredictiveSamples:
    """Draw ``z ~ p(z)`` and ``x ~ p(x|z)``.

    Returns: :class:`PredictiveSamples` with ``z`` of shape ``(num_samples, L)`` and ``x``,
    ``mean`` of shape ``(num_samples, D)``.
    """
    positive_int(num_samples, "num_samples")
    predictive = Predictive(vae.model, num_samples=num_samples, return_sites=_SITES, parallel=True)
    with isolated(seed):
        out = predictive(None, num_data=1)
    return _collect(vae, out, squeeze_dim=1)


@torch.no_grad()
def posterior_predictive(vae: VAE, x: torch.Tensor, num_samples: int, *, seed: int = 0) -> PredictiveSamples:
    """Draw ``z ~ q(z|x_i)`` from the encoder and ``x' ~ p(x|z)`` for every data point.

    Returns: :class:`PredictiveSamples` with ``z`` of shape ``(num_samples, N, L)`` and ``x``,
    ``mean`` of shape ``(num_samples, N, D)``.
    """
    positive_int(num_samples, "num_samples")
    x = vae.check_data(x)
    predictive = Predictive(
        poutine.uncondition(vae.model), guide=vae.guide, num_samples=num_samples,
        return_sites=_SITES, parallel=True,
    )  # fmt: skip
    with isolated(seed):
        out = predictive(x)
    return _collect(vae, out, squeeze_dim=None)


@torch.no_grad()
def reconstruct(vae: VAE, x: torch.Tensor) -> torch.Tensor:
    """Deterministic reconstruction ``E[x | z = E_q[z|x]]``, shape ``(N, D)``."""
    x = vae.check_data(x)
    loc, _ = vae.encode(x)
    return vae.decode_mean(loc)


class AggregatePosterior:
    """The aggregate posterior ``q(z) = (1/N) sum_i N(z; mu_i, diag(sigma_i^2))``.

    An exact ``N``-component mixture: it stores ``loc`` and ``scale`` of shape ``(N, L)``
    (``2 N L`` numbers), and evaluates ``log q(z)`` in chunks so that no intermediate exceeds
    ``max_memory_mb``.
    """

    def __init__(self, loc: torch.Tensor, scale: torch.Tensor):
        if loc.ndim != 2 or loc.shape != scale.shape or loc.shape[0] == 0:
            raise ValueError(
                f"loc and scale must share a shape (N, L) with N >= 1; got {tuple(loc.shape)} "
                f"and {tuple(scale.shape)}."
            )
        if not bool((scale > 0).all()):
            raise ValueError("Every component scale must be positive.")
        self.loc = loc.detach()
        self.scale = scale.detach()

    @classmethod
    @torch.no_grad()
    def from_data(cls, vae: VAE, x: torch.Tensor, *, batch_size: int = 4096) -> "AggregatePosterior":
        """Encode every row of ``x`` (shape ``(N, D)``) and keep the ``N`` Gaussians ``q(z|x_i)``."""
        x = vae.check_data(x)
        parts = [vae.encode(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]
        return cls(torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]))

    @property
    def num_components(self) -> int:
        return self.loc.shape[0]

    @property
    def latent_dim(self) -> int:
        return self.loc.shape[1]

    @property
    def memory_bytes(self) -> int:
        """Bytes held by the component parameters (``O(N L)``)."""
        return self.loc.element_size() * self.loc.numel() * 2

    def sample(self, num_samples: int, *, seed: int = 0) -> torch.Tensor:
        """Draws of shape ``(num_samples, L)``: a uniform component, then its Gaussian."""
        positive_int(num_samples, "num_samples")
        generator = torch.Generator().manual_seed(seed)
        which = torch.randint(self.num_components, (num_samples,), generator=generator)
        noise = torch.randn(num_samples, self.latent_dim, generator=generator, dtype=self.loc.dtype)
        return self.loc[which] + self.scale[which] * noise

    def log_prob(self, z: torch.Tensor, *, max_memory_mb: float = 256.0) -> torch.Tensor:
        """``log q(z)`` for ``z`` of shape ``(M, L)``; returns shape ``(M,)``.

        Uses ``sum_l (z_l - mu_il)^2 / s_il^2 = z^2 . (1/s^2)_i - 2 z . (mu/s^2)_i + sum mu^2/s^2``
        as matrix products in float64, so memory is ``O(chunk * N)`` rather than ``O(M N L)``.
        """
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"z must have shape (M, {self.latent_dim}), got {tuple(z.shape)}.")
        loc, scale = self.loc.double(), self.scale.double()
        precision = scale.pow(-2)  # (N, L)
        weighted_loc = loc * precision
        constant = (loc * weighted_loc).sum(-1) + 2 * scale.log().sum(-1)  # (N,)
        constant = constant + self.latent_dim * math.log(2 * math.pi)
        chunk = max(1, int(max_memory_mb * 2**20 / (8 * 3 * self.num_components)))
        out = []
        for start in range(0, z.shape[0], chunk):
            zc = z[start : start + chunk].double()
            quad = (zc * zc) @ precision.T - 2 * zc @ weighted_loc.T + constant  # (m, N)
            out.append(torch.logsumexp(-0.5 * quad, dim=-1) - math.log(self.num_components))
        return torch.cat(out).to(z.dtype)

    def to_distribution(self) -> dist.MixtureSameFamily:
        """The same mixture as a :class:`pyro.distributions.MixtureSameFamily` (``O(M N L)`` memory)."""
        mixing = dist.Categorical(logits=torch.zeros(self.num_components, dtype=self.loc.dtype))
        return dist.MixtureSameFamily(mixing, dist.Normal(self.loc, self.scale).to_event(1))


def _collect(vae: VAE, out: dict, squeeze_dim: int | None) -> PredictiveSamples:
    z, x, raw = out["z"], out["x"], out["_RETURN"]
    if squeeze_dim is not None:
        z, x, raw = z.squeeze(squeeze_dim), x.squeeze(squeeze_dim), raw.squeeze(squeeze_dim)
    return PredictiveSamples(z=z, x=x, mean=vae.likelihood.mean(raw))

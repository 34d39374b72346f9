"""Distributions over the latent codes, and drawing from them through the model.

* :mod:`~pyro_vae.latent.aggregate` -- the aggregate posterior ``(1/N) sum_i q(z|x_i)`` and the sources
  that :func:`sample` draws from;
* :mod:`~pyro_vae.latent.mixture` -- :class:`LatentMixture`, a Gaussian mixture fitted to the codes;
* :mod:`~pyro_vae.latent.predictive` -- prior and posterior predictive draws, reconstructions;
* :mod:`~pyro_vae.latent.sampling` -- :func:`sample` from any source, :func:`decode`."""

from .aggregate import AggregatePosterior
from .mixture import LatentMixture
from .predictive import (
    PredictiveSamples,
    get_latent,
    latent_means,
    posterior_predictive,
    prior_predictive,
    reconstruct,
)
from .priors import RowDistribution, conditional_prior, prior_of
from .sampling import decode, sample
from .sources import SOURCES

__all__ = [
    "AggregatePosterior",
    "conditional_prior",
    "decode",
    "get_latent",
    "latent_means",
    "LatentMixture",
    "posterior_predictive",
    "PredictiveSamples",
    "prior_of",
    "prior_predictive",
    "reconstruct",
    "RowDistribution",
    "sample",
    "SOURCES",
]

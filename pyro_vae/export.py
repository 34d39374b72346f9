"""Export a trained VAE and data to ArviZ's :class:`arviz.InferenceData`.

Groups and their variables (``S`` draws, ``N`` points, ``L`` latent and ``D`` observed dimensions)::

    posterior              z  (chain, draw, obs, latent)     z ~ q(z|x_i), the amortized posterior
    posterior_predictive   x  (chain, draw, obs, feature)    x' ~ p(x|z), z from the posterior
    log_likelihood         x  (chain, draw, obs)             log p(x_i | z), z from the posterior
    prior                  z  (chain, draw, obs, latent)     z ~ p(z), one per observation
    prior_predictive       x  (chain, draw, obs, feature)    x' ~ p(x|z), z from the prior
    observed_data          x  (obs, feature)

The ``log_likelihood`` group holds ``log p(x_i | z_s)`` for posterior draws, the quantity ArviZ
expects there. It is *not* ``log p(x_i)``: each ``z`` is a local latent of its own point, so for
held-out ``log p(x)`` use :func:`pyro_vae.log_likelihood` and :func:`pyro_vae.compare`.
"""

from __future__ import annotations

import json

import numpy as np
import pyro
import torch

from ._checks import positive_int
from . import __version__
from .evaluate import arviz
from .model import VAE
from .predictive import posterior_predictive, prior_predictive


def to_inference_data(
    vae: VAE,
    x: torch.Tensor,
    *,
    num_samples: int = 100,
    num_chains: int = 1,
    seed: int = 0,
    obs_coords: np.ndarray | list | None = None,
    max_values: int = 50_000_000,
):
    """Draws from the amortized posterior and the prior, with their predictive distributions.

    Args:
        vae: a trained model.
        x: observed data, shape ``(N, D)`` or ``(N, *image_shape)``.
        num_samples: draws per chain.
        num_chains: independent chains; the draws are independent anyway, chains only shape them.
        seed: seeds all draws.
        obs_coords: labels for the ``obs`` dimension (default ``0..N-1``).
        max_values: refuse to build groups with more numbers than this (each predictive group holds
            ``chains * draws * N * D`` of them); raise it deliberately for large exports.

    Returns: an :class:`arviz.InferenceData` with the groups listed in the module docstring; its
    attrs record the inference library (Pyro), pyro_vae's version, the likelihood and the model's
    configuration as JSON.
    """
    az = arviz()
    x = vae.check_data(x)
    for value, name in ((num_samples, "num_samples"), (num_chains, "num_chains")):
        positive_int(value, name)
    n, d = x.shape
    draws = num_samples * num_chains
    if draws * n * d > max_values:
        raise ValueError(
            f"The predictive groups would hold {draws * n * d:,} numbers (draws x points x features), "
            f"more than max_values={max_values:,}; pass fewer points or draws, or raise max_values."
        )
    if obs_coords is None:
        obs_coords = np.arange(n)
    elif len(obs_coords) != n:
        raise ValueError(f"obs_coords has {len(obs_coords)} labels for {n} observations.")

    posterior = posterior_predictive(vae, x, draws, seed=seed)
    with torch.no_grad():
        log_lik = vae.likelihood(vae.decoder(posterior.z)).log_prob(x)  # (S, N)
    prior = prior_predictive(vae, draws * n, seed=seed + 1)

    def shaped(tensor: torch.Tensor) -> np.ndarray:
        # (chains * draws, N, ...) -> (chain, draw, obs, ...)
        return tensor.reshape(num_chains, num_samples, n, *tensor.shape[2:]).detach().cpu().numpy()

    coords = {"obs": np.asarray(obs_coords), "latent": np.arange(vae.latent_dim), "feature": np.arange(d)}
    attrs = {"pyro_vae_version": __version__, "likelihood": vae.likelihood.name,
             "model_config": json.dumps(vae.config())}  # fmt: skip

    def group(values: dict, dims: dict, sampled: bool = True):
        return az.dict_to_dataset(values, attrs=attrs, library=pyro, coords=coords, dims=dims,
                                  default_dims=None if sampled else [])  # fmt: skip

    z_dims, x_dims = {"z": ["obs", "latent"]}, {"x": ["obs", "feature"]}
    return az.InferenceData(
        posterior=group({"z": shaped(posterior.z)}, z_dims),
        posterior_predictive=group({"x": shaped(posterior.x)}, x_dims),
        log_likelihood=group({"x": shaped(log_lik)}, {"x": ["obs"]}),
        prior=group({"z": shaped(prior.z.reshape(draws, n, -1))}, z_dims),
        prior_predictive=group({"x": shaped(prior.x.reshape(draws, n, -1))}, x_dims),
        observed_data=group({"x": x.detach().cpu().numpy()}, x_dims, sampled=False),
    )

"""The exact posterior of a VAE that is probabilistic PCA or factor analysis.

A :class:`~pyro_vae.VAE` with a linear decoder, a Gaussian likelihood with a learned or fixed
scale (one for all features or one per feature) and a standard normal prior
(:func:`~pyro_vae.vae.initialization.is_linear_gaussian`) is the model

.. math::

    z \\sim \\mathcal{N}(0, I), \\qquad x \\mid z \\sim \\mathcal{N}(W z + b, \\Psi),

whose posterior given the observed entries ``O`` of a row is Gaussian for every mask:
``z | x_O ~ N(M^{-1} W_O^T Psi_O^{-1} (x_O - b_O), M^{-1})`` with ``M = I + W_O^T Psi_O^{-1} W_O``
(:func:`~pyro_vae.distributions.linear_gaussian.latent_posterior`). The amortized encoder can only
approach it, and for rows with different missing entries it often stays far off; tools that
estimate the model's own conditionals (:func:`pyro_vae.impute`) draw from this posterior instead,
through :meth:`pyro_vae.VAE.exact_guide`, the ``exact_guide`` of
:meth:`pyro_vae.VAE.as_program`. Importance weights against it are constant,
so their estimates carry Monte Carlo error of the draws only. With ``standardize=True`` the model
holds for the standardised data, and the rows are standardised first.
"""

from __future__ import annotations

import pyro.distributions as dist
import torch

from ..distributions.linear_gaussian import latent_posterior
from .initialization import is_linear_gaussian, linear_decoder


def linear_gaussian_parameters(vae) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """``(b, W, psi)`` of ``vae`` as the linear-Gaussian model above, shapes ``(D,)``, ``(D, L)``,
    ``(D,)`` (float64, detached), or ``None`` when ``vae`` is not one: another decoder, likelihood or
    prior, or a model or guide other than the VAE's own (a subclass's, as in ``HierarchicalVAE``)."""
    if not (vae.computes_own_elbo and is_linear_gaussian(vae)):
        return None
    layer = linear_decoder(vae)
    assert layer is not None, "a linear-Gaussian VAE has a linear decoder"
    weights = layer.weight.detach().double()
    noise = vae.likelihood.scale.value(like=weights).detach().double().pow(2)
    return layer.bias.detach().double(), weights, noise.expand(weights.shape[0]).clone()


def exact_posterior(vae, x: torch.Tensor, mask: torch.Tensor | None = None) -> dist.MultivariateNormal:
    """``p(z | x_O)`` of each row of ``x`` (``(B, D)``, NaN allowed where ``mask`` is False) under a
    linear-Gaussian ``vae``: batch shape ``(B,)``, event shape ``(L,)``, in ``x``'s dtype."""
    parameters = linear_gaussian_parameters(vae)
    if parameters is None:
        raise ValueError(
            "exact_posterior needs a VAE that is probabilistic PCA or factor analysis (see pyro_vae.vae.exact)."
        )
    bias, weights, noise = parameters
    values = x.double()
    if vae.standardize:
        values = (values - vae.data_loc.double()) / vae.data_scale.double()
    seen = torch.ones_like(values, dtype=torch.bool) if mask is None else mask.to(torch.bool)
    loc, cov = latent_posterior(values, seen, bias, weights, noise)
    cov = 0.5 * (cov + cov.transpose(-1, -2))  # symmetric to rounding, for the Cholesky factor
    return dist.MultivariateNormal(loc.to(x.dtype), scale_tril=torch.linalg.cholesky(cov).to(x.dtype))

"""Closed forms for probabilistic PCA, the linear-Gaussian VAE (Tipping & Bishop, 1999).

``z ~ N(0, I_L)``, ``x | z ~ N(W z + b, sigma^2 I_D)`` gives ``x ~ N(b, W W^T + sigma^2 I)`` and
``z | x ~ N(M^{-1} W^T (x - b), sigma^2 M^{-1})`` with ``M = W^T W + sigma^2 I``.
"""

import math

import torch
from torch import nn

import pyro_vae


def log_marginal(W, b, sigma, x):
    """Exact ``log p(x)`` per row, shape ``(N,)``."""
    cov = W @ W.T + sigma**2 * torch.eye(W.shape[0], dtype=W.dtype)
    return torch.distributions.MultivariateNormal(b, covariance_matrix=cov).log_prob(x)


def posterior(W, b, sigma, x):
    """Exact posterior mean ``(N, L)`` and covariance ``(L, L)``."""
    M = W.T @ W + sigma**2 * torch.eye(W.shape[1], dtype=W.dtype)
    Minv = torch.linalg.inv(M)
    return (x - b) @ W @ Minv.T, sigma**2 * Minv


def max_log_likelihood(x, latent_dim):
    """Maximum of the PPCA log-likelihood over (W, b, sigma), per data point."""
    n, d = x.shape
    centred = x - x.mean(0)
    eigvals = torch.linalg.eigvalsh(centred.T @ centred / n).flip(0)
    sigma2 = eigvals[latent_dim:].mean()
    log_det = eigvals[:latent_dim].log().sum() + (d - latent_dim) * sigma2.log()
    # At the optimum tr(C^{-1} S) = d.
    return -0.5 * (d * math.log(2 * math.pi) + log_det + d)


def linear_gaussian_vae(d, latent, sigma=None):
    """A VAE whose decoder is affine and likelihood Gaussian: probabilistic PCA."""
    kwargs = {"scale": sigma} if sigma is not None else {"scale": "learned", "init_scale": 1.0}
    return pyro_vae.VAE(d, latent, hidden_sizes=(), likelihood="normal", likelihood_kwargs=kwargs)


def decoder_params(vae):
    layer = vae.decoder.net[0]
    return layer.weight.detach(), layer.bias.detach(), float(vae.likelihood.scale.value().detach())


class ExactEncoder(nn.Module):
    """The exact posterior as a guide, valid when ``W^T W`` is diagonal (diagonal posterior)."""

    def __init__(self, W, b, sigma):
        super().__init__()
        self.W, self.b, self.sigma = W, b, sigma
        self.dummy = nn.Parameter(torch.zeros(()))  # pyro.module wants a parameter

    def forward(self, x):
        loc, cov = posterior(self.W, self.b, self.sigma, x)
        return loc + 0 * self.dummy, cov.diagonal().sqrt().expand_as(loc)


def simulate(n, d, latent, sigma, seed=0, orthogonal=True):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(d, latent, generator=g)
    if orthogonal:
        q, _ = torch.linalg.qr(W)
        W = q * torch.tensor([2.0, 1.0, 0.5][:latent])
    b = torch.randn(d, generator=g)
    z = torch.randn(n, latent, generator=g)
    x = z @ W.T + b + sigma * torch.randn(n, d, generator=g)
    return W, b, x


SIGMA = 0.5


class ScaledEncoder(nn.Module):
    """The exact posterior with its scale multiplied by ``factor`` and its mean shifted."""

    def __init__(self, W, b, factor=1.0, shift=0.0):
        super().__init__()
        self.exact = ExactEncoder(W, b, SIGMA)
        self.factor, self.shift = factor, shift

    def forward(self, x):
        loc, scale = self.exact(x)
        return loc + self.shift, scale * self.factor


def ppca_vae(W, b, encoder=None, sigma=SIGMA):
    """Probabilistic PCA with decoder weights ``W``, ``b`` and noise scale ``sigma``."""
    vae = pyro_vae.VAE(
        W.shape[0],
        W.shape[1],
        hidden_sizes=(),
        likelihood="normal",
        likelihood_kwargs={"scale": sigma},
        encoder=encoder,
    )
    with torch.no_grad():
        vae.decoder.net[0].weight.copy_(W)
        vae.decoder.net[0].bias.copy_(b)
    return vae

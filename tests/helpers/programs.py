"""Pyro programs written by hand (not built from VAE), with closed forms to check the tools against.

Linear-Gaussian models: ``h ~ N(0, I)``, ``obs | h, y ~ N(W h + V y + b, s^2 I)`` gives
``obs | y ~ N(V y + b, W W^T + s^2 I)`` and a Gaussian posterior, diagonal when ``W``'s columns
are orthogonal. Site names, plate names and sizes differ from the VAE's on purpose.
"""

import pyro
import pyro.distributions as dist
import torch

L, D, K = 3, 7, 4
SIGMA = 0.6


def orthogonal(d, latent, scales, seed):
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(d, latent, generator=g))
    return q * torch.tensor(scales[:latent])


def gaussian_posterior(W, sigma, centred):
    """Mean ``(N, L)`` and standard deviations ``(L,)`` of ``h | obs`` for ``obs - E[obs|h=0] = centred``."""
    M = W.T @ W + sigma**2 * torch.eye(W.shape[1])
    Minv = torch.linalg.inv(M)
    return centred @ W @ Minv.T, (sigma**2 * Minv).diagonal().sqrt()


def gaussian_marginal(cov_factor, sigma, mean, x):
    cov = cov_factor @ cov_factor.T + sigma**2 * torch.eye(cov_factor.shape[0])
    return torch.distributions.MultivariateNormal(mean, covariance_matrix=cov).log_prob(x)


class ConditionalLinear:
    """``obs | h, y ~ N(W h + V y + b, SIGMA^2 I)`` in the plate ``"points"``, covariate ``y`` of width K."""

    def __init__(self, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.W = orthogonal(D, L, [2.0, 1.0, 0.5], seed)
        self.V = torch.randn(D, K, generator=g)
        self.b = torch.randn(D, generator=g)

    def mean(self, y):
        return y @ self.V.T + self.b

    def model(self, x, y):
        with pyro.plate("points", x.shape[0]):
            h = pyro.sample("h", dist.Normal(torch.zeros(L), 1.0).to_event(1))
            pyro.sample("obs", dist.Normal(h @ self.W.T + self.mean(y), SIGMA).to_event(1), obs=x)

    def guide(self, x, y, factor=1.0, shift=0.0):
        loc, sd = gaussian_posterior(self.W, SIGMA, x - self.mean(y))
        with pyro.plate("points", x.shape[0]):
            pyro.sample("h", dist.Normal(loc + shift, sd * factor).to_event(1))

    def inexact_guide(self, x, y):
        self.guide(x, y, factor=1.5, shift=0.3)

    def log_marginal(self, x, y):
        return gaussian_marginal(self.W, SIGMA, self.mean(y), x).double()

    def simulate(self, n, seed=1):
        g = torch.Generator().manual_seed(seed)
        y = torch.nn.functional.one_hot(torch.randint(K, (n,), generator=g), K).float()
        h = torch.randn(n, L, generator=g)
        return h @ self.W.T + self.mean(y) + SIGMA * torch.randn(n, D, generator=g), y

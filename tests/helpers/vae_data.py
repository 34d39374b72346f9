"""Small VAEs of every registered part, and data in each likelihood's support, for tests that hold a
computation to Pyro's traced one."""

import torch

import pyro_vae

#: Constructor arguments the registered likelihoods need beyond their defaults.
LIKELIHOOD_KWARGS = {"binomial": {"total_count": 4}}
#: Every registered likelihood (test-only registrations left out).
LIKELIHOOD_NAMES = sorted(n for n in pyro_vae.LIKELIHOODS if not n.startswith("test_"))


def rows_in_support(vae, rows, seed=0, y=None):
    """``rows`` points in the likelihood's support: draws from it at a random decoder output."""
    torch.manual_seed(seed)
    with torch.no_grad():
        raw = vae.decode(torch.randn(rows, vae.latent_dim), y)
        size = torch.full((rows,), 20.0) if vae.likelihood.uses_size_factors else None
        return vae.likelihood(raw, size).sample()

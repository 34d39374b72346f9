"""Exact checks on probabilistic PCA, where log p(x) and p(z|x) are known in closed form."""

import pytest
import torch
from pyro.infer import Trace_ELBO

import pyro_vae
from helpers.ppca import ExactEncoder, decoder_params, linear_gaussian_vae, log_marginal, max_log_likelihood, simulate

D, L, SIGMA = 6, 2, 0.5


def elbo_per_point(vae, x, particles):
    loss = Trace_ELBO(num_particles=particles, vectorize_particles=True, max_plate_nesting=1)
    return -loss.loss(vae.model, vae.guide, x) / len(x)


def set_decoder(vae, W, b):
    with torch.no_grad():
        vae.decoder.net[0].weight.copy_(W)
        vae.decoder.net[0].bias.copy_(b)


def test_exact_posterior_guide_gives_elbo_equal_to_log_marginal():
    W, b, x = simulate(200, D, L, SIGMA)
    vae = pyro_vae.VAE(
        D,
        L,
        hidden_sizes=(),
        likelihood="normal",
        likelihood_kwargs={"scale": SIGMA},
        encoder=ExactEncoder(W, b, SIGMA),
    )
    set_decoder(vae, W, b)
    exact = log_marginal(W, b, SIGMA, x).mean().item()
    # With q(z|x) = p(z|x) the importance weight p(x,z)/q(z|x) equals p(x) for every z,
    # so even a few particles give the exact value up to float error.
    assert elbo_per_point(vae, x, particles=4) == pytest.approx(exact, abs=1e-3)


def test_elbo_sits_below_exact_log_marginal_for_an_inexact_guide():
    W, b, x = simulate(200, D, L, SIGMA)
    vae = linear_gaussian_vae(D, L, sigma=SIGMA)
    set_decoder(vae, W, b)
    exact = log_marginal(W, b, SIGMA, x).mean().item()
    torch.manual_seed(1)
    estimates = torch.tensor([elbo_per_point(vae, x, particles=50) for _ in range(5)])
    # The gap (an untrained encoder) is many standard errors wide.
    gap = exact - estimates.mean().item()
    assert gap > 10 * estimates.std().item() + 1e-3


def test_training_approaches_the_maximum_marginal_likelihood():
    W, b, x = simulate(1000, D, L, SIGMA, seed=3, orthogonal=False)
    target = max_log_likelihood(x, L).item()
    vae = linear_gaussian_vae(D, L)
    history = pyro_vae.fit(vae, x, epochs=60, batch_size=100, lr=2e-2, seed=0)
    W_fit, b_fit, sigma_fit = decoder_params(vae)
    achieved = log_marginal(W_fit, b_fit, sigma_fit, x).mean().item()
    assert achieved <= target + 1e-4  # nothing beats the maximum
    assert achieved == pytest.approx(target, abs=0.02)
    # A linear VAE's ELBO can reach the PPCA optimum (diagonal posterior after rotation).
    assert history.rows[-1]["train_elbo"] == pytest.approx(target, abs=0.1)

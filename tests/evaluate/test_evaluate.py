"""Importance-weighted log p(x) against the closed form of probabilistic PCA."""

import math

import pytest
import torch

import pyro_vae
from helpers.ppca import SIGMA, ExactEncoder, ScaledEncoder, log_marginal, ppca_vae, simulate
from pyro_vae.evaluate import chunk_plan, log_weights


@pytest.fixture(scope="module")
def ppca():
    W, b, x = simulate(200, 5, 2, SIGMA)
    return W, b, x, log_marginal(W, b, SIGMA, x).double()


def test_exact_guide_gives_exact_log_px_for_every_point(ppca):
    W, b, x, exact = ppca
    result = pyro_vae.log_likelihood(ppca_vae(W, b, ExactEncoder(W, b, SIGMA)), x, num_particles=20)
    # With q = p(z|x) every weight equals p(x): estimate and ELBO are exact up to float32 rounding.
    assert torch.allclose(result.log_px, exact, atol=1e-4)
    assert torch.allclose(result.elbo, exact, atol=1e-4)
    assert torch.all(result.pareto_k == -math.inf)  # constant weights are the best case
    assert result.share_k_above(0.7) == 0.0


def test_estimate_rises_towards_exact_value_and_stays_below_on_average(ppca):
    W, b, x, exact = ppca
    vae = ppca_vae(W, b, ScaledEncoder(W, b, factor=1.5, shift=0.3))
    gaps, errors = {}, {}
    for particles in (1, 10, 100, 1000):
        result = pyro_vae.log_likelihood(vae, x, num_particles=particles, psis=particles >= 10, seed=1)
        diff = result.log_px - exact
        gaps[particles] = float(diff.mean())
        errors[particles] = float(diff.std() / math.sqrt(len(diff)))
        # Never above on average: the mean difference is below zero by more than its error bar,
        # or indistinguishable from zero.
        assert gaps[particles] < 3 * float(diff.std() / math.sqrt(len(diff))) + 1e-4
    assert gaps[1] < gaps[10] < gaps[100] < gaps[1000] <= 0.0
    assert gaps[1] < -0.2  # a poor proposal: the ELBO is far off
    assert abs(gaps[1000]) < 0.01  # the stated tolerance at 1,000 particles
    # The per-point ELBO does not improve with particles: it estimates the same bound.
    elbo = pyro_vae.log_likelihood(vae, x, num_particles=1000, psis=False).elbo
    assert float((elbo - exact).mean()) == pytest.approx(gaps[1], abs=4 * errors[1])


def test_mc_se_describes_the_spread_of_repeated_estimates(ppca):
    W, b, x, _ = ppca
    vae = ppca_vae(W, b, ScaledEncoder(W, b, factor=1.3))
    runs = torch.stack(
        [pyro_vae.log_likelihood(vae, x[:50], num_particles=50, seed=s, psis=False).log_px for s in range(30)]
    )
    predicted = pyro_vae.log_likelihood(vae, x[:50], num_particles=50, psis=False).mc_se
    ratio = float(runs.std(0).mean() / predicted.mean())
    assert 0.7 < ratio < 1.3


def test_pareto_k_matches_the_gaussian_tail_index(ppca):
    # For a Gaussian target and a Gaussian proposal whose scale is f < 1 times the target's,
    # the weights have a Pareto tail with k = 1 - f^2.
    W, b, x, _ = ppca
    for factor in (0.6, 0.8):
        vae = ppca_vae(W, b, ScaledEncoder(W, b, factor=factor))
        k = pyro_vae.log_likelihood(vae, x, num_particles=2000).pareto_k
        assert float(k.median()) == pytest.approx(1 - factor**2, abs=0.08)
    wide = pyro_vae.log_likelihood(ppca_vae(W, b, ScaledEncoder(W, b, factor=1.3)), x, num_particles=1000)
    assert wide.share_k_above(0.5) < 0.05  # bounded weights


def test_seeded_reproducible_and_chunking_only_changes_the_draws(ppca):
    W, b, x, exact = ppca
    vae = ppca_vae(W, b, ScaledEncoder(W, b, factor=1.2))
    state = torch.get_rng_state()
    one = pyro_vae.log_likelihood(vae, x, num_particles=64, seed=3, return_log_weights=True)
    two = pyro_vae.log_likelihood(vae, x, num_particles=64, seed=3, return_log_weights=True)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(one.log_px, two.log_px) and torch.equal(one.log_weights, two.log_weights)
    assert one.log_weights.shape == (200, 64)
    # A tiny memory bound forces one point and a few particles per chunk.
    assert chunk_plan(vae, 64, 0.0001) == (1, 1)
    small = pyro_vae.log_likelihood(vae, x[:40], num_particles=64, seed=3, max_memory_mb=0.001)
    assert chunk_plan(vae, 64, 0.001)[1] < 64
    # Different draws of 64 particles: the estimates differ by Monte Carlo noise (~0.05 nats).
    assert float((small.log_px - one.log_px[:40]).abs().mean()) < 0.15
    assert not torch.equal(small.log_px, one.log_px[:40])


def test_heap_guard_trims_only_past_its_allowance(monkeypatch):
    from pyro_vae._util import memory as _memory

    calls = []
    guard = _memory.HeapGuard(allowance_mb=1.0)
    guard.trim, guard.start = calls.append, 0
    monkeypatch.setattr(_memory, "_resident_bytes", lambda: 512 * 1024)
    guard.check()
    assert calls == []
    monkeypatch.setattr(_memory, "_resident_bytes", lambda: 2 * 2**20)
    guard.check()
    assert calls == [0]


def test_log_weights_are_pyro_site_log_probs():
    vae = pyro_vae.VAE(6, 2, hidden_sizes=(8,))
    x = (torch.rand(5, 6) > 0.5).float()
    torch.manual_seed(0)
    lw = log_weights(vae, x, 7)
    assert lw.shape == (7, 5)
    torch.manual_seed(0)
    loc, scale = vae.encode(x)
    z = loc + scale * torch.randn(7, 5, 2)
    expected = (
        torch.distributions.Bernoulli(logits=vae.decoder(z)).log_prob(x).sum(-1)
        + torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
        - torch.distributions.Normal(loc, scale).log_prob(z).sum(-1)
    )
    assert torch.allclose(lw, expected.detach(), atol=1e-5)


def test_summary_and_bad_input(ppca):
    W, b, x, _ = ppca
    vae = ppca_vae(W, b, ScaledEncoder(W, b, factor=1.2))
    result = pyro_vae.log_likelihood(vae, x, num_particles=20)
    summary = result.summary()
    assert summary["nll"] == pytest.approx(-float(result.log_px.mean()))
    assert summary["nll_se"] == pytest.approx(float(result.log_px.std(correction=0)) / math.sqrt(200))
    assert result.total == pytest.approx(float(result.log_px.sum()))
    with pytest.raises(ValueError, match="num_particles"):
        pyro_vae.log_likelihood(vae, x, num_particles=0)
    with pytest.raises(ValueError, match="at least 10 particles"):
        pyro_vae.log_likelihood(vae, x, num_particles=5)
    with pytest.raises(ValueError, match="max_memory_mb"):
        pyro_vae.log_likelihood(vae, x, max_memory_mb=-1)
    with pytest.raises(ValueError, match="features"):
        pyro_vae.log_likelihood(vae, x[:, :3])
    with pytest.raises(ValueError, match="psis=True"):
        pyro_vae.log_likelihood(vae, x, num_particles=5, psis=False).share_k_above()

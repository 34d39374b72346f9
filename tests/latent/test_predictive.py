import pytest
import torch

import pyro_vae
from pyro_vae import AggregatePosterior

D, L = 10, 3


@pytest.fixture
def vae():
    return pyro_vae.VAE(D, L, hidden_sizes=(16,))


def data(n=6):
    return torch.bernoulli(torch.full((n, D), 0.4), generator=torch.Generator().manual_seed(0))


def test_prior_predictive_shapes_and_seeds(vae):
    global_state = torch.get_rng_state()
    a = pyro_vae.prior_predictive(vae, 7, seed=3)
    assert a.z.shape == (7, L) and a.x.shape == (7, D) and a.mean.shape == (7, D)
    assert set(a.x.unique().tolist()) <= {0.0, 1.0} and bool(((a.mean > 0) & (a.mean < 1)).all())
    b = pyro_vae.prior_predictive(vae, 7, seed=3)
    c = pyro_vae.prior_predictive(vae, 7, seed=4)
    assert torch.equal(a.z, b.z) and torch.equal(a.x, b.x)
    assert not torch.equal(a.z, c.z)
    assert torch.equal(torch.get_rng_state(), global_state)  # the caller's RNG is untouched
    assert torch.allclose(a.mean, vae.decode_mean(a.z))


def test_posterior_predictive_shapes_seeds_and_distribution(vae):
    x = data()
    a = pyro_vae.posterior_predictive(vae, x, 4000, seed=1)
    assert a.z.shape == (4000, 6, L) and a.x.shape == (4000, 6, D) and a.mean.shape == (4000, 6, D)
    assert torch.equal(a.z, pyro_vae.posterior_predictive(vae, x, 4000, seed=1).z)
    loc, scale = vae.encode(x)
    # Draws come from q(z|x): moments match the encoder within Monte Carlo error.
    assert torch.allclose(a.z.mean(0), loc.detach(), atol=5 * scale.max().item() / 4000**0.5)
    assert torch.allclose(a.z.std(0), scale.detach(), rtol=0.1)
    # x is sampled afresh (not the observation): its average approaches the likelihood mean.
    assert torch.allclose(a.x.mean(0), a.mean.mean(0), atol=0.05)


def test_reconstruction_is_the_decoded_encoder_mean(vae):
    x = data()
    loc, _ = vae.encode(x)
    assert torch.allclose(pyro_vae.reconstruct(vae, x), vae.decode_mean(loc))


def test_aggregate_posterior_density_matches_direct_mixture(vae):
    agg = AggregatePosterior.from_data(vae, data(50), batch_size=7)
    assert agg.num_components == 50 and agg.latent_dim == L
    z = torch.randn(30, L) * 2
    direct = agg.to_distribution().log_prob(z)
    assert torch.allclose(agg.log_prob(z), direct, atol=1e-4)
    # Chunking is an implementation detail: a tiny memory bound gives the same numbers.
    assert torch.allclose(agg.log_prob(z, max_memory_mb=1e-4), direct, atol=1e-4)


def test_aggregate_posterior_sampling():
    loc = torch.tensor([[-3.0, 0.0], [3.0, 0.0]])
    scale = torch.tensor([[0.1, 1.0], [0.1, 1.0]])
    agg = AggregatePosterior(loc, scale)
    z = agg.sample(20000, seed=0)
    assert z.shape == (20000, 2)
    assert (z[:, 0] > 0).float().mean().item() == pytest.approx(0.5, abs=0.02)
    assert torch.equal(z, agg.sample(20000, seed=0))
    assert agg.memory_bytes == 2 * loc.numel() * 4


def test_aggregate_posterior_rejects_bad_input():
    with pytest.raises(ValueError, match="share a shape"):
        AggregatePosterior(torch.zeros(3, 2), torch.ones(3, 3))
    with pytest.raises(ValueError, match="positive"):
        AggregatePosterior(torch.zeros(3, 2), torch.zeros(3, 2))
    agg = AggregatePosterior(torch.zeros(3, 2), torch.ones(3, 2))
    with pytest.raises(ValueError, match=r"shape \(M, 2\)"):
        agg.log_prob(torch.zeros(4, 3))


def test_predictive_refuses_bad_counts(vae):
    with pytest.raises(ValueError, match="positive integer"):
        pyro_vae.prior_predictive(vae, 0)

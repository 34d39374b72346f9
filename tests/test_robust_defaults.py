"""Defaults that work on a modeller's data: starting values from the data, standardisation with exact
bookkeeping, closed-form baselines and warnings."""

import warnings

import pytest
import torch
from torch import nn

import pyro_vae
from helpers.ppca import ExactEncoder, decoder_params, log_marginal, max_log_likelihood
from pyro_vae.evaluate import baselines


def linear_gaussian(n, d, latent, offset, scale, seed=0):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(d, latent, generator=g) * scale
    return torch.randn(n, latent, generator=g) @ W.T + offset + 0.5 * scale * torch.randn(n, d, generator=g)


@pytest.mark.parametrize(
    "n, d, latent, offset, scale",
    [(1000, 10, 2, 5.0, 1.5), (500, 20, 3, -3.0, 1.0), (2000, 6, 1, 10.0, 3.0), (300, 8, 2, 0.0, 40.0)],
)
def test_linear_gaussian_data_reach_the_ppca_maximum_with_default_settings(n, d, latent, offset, scale):
    x = linear_gaussian(n, d, latent, offset, scale)
    target = max_log_likelihood(x, latent).item()
    vae = pyro_vae.VAE(d, latent, hidden_sizes=(), likelihood="normal")  # every other setting default
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a flat ELBO may still drift upwards by noise
        pyro_vae.fit(vae, x, epochs=20)
    W, b, sigma = decoder_params(vae)
    achieved = log_marginal(W, b, sigma, x).mean().item()
    assert target - 0.25 <= achieved <= target + 1e-3
    estimate = pyro_vae.log_likelihood(vae, x[:200], num_particles=200)
    assert abs(estimate.mean - log_marginal(W, b, sigma, x[:200]).mean().item()) < 0.05


@pytest.mark.parametrize("n, d, latent, offset, scale", [(1000, 10, 2, 5.0, 1.5), (300, 8, 2, 0.0, 40.0)])
def test_a_users_linear_decoder_reaches_the_ppca_maximum_with_default_settings(n, d, latent, offset, scale):
    """``VAE(..., decoder=nn.Linear(L, D))`` with the default MLP encoder: the decoder starts at the
    maximum-likelihood solution, as the built-in linear decoder does (it ended 5 to 43 nats short)."""
    x = linear_gaussian(n, d, latent, offset, scale)
    target = max_log_likelihood(x, latent).item()
    torch.manual_seed(0)
    vae = pyro_vae.VAE(d, latent, likelihood="normal", decoder=nn.Linear(latent, d))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        pyro_vae.fit(vae, x, epochs=20, progress=False)
    layer = vae.decoder
    scale = float(vae.likelihood.scale.value().detach())
    achieved = log_marginal(layer.weight.detach(), layer.bias.detach(), scale, x)
    assert target - 0.05 <= achieved.mean().item() <= target + 1e-3


def test_user_decoders_ending_in_a_linear_layer_start_from_the_data():
    x = linear_gaussian(400, 6, 2, 50.0, 2.0)
    sequential = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 6))
    vae = pyro_vae.VAE(6, 2, likelihood="normal", decoder=sequential)
    vae.initialize_from_data(x)
    assert torch.allclose(sequential[-1].bias, x.mean(0), atol=1e-4)
    wrapped = nn.Sequential(nn.Linear(2, 6))
    vae = pyro_vae.VAE(6, 2, likelihood="normal", decoder=pyro_vae.vae.networks.FlattenLeading(wrapped))
    vae.initialize_from_data(x)
    assert torch.allclose(wrapped[0].bias, x.mean(0), atol=1e-4)  # a linear decoder: the PPCA start
    start = log_marginal(wrapped[0].weight, wrapped[0].bias, float(vae.likelihood.scale.value().detach()), x).mean()
    assert abs(start.item() - max_log_likelihood(x, 2).item()) < 1e-3
    # No output layer of the likelihood's raw size: the user's start is kept.
    for decoder in (nn.Sequential(nn.Linear(2, 6), nn.Tanh()), nn.Linear(2, 6, bias=False)):
        before = [p.clone() for p in decoder.parameters()]
        pyro_vae.VAE(6, 2, likelihood="normal", decoder=decoder).initialize_from_data(x)
        assert all(torch.equal(a, b) for a, b in zip(before, decoder.parameters()))


def test_likelihoods_start_at_the_datas_means_and_spreads():
    x = linear_gaussian(400, 6, 2, 50.0, 2.0)
    vae = pyro_vae.VAE(6, 2, hidden_sizes=(16,), likelihood="normal", likelihood_kwargs={"scale": "feature"})
    vae.initialize_from_data(x)
    assert torch.allclose(vae.decoder.net[-1].bias, x.mean(0), atol=1e-4)
    assert torch.allclose(vae.likelihood.scale.value(), x.std(0, correction=0), rtol=1e-4)
    counts = torch.poisson(torch.full((300, 5), 7.0), generator=torch.Generator().manual_seed(0))
    poisson = pyro_vae.VAE(5, 2, hidden_sizes=(8,), likelihood="poisson", input_scale=10.0)
    poisson.initialize_from_data(counts)
    assert torch.allclose(poisson.likelihood.mean(poisson.decoder.net[-1].bias), counts.mean(0), rtol=1e-4)
    binary = pyro_vae.VAE(5, 2, hidden_sizes=(8,))
    bits = (counts > 7).float()
    binary.initialize_from_data(bits)
    assert torch.allclose(torch.sigmoid(binary.decoder.net[-1].bias), bits.mean(0).clamp(1e-3, 1 - 1e-3), atol=1e-5)


def test_a_trained_or_loaded_model_is_never_reinitialised(tmp_path):
    x = linear_gaussian(200, 5, 2, 3.0, 1.0)
    vae = pyro_vae.VAE(5, 2, hidden_sizes=(8,), likelihood="normal")
    with torch.no_grad():
        vae.decoder.net[-1].bias.fill_(7.0)
    pyro_vae.fit(vae, x, epochs=1, init_from_data=False)
    assert abs(float(vae.decoder.net[-1].bias.detach().mean()) - 7.0) < 0.5  # kept, only trained a little
    before = vae.decoder.net[-1].bias.clone()
    pyro_vae.fit(vae, x, epochs=1, lr=1e-12)  # trained once already: no new start
    assert torch.allclose(vae.decoder.net[-1].bias, before, atol=1e-6)
    back = pyro_vae.load(pyro_vae.save(vae, tmp_path / "m.pt"))
    assert back.trained


def test_standardisation_keeps_log_likelihoods_in_the_datas_units():
    # x = m + s * x', x' from a PPCA model: the density of x is the density of x' divided by prod(s).
    W, sigma = torch.tensor([[2.0, 0.0], [0.0, 1.0], [0.0, 0.0], [0.0, 0.5]]), 0.5  # orthogonal columns
    loc, scale = torch.tensor([100.0, -5.0, 0.0, 3.0]), torch.tensor([50.0, 0.1, 2.0, 1.0])
    # The encoder sees standardised data, so the exact posterior of the standardised model is the guide.
    vae = pyro_vae.VAE(
        4,
        2,
        hidden_sizes=(),
        likelihood="normal",
        likelihood_kwargs={"scale": sigma},
        standardize=True,
        encoder=ExactEncoder(W, torch.zeros(4), sigma),
    )
    with torch.no_grad():
        vae.decoder.net[0].weight.copy_(W)
        vae.decoder.net[0].bias.zero_()
        vae.data_loc.copy_(loc)
        vae.data_scale.copy_(scale)
    g = torch.Generator().manual_seed(0)
    x = loc + scale * (torch.randn(300, 2, generator=g) @ W.T + sigma * torch.randn(300, 4, generator=g))
    exact = torch.distributions.MultivariateNormal(loc, scale[:, None] * (W @ W.T + sigma**2 * torch.eye(4)) * scale)
    estimate = pyro_vae.log_likelihood(vae, x, num_particles=20)
    assert torch.allclose(estimate.log_px, exact.log_prob(x).double(), atol=1e-3)  # the change of variables is exact
    assert torch.allclose(pyro_vae.prior_predictive(vae, 20000, seed=0).x.mean(0), loc, atol=0.05 * scale.max())
    with pytest.raises(ValueError, match="standardize applies"):
        pyro_vae.VAE(4, 2, likelihood="bernoulli", standardize=True)


def test_standardised_training_on_data_of_a_large_scale():
    x = linear_gaussian(600, 8, 2, 1000.0, 300.0)
    vae = pyro_vae.VAE(8, 2, hidden_sizes=(), likelihood="normal", standardize=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        pyro_vae.fit(vae, x, epochs=20)
    estimate = pyro_vae.log_likelihood(vae, x, num_particles=200)
    # Isotropic noise in standardised units: the best such model is PPCA of the standardised data,
    # moved to the data's units by the log-Jacobian -sum_d log s_d.
    m, s = x.mean(0), x.std(0, correction=0)
    target = max_log_likelihood((x - m) / s, 2).item() - float(s.log().sum())
    assert target - estimate.mean < 0.25 and estimate.mean < target + 0.05


def test_baselines_are_exact_and_a_model_that_loses_to_them_is_flagged():
    x = linear_gaussian(400, 6, 2, 2.0, 1.0)
    train, test = x[:300], x[300:]
    gaussian = baselines.diagonal_gaussian(train, test)
    direct = (
        torch.distributions.Normal(train.double().mean(0), train.double().std(0, correction=0))
        .log_prob(test.double())
        .sum(-1)
    )
    assert torch.allclose(gaussian.log_px, direct)
    assert baselines.ppca(train, test, 2).mean > gaussian.mean  # the data have two latent directions
    untrained = pyro_vae.VAE(6, 2, hidden_sizes=(8,), likelihood="normal")  # scale 0.1, bias 0: far off
    other = pyro_vae.VAE(6, 2, hidden_sizes=(4,), likelihood="normal")
    with pytest.warns(RuntimeWarning, match="below the diagonal Gaussian"):
        table = pyro_vae.compare({"a": untrained, "b": other}, test, baselines_from=train, num_particles=20)
    assert {"baseline: diagonal Gaussian", "baseline: PPCA (L=2)"} <= set(table.index)
    assert table.index[0].startswith("baseline")
    assert "a" in table.attrs["warnings"]
    # One model is enough against the baselines; without them a ranking needs two.
    with pytest.warns(RuntimeWarning, match="below the diagonal Gaussian"):
        alone = pyro_vae.compare({"a": untrained}, test, baselines_from=train, num_particles=20)
    assert set(alone.index) == {
        "a",
        "baseline: diagonal Gaussian",
        "baseline: PPCA (L=2)",
        "baseline: factor analysis (L=2)",
    }
    with pytest.raises(ValueError, match="at least two"):
        pyro_vae.compare({"a": untrained}, test, num_particles=20)
    with pytest.raises(ValueError, match="mass functions"):
        pyro_vae.compare(
            {"a": pyro_vae.VAE(6, 2), "b": pyro_vae.VAE(6, 2)},
            (test > 2).float(),
            baselines_from=train,
            num_particles=20,
        )


def test_factor_analysis_is_exact_and_beats_ppca_when_noise_differs_per_feature():
    from sklearn.decomposition import FactorAnalysis

    g = torch.Generator().manual_seed(0)
    w = torch.randn(8, 2, generator=g, dtype=torch.float64)
    noise = torch.linspace(0.1, 3.0, 8, dtype=torch.float64)  # heteroscedastic, as raw-unit tables are
    x = torch.randn(1200, 2, generator=g, dtype=torch.float64) @ w.T + noise * torch.randn(1200, 8, generator=g)
    train, test = x[:900], x[900:]
    fa = baselines.factor_analysis(train, test, 2)
    fitted = FactorAnalysis(n_components=2, random_state=0).fit(train.numpy())
    assert torch.allclose(fa.log_px, torch.as_tensor(fitted.score_samples(test.numpy())), atol=1e-8)
    ppca = baselines.ppca(train, test, 2)
    assert fa.mean - ppca.mean > 5 * float(baselines.mean_se((fa.log_px - ppca.log_px).double()))


def test_a_still_rising_elbo_is_reported():
    data = pyro_vae.data.load("digits", binarize="fixed")
    vae = pyro_vae.VAE(64, 2, hidden_sizes=(16,))
    with pytest.warns(RuntimeWarning, match="still rising") as caught:
        history = pyro_vae.fit(vae, data.train.x, val=data.val.x, epochs=4)
    assert history.still_rising
    # The warning names the caller's line, not a file of the library.
    assert [w.filename for w in caught if "still rising" in str(w.message)] == [__file__]

"""A linear-Gaussian VAE's exact posterior (pyro_vae.vae.exact), checked against Gaussian
conditioning on the marginal ``N(b, W W^T + Psi)``, and the imputation that draws from it."""

import pytest
import torch

import pyro_vae
from pyro_vae.distributions.linear_gaussian import conditional_mean, observed_log_likelihood
from pyro_vae.vae.exact import exact_posterior, linear_gaussian_parameters


def _factor_analysis(d=6, latent=3, scale="feature", standardize=False, seed=0):
    """A linear-Gaussian VAE at random parameters (per-feature noise with ``scale="feature"``)."""
    g = torch.Generator().manual_seed(seed)
    vae = pyro_vae.VAE(
        d,
        latent,
        likelihood="normal",
        likelihood_kwargs={"scale": scale},
        hidden_sizes=(),
        missing=True,
        standardize=standardize,
    )
    with torch.no_grad():
        layer = vae.decoder.net[0] if hasattr(vae.decoder, "net") else vae.decoder
        layer.weight.copy_(torch.randn(d, latent, generator=g))
        layer.bias.copy_(torch.randn(d, generator=g))
        vae.likelihood.scale.set_from(0.3 + torch.rand(d, generator=g))
        if standardize:
            vae.data_loc.copy_(torch.randn(d, generator=g) * 3)
            vae.data_scale.copy_(0.5 + 2 * torch.rand(d, generator=g))
    return vae


def _gaussian_conditional(row, observed, loc, cov):
    """``E[x_m | x_o]`` and ``Cov[x_m | x_o]`` of ``N(loc, cov)`` by the textbook formulas."""
    o, m = observed, ~observed
    gain = cov[m][:, o] @ torch.linalg.inv(cov[o][:, o])
    return loc[m] + gain @ (row[o] - loc[o]), cov[m][:, m] - gain @ cov[o][:, m]


def _marginal(vae):
    """The VAE's marginal of ``x`` in the data's units, ``(b', W W^T + Psi)`` through the standardisation."""
    bias, weights, noise = linear_gaussian_parameters(vae)
    loc, cov = bias, weights @ weights.T + torch.diag(noise)
    if vae.standardize:
        shift, scale = vae.data_loc.double(), vae.data_scale.double()
        loc, cov = shift + scale * loc, scale[:, None] * cov * scale[None, :]
    return loc, cov


def test_per_feature_noise_gives_the_gaussian_conditional_mean_and_marginal():
    vae = _factor_analysis()
    bias, weights, noise = linear_gaussian_parameters(vae)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(30, 6, generator=g, dtype=torch.float64)
    mask = torch.rand(30, 6, generator=g) > 0.4
    filled = conditional_mean(torch.where(mask, x, torch.nan), mask, bias, weights, noise)
    loc, cov = _marginal(vae)
    scored = observed_log_likelihood(torch.where(mask, x, torch.nan), mask, bias, weights, noise)
    for row, observed, got in zip(x, mask, scored):
        expected = torch.distributions.MultivariateNormal(loc[observed], cov[observed][:, observed]).log_prob(
            row[observed]
        )
        assert torch.allclose(got, expected, atol=1e-9)
    for row, observed, got in zip(x, mask, filled):
        if (~observed).any() and observed.any():
            expected, _ = _gaussian_conditional(row, observed, loc, cov)
            assert torch.allclose(got[~observed], expected, atol=1e-9)
        assert torch.equal(got[observed], row[observed])


@pytest.mark.parametrize("standardize", [False, True])
def test_impute_draws_from_the_exact_posterior(standardize):
    """Every importance weight is equal (effective sample size S), the mean is the Gaussian
    conditional's within its Monte Carlo error, and the draws have its mean and variance."""
    vae = _factor_analysis(standardize=standardize)
    g = torch.Generator().manual_seed(2)
    loc, cov = _marginal(vae)
    x = torch.distributions.MultivariateNormal(loc, cov).sample((4,)).float()
    mask = torch.tensor(
        [[1, 1, 0, 1, 0, 1], [0, 0, 1, 1, 1, 1], [1, 0, 0, 0, 0, 1], [1, 1, 1, 1, 1, 0]], dtype=torch.bool
    )
    holes = torch.where(mask, x, torch.nan)
    filled = pyro_vae.impute(vae, holes, mask=mask, num_particles=4000, num_samples=3000, seed=g.initial_seed())
    assert torch.allclose(filled.effective_sample_size, torch.full((4,), 4000.0, dtype=torch.float64))
    for i in range(4):
        expected, conditional = _gaussian_conditional(x[i].double(), mask[i], loc, cov)
        sd = conditional.diagonal().sqrt()
        missing = ~mask[i]
        # The mean averages E[x_m | z] over 4000 exact draws of z: error well under sd / sqrt(4000) * 5.
        assert torch.all((filled.mean[i, missing].double() - expected).abs() < 5 * sd / 4000**0.5)
        draws = filled.draws[:, i, missing].double()
        assert torch.all((draws.mean(0) - expected).abs() < 5 * sd / 3000**0.5)
        assert torch.allclose(draws.var(0), sd**2, rtol=0.1)
        assert torch.equal(filled.draws[:, i, mask[i]], x[i, mask[i]].expand(3000, -1))


def test_the_encoder_is_used_when_asked_for():
    vae = _factor_analysis()
    g = torch.Generator().manual_seed(3)
    x = torch.randn(5, 6, generator=g)
    mask = torch.rand(5, 6, generator=g) > 0.3
    by_encoder = pyro_vae.impute(vae, x, mask=mask, num_particles=200, num_samples=0, guide=vae.guide)
    assert float(by_encoder.effective_sample_size.max()) < 200  # an untrained encoder is far from p(z | x_o)


@pytest.mark.parametrize(
    "build",
    [
        lambda: pyro_vae.VAE(6, 2, likelihood="normal", hidden_sizes=(8,)),  # a nonlinear decoder
        lambda: pyro_vae.VAE(6, 2, likelihood="laplace", hidden_sizes=()),  # not Gaussian
        lambda: pyro_vae.VAE(
            6, 2, likelihood="normal", hidden_sizes=(), prior="vamp", prior_kwargs={"num_components": 3}
        ),
        lambda: pyro_vae.VAE(6, 2, likelihood="normal", hidden_sizes=(), covariate_dim=2),  # p(x | z, y)
        lambda: pyro_vae.VAE(6, 2, likelihood="normal", likelihood_kwargs={"scale": "decoder"}, hidden_sizes=()),
        lambda: pyro_vae.HierarchicalVAE(6, 2, bottom_dim=2, hidden_sizes=()),
    ],
)
def test_only_a_linear_gaussian_vae_has_an_exact_posterior(build):
    vae = build()
    assert linear_gaussian_parameters(vae) is None
    assert vae.as_program().exact_guide is None
    with pytest.raises(ValueError, match="probabilistic PCA or factor analysis"):
        exact_posterior(vae, torch.zeros(2, 6))


def test_a_linear_gaussian_vae_has_one_and_a_replaced_model_drops_it():
    vae = pyro_vae.VAE(6, 2, likelihood="normal", hidden_sizes=())
    program = vae.as_program()
    assert program.exact_guide is not None
    assert program.replace(guide=vae.guide).exact_guide is not None  # another proposal, the same model
    assert program.replace(model=vae.model).exact_guide is None


def test_a_start_from_the_observed_entries_imputes_as_ppca_by_em():
    """``initialize_from_data(x, mask=)`` puts a linear-Gaussian VAE at the EM solution of the observed
    entries, and ``impute`` then gives that solution's conditional mean, up to the draws' error."""
    from pyro_vae.distributions.linear_gaussian import ppca_missing

    g = torch.Generator().manual_seed(4)
    x = torch.randn(200, 3, generator=g) @ torch.randn(3, 7, generator=g) + 0.3 * torch.randn(200, 7, generator=g)
    mask = torch.rand(x.shape, generator=g) > 0.25
    holes = torch.where(mask, x, torch.nan)
    vae = pyro_vae.VAE(7, 3, likelihood="normal", hidden_sizes=(), missing=True)
    vae.initialize_from_data(holes, mask=mask)
    mean, weights, noise = ppca_missing(torch.where(mask, x, 0.0).double(), mask, 3)
    bias, fitted, psi = linear_gaussian_parameters(vae)
    assert torch.allclose(fitted @ fitted.T + torch.diag(psi), weights @ weights.T + noise * torch.eye(7), atol=1e-4)
    assert torch.allclose(bias, mean, atol=1e-5)
    filled = pyro_vae.impute(vae, holes, mask=mask, num_particles=2000, num_samples=0)
    expected = conditional_mean(holes.double(), mask, mean, weights, noise)
    error = (filled.mean.double() - expected)[~mask]  # E[x_m | z] averaged over 2000 exact draws of z
    assert float(error.pow(2).mean().sqrt()) < 0.02 and float(error.abs().max()) < 0.15
    with pytest.raises(ValueError, match="one flag per value"):
        vae.initialize_from_data(holes, mask=mask[:, :3])

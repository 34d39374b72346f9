"""Comparable units: compare ranks likelihoods on counts from a known negative-binomial decoder,
and refuses what is not comparable."""

import pytest
import torch
from torch.nn import functional as F

import pyro_vae

D, L = 12, 2


def simulated_counts(n=800, concentration=1.5):
    """Counts from a known decoder: mean softplus(z W + b) * 2, negative-binomial noise with r = 1.5
    (a gamma-Poisson mixture), so the variance far exceeds the mean."""
    g = torch.Generator().manual_seed(0)
    W = torch.randn(L, D, generator=g) * 0.8
    b = torch.randn(D, generator=g) * 0.3 + 1.5
    mean = F.softplus(torch.randn(n, L, generator=g) @ W + b) * 2
    rate = torch._standard_gamma(torch.full_like(mean, concentration), generator=g) * mean / concentration
    return torch.poisson(rate, generator=g)


def trained(name, kwargs, x):
    torch.manual_seed(0)
    vae = pyro_vae.VAE(D, L, hidden_sizes=(32,), likelihood=name, likelihood_kwargs=kwargs, input_scale=10.0)
    pyro_vae.fit(vae, x, epochs=60, batch_size=100, lr=1e-2, seed=0)
    return vae


def test_negative_binomial_data_ranks_negative_binomial_first():
    x = simulated_counts()
    assert x.var(0).mean() > 3 * x.mean()  # over-dispersed
    train, test = x[:500], x[500:]
    levels = int(x.max()) + 1  # the Gaussian is dequantised onto the same integer levels
    models = {
        "negative_binomial": trained("negative_binomial", {"concentration": "global"}, train),
        "poisson": trained("poisson", {}, train),
        "normal": trained("normal", {"num_levels": levels, "scale": "feature"}, train),
    }
    table = pyro_vae.compare(models, test, num_particles=100)
    assert table.index[0] == "negative_binomial"
    for other in ("poisson", "normal"):
        assert table.loc[other, "elpd_diff"] > 2 * table.loc[other, "dse"], table
    # Bits per dimension are the per-point NLL in bits over the D counts.
    row = table.loc["negative_binomial"]
    assert row["bits_per_dim"] == pytest.approx(row["nll"] / (D * torch.log(torch.tensor(2.0)).item()))


def test_a_density_on_counts_is_refused_with_the_fix():
    x = simulated_counts(40)
    poisson = pyro_vae.VAE(D, L, hidden_sizes=(4,), likelihood="poisson")
    density = pyro_vae.VAE(D, L, hidden_sizes=(4,), likelihood="normal")
    with pytest.raises(ValueError, match="num_levels=L"):
        pyro_vae.compare({"poisson": poisson, "normal": density}, x, num_particles=2)


def test_results_over_different_numbers_of_values_are_refused():
    small = pyro_vae.VAE(D, L, hidden_sizes=(4,), likelihood="poisson")
    large = pyro_vae.VAE(D + 1, L, hidden_sizes=(4,), likelihood="poisson")
    with pytest.raises(ValueError, match="different numbers of values"):
        pyro_vae.compare({"a": small, "b": large}, simulated_counts(10), num_particles=2)

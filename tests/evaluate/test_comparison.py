import math

import numpy as np
import pytest

import pyro_vae
from helpers.ppca import SIGMA, ExactEncoder, log_marginal, ppca_vae, simulate


def exact_model(W, b, sigma):
    return ppca_vae(W, b, ExactEncoder(W, b, sigma), sigma=sigma)


@pytest.fixture(scope="module")
def models():
    W, b, x = simulate(300, 5, 2, SIGMA)
    return x, {sigma: (exact_model(W, b, sigma), log_marginal(W, b, sigma, x).double()) for sigma in (0.4, 0.5, 0.8)}


def test_table_ranks_by_exact_elpd_with_paired_standard_errors(models, tmp_path):
    x, by_sigma = models
    names = {"narrow": 0.4, "true": 0.5, "wide": 0.8}
    table = pyro_vae.compare({name: by_sigma[s][0] for name, s in names.items()}, x, num_particles=20)
    exact = {name: by_sigma[s][1] for name, s in names.items()}
    assert list(table.index) == ["true", "narrow", "wide"]  # the data came from sigma = 0.5
    assert list(table["rank"]) == [0, 1, 2]
    for name in names:
        values = exact[name]
        # Exact guides: the estimates equal the closed form.
        assert table.loc[name, "elpd"] == pytest.approx(float(values.sum()), abs=0.05)
        assert table.loc[name, "se"] == pytest.approx(math.sqrt(300 * float(values.var(correction=0))), rel=1e-3)
        diff = exact["true"] - values
        assert table.loc[name, "elpd_diff"] == pytest.approx(float(diff.sum()), abs=0.05)
        assert table.loc[name, "dse"] == pytest.approx(
            math.sqrt(300 * float(diff.var(correction=0))), rel=1e-3, abs=1e-6
        )
        assert table.loc[name, "nll"] == pytest.approx(-float(values.mean()), abs=1e-3)
    # Both wrong models find the same points hard: the paired error is smaller than the unpaired one.
    assert table.loc["wide", "dse"] < math.hypot(table.loc["wide", "se"], table.loc["true", "se"])
    assert table["weight"].sum() == pytest.approx(1.0, abs=1e-6)
    assert table.loc["true", "weight"] > 0.9
    assert not table["warning"].any()
    assert table.attrs["num_points"] == 300
    path = pyro_vae.plot_comparison(table, tmp_path / "comparison.png")
    assert path.stat().st_size > 0


def test_precomputed_results_and_huge_log_densities_are_accepted(models):
    x, by_sigma = models
    results = {s: pyro_vae.log_likelihood(vae, x, num_particles=20) for s, (vae, _) in by_sigma.items()}
    # Shift one model's log-densities by a large constant, as a rescaling of x would: stacking
    # must not overflow.
    shifted = pyro_vae.LogLikelihood(**{**results[0.5].__dict__, "log_px": results[0.5].log_px + 5000.0})
    table = pyro_vae.compare({"a": results[0.4], "b": shifted})
    assert list(table.index) == ["b", "a"]
    assert np.isfinite(table["weight"]).all()
    assert table.loc["a", "elpd_diff"] == pytest.approx(
        5000 * 300 + float((results[0.5].log_px - results[0.4].log_px).sum())
    )


def test_refuses_mass_function_against_density(models):
    x, by_sigma = models
    binary = pyro_vae.VAE(5, 2, hidden_sizes=(4,))
    with pytest.raises(ValueError, match="mass function.*densities"):
        pyro_vae.compare({"bernoulli": binary, "gaussian": by_sigma[0.5][0]}, (x > 0).float())
    cb = pyro_vae.VAE(5, 2, hidden_sizes=(4,), likelihood="continuous_bernoulli")
    with pytest.raises(ValueError, match="Cannot rank"):
        pyro_vae.compare({"b": binary, "cb": cb}, (x > 0).float())


def test_bad_input(models):
    x, by_sigma = models
    vae = by_sigma[0.5][0]
    with pytest.raises(ValueError, match="at least two"):
        pyro_vae.compare({"only": vae}, x)
    with pytest.raises(ValueError, match="held-out data"):
        pyro_vae.compare({"a": vae, "b": by_sigma[0.4][0]})
    with pytest.raises(TypeError, match="VAE or a LogLikelihood"):
        pyro_vae.compare({"a": vae, "b": "model.pt"}, x)
    a = pyro_vae.log_likelihood(vae, x[:10], num_particles=10)
    b = pyro_vae.log_likelihood(vae, x[:20], num_particles=10)
    with pytest.raises(ValueError, match="same data points"):
        pyro_vae.compare({"a": a, "b": b})
    with pytest.raises(ValueError, match="table returned by pyro_vae.compare"):
        import pandas as pd

        pyro_vae.plot_comparison(pd.DataFrame({"elpd": [1.0]}), "unused.png")


def test_conditional_vaes_are_compared_with_their_covariates():
    """A conditional VAE's own row cannot know its y: compare reads the models' units with the
    covariates given, and scores each model exactly as log_likelihood does with them."""
    import torch

    g = torch.Generator().manual_seed(0)
    x = (torch.rand(40, 6, generator=g) < 0.5).float()
    y = pyro_vae.data.one_hot(torch.arange(40) % 2, 2)
    models = {name: pyro_vae.VAE(6, 2, hidden_sizes=(8,), covariate_dim=2) for name in ("a", "b")}
    table = pyro_vae.compare(models, x, covariates={"y": y}, num_particles=20)
    for name, vae in models.items():
        alone = pyro_vae.log_likelihood(vae, x, covariates={"y": y}, num_particles=20)
        assert table.loc[name, "nll"] == pytest.approx(-alone.mean)

import json

import matplotlib
import numpy as np
import pytest
import torch

import pyro_vae
from pyro_vae._util.arviz_compat import arviz, arviz_line

matplotlib.use("Agg")
az = arviz()


@pytest.fixture(scope="module")
def idata():
    vae = pyro_vae.VAE(6, 2, hidden_sizes=(8,), image_shape=(2, 3))
    x = (torch.rand(7, 6, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    return vae, x, pyro_vae.to_inference_data(vae, x, num_samples=10, num_chains=2, seed=1)


def test_groups_dims_and_coords(idata):
    vae, x, data = idata
    groups = set(data.groups()) if arviz_line() == 0 else set(data.children)
    assert groups == {
        "posterior",
        "posterior_predictive",
        "log_likelihood",
        "prior",
        "prior_predictive",
        "observed_data",
    }
    assert data.posterior["z"].dims == ("chain", "draw", "obs", "latent")
    assert data.posterior["z"].shape == (2, 10, 7, 2)
    assert data.prior["z"].dims == ("chain", "draw", "obs", "latent")
    assert data.posterior_predictive["x"].dims == ("chain", "draw", "obs", "feature")
    assert data.prior_predictive["x"].shape == (2, 10, 7, 6)
    assert data.log_likelihood["x"].dims == ("chain", "draw", "obs")
    assert data.observed_data["x"].dims == ("obs", "feature")
    np.testing.assert_array_equal(data.observed_data["x"].values, x.numpy())
    attrs = data.posterior.attrs
    assert attrs["inference_library"] == "pyro" and "created_at" in attrs
    assert json.loads(attrs["model_config"])["latent_dim"] == 2


def test_log_likelihood_is_log_p_x_given_posterior_z(idata):
    vae, x, data = idata
    z = torch.as_tensor(data.posterior["z"].values)
    expected = vae.likelihood(vae.decoder(z)).log_prob(x).detach().numpy()
    np.testing.assert_allclose(data.log_likelihood["x"].values, expected, rtol=1e-5)


def test_posterior_predictive_draws_are_binary_and_seeded(idata):
    vae, x, data = idata
    values = data.posterior_predictive["x"].values
    assert set(np.unique(values)) <= {0.0, 1.0}
    again = pyro_vae.to_inference_data(vae, x, num_samples=10, num_chains=2, seed=1)
    np.testing.assert_array_equal(again.posterior["z"].values, data.posterior["z"].values)


def test_arviz_functions_work_on_it(idata, tmp_path):
    data = idata[2]
    summary = az.summary(data, var_names=["z"], group="posterior")
    assert len(summary) == 7 * 2 and "r_hat" in summary.columns
    if arviz_line() == 0:
        assert az.plot_ppc(data, num_pp_samples=5) is not None
        az.plot_ppc(data, group="prior", num_pp_samples=5)
    else:
        assert az.plot_ppc_dist(data, num_samples=5) is not None
        assert az.plot_ppc_dist(data, group="prior_predictive", num_samples=5) is not None
    # In-sample PSIS-LOO of p(x_i | z_i), read from the log_likelihood group; ArviZ 1.x fits the
    # Pareto tail only with enough draws.
    vae, x, _ = idata
    loo = az.loo(pyro_vae.to_inference_data(vae, x, num_samples=50, num_chains=2, seed=2))
    assert (loo.n_data_points if arviz_line() == 1 else int(loo["n_data_points"])) == 7
    other = pyro_vae.to_inference_data(pyro_vae.VAE(6, 2, hidden_sizes=(8,)), x, num_samples=50, num_chains=2, seed=3)
    exported = pyro_vae.to_inference_data(vae, x, num_samples=50, num_chains=2, seed=2)
    ranked = az.compare({"trained": exported, "other": other})
    assert sorted(ranked.index) == ["other", "trained"]
    path = tmp_path / "export.nc"
    data.to_netcdf(str(path))
    back = az.from_netcdf(str(path))
    np.testing.assert_array_equal(back.posterior["z"].values, data.posterior["z"].values)
    np.testing.assert_array_equal(back.log_likelihood["x"].values, data.log_likelihood["x"].values)
    assert back.posterior.attrs["likelihood"] == "bernoulli"


def test_one_sample_dimension_as_arviz_1_lays_out_variational_draws():
    vae = pyro_vae.VAE(6, 2, hidden_sizes=(8,))
    x = (torch.rand(5, 6, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    data = pyro_vae.to_inference_data(vae, x, num_samples=40, seed=1, sample_dims=("sample",))
    assert data.posterior["z"].dims == ("sample", "obs", "latent")
    assert data.log_likelihood["x"].dims == ("sample", "obs")
    assert data.observed_data["x"].dims == ("obs", "feature")
    chained = pyro_vae.to_inference_data(vae, x, num_samples=40, seed=1)
    np.testing.assert_array_equal(data.posterior["z"].values, chained.posterior["z"].values[0])
    if arviz_line() == 1:
        assert len(az.summary(data, var_names=["z"], sample_dims=["sample"], kind="stats")) == 5 * 2

    with pytest.raises(ValueError, match="num_chains=1"):
        pyro_vae.to_inference_data(vae, x, num_samples=12, num_chains=2, sample_dims=("sample",))
    with pytest.raises(ValueError, match="sample_dims must be"):
        pyro_vae.to_inference_data(vae, x, num_samples=12, sample_dims=("draw",))


def test_bad_input(idata):
    vae, x, _ = idata
    with pytest.raises(ValueError, match="num_samples"):
        pyro_vae.to_inference_data(vae, x, num_samples=0)
    with pytest.raises(ValueError, match="max_values"):
        pyro_vae.to_inference_data(vae, x, num_samples=1000, max_values=1000)
    with pytest.raises(ValueError, match="obs_coords"):
        pyro_vae.to_inference_data(vae, x, num_samples=2, obs_coords=["a"])
    with pytest.raises(ValueError, match="support"):
        pyro_vae.to_inference_data(vae, x + 0.5, num_samples=2)

"""The built-in two-stochastic-layer VAE (HierarchicalVAE): structure, training, saving, and the
tools reading both layers."""

import pytest
import torch

import pyro_vae
from pyro_vae.program import bind


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    data = pyro_vae.data.load("digits", binarize="dynamic")
    vae = pyro_vae.HierarchicalVAE(data.input_dim, 3, bottom_dim=5, hidden_sizes=(32,), activation="gated")
    history = pyro_vae.fit(vae, data.train, val=data.val, epochs=8, kl_warmup_epochs=2, progress=False)
    return vae, data, history


def test_the_two_layers_and_their_dependencies(trained):
    vae, data, _ = trained
    sites = bind(vae, data.test.binarized(0)[:4]).sites
    assert sites.local == ("z2", "z1")
    assert sites.model_parents["z1"] == ("z2",) and set(sites.model_parents["x"]) == {"z1", "z2"}
    assert sites.guide_parents == {"z2": (), "z1": ("z2",)}


def test_training_and_evaluation(trained):
    vae, data, history = trained
    assert history.rows[-1]["val_elbo"] > history.rows[0]["val_elbo"]
    ll = pyro_vae.log_likelihood(vae, data.test.binarized(0), num_particles=50)
    assert float(ll.mean) > float(ll.elbo.mean())  # the 50-sample bound is above the ELBO
    assert float(ll.mean) > -40.0


def test_save_and_load_rebuild_the_hierarchy(trained, tmp_path):
    vae, data, _ = trained
    path = pyro_vae.save(vae, tmp_path / "hvae.pt")
    again = pyro_vae.load(path)
    assert type(again) is pyro_vae.HierarchicalVAE and again.bottom_dim == 5
    x = data.test.binarized(0)[:40]
    first = pyro_vae.log_likelihood(vae, x, num_particles=20, psis=False)
    second = pyro_vae.log_likelihood(again, x, num_particles=20, psis=False)
    assert torch.equal(first.log_px, second.log_px)


def test_the_tools_name_the_layer_and_refuse_what_they_cannot_draw(trained):
    vae, data, _ = trained
    x = data.test.binarized(0)[:60]
    top = pyro_vae.diagnostics.elbo_surgery(vae, x, site="z2")
    bottom = pyro_vae.diagnostics.elbo_surgery(vae, x, site="z1")
    assert top.marginal_particles == 0 and top.average_kl_exact is not None  # z2's densities are its own
    assert bottom.marginal_particles > 0 and bottom.average_kl_exact is None  # z1's are Monte Carlo marginals
    draws = pyro_vae.sample(vae, 16, site="z1")
    assert draws.z.shape == (16, 5) and draws.sites["z2"].shape == (16, 3)
    # p(x | z1, z2) depends on z2, which z1 depends on: codes of z1 alone cannot be decoded.
    aggregate = pyro_vae.AggregatePosterior.from_data(vae, x, site="z1")
    with pytest.raises(ValueError, match=r"'x' depends on \['z2'\]"):
        pyro_vae.sample(vae, 4, source=aggregate, site="z1")
    assert pyro_vae.sample(vae, 4, source="aggregate", x=x, site="z2").x.shape == (4, 64)


def test_options_it_does_not_offer_are_refused():
    with pytest.raises(ValueError, match="covariate_dim"):
        pyro_vae.HierarchicalVAE(64, 3, covariate_dim=2)

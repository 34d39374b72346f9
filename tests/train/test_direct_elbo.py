"""A VAE's "trace" and "meanfield" objectives computed from its parts equal Pyro's Trace_ELBO and
TraceMeanField_ELBO, draw for draw.

``fit`` trains a VAE with :class:`~pyro_vae.objectives.DirectTraceELBO` (no effect
handlers); these tests hold it to Pyro's objectives run on the same random stream, for
every registered likelihood, prior and guide family, with covariates, masks, size factors,
several particles and KL warm-up, and check that ``fit`` picks it only where it is the ELBO.
"""

from __future__ import annotations

import pyro
import pytest
import torch

import pyro_vae
from helpers.vae_data import LIKELIHOOD_KWARGS, LIKELIHOOD_NAMES, rows_in_support
from pyro_vae.objectives import DirectTraceELBO, make_objective, training_objective
from pyro_vae.train.settings import TrainSettings

D, L, B, N = 6, 3, 5, 40


def _loss_and_grads(objective, vae, x, seed, **kwargs):
    pyro.clear_param_store()
    torch.manual_seed(seed)
    with pyro.validation_enabled(False):
        loss = objective.differentiable_loss(vae.model, vae.guide, x, **kwargs)
    grads = torch.autograd.grad(loss, list(vae.parameters()), allow_unused=True)
    return loss.detach(), grads


def _assert_same(vae, x, *, num_particles=1, elbo="trace", **kwargs):
    pyro_loss, pyro_grads = _loss_and_grads(make_objective(elbo, num_particles), vae, x, 11, **kwargs)
    direct = DirectTraceELBO(vae, num_particles, analytic_kl=elbo == "meanfield")
    direct_loss, direct_grads = _loss_and_grads(direct, vae, x, 11, **kwargs)
    assert torch.isfinite(pyro_loss)
    assert torch.allclose(direct_loss, pyro_loss, rtol=1e-5, atol=1e-4), (direct_loss, pyro_loss)
    compared = 0
    for name, a, b in zip([n for n, _ in vae.named_parameters()], pyro_grads, direct_grads):
        assert (a is None) == (b is None), name
        if a is not None:
            assert torch.allclose(a, b, rtol=1e-4, atol=1e-4 * (1 + a.abs().max())), name
            compared += 1
    assert compared >= 4  # encoder and decoder weights at least


def _data_for(vae, rows=B, seed=0, y=None):
    return rows_in_support(vae, rows, seed, y)


@pytest.mark.parametrize("elbo", ["trace", "meanfield"])
@pytest.mark.parametrize("name", LIKELIHOOD_NAMES)
def test_every_likelihood_matches_pyro(name, elbo):
    torch.manual_seed(0)
    vae = pyro_vae.VAE(D, L, hidden_sizes=(8,), likelihood=name, likelihood_kwargs=LIKELIHOOD_KWARGS.get(name))
    x = _data_for(vae)
    _assert_same(vae, x, elbo=elbo, indices=torch.arange(B), num_data=N, kl_weight=0.4)


@pytest.mark.parametrize("elbo", ["trace", "meanfield"])
@pytest.mark.parametrize("prior", ["normal", "learned_normal", "mixture", "vamp", "flow"])
@pytest.mark.parametrize("guide", ["normal", "iaf"])
def test_every_prior_and_guide_family_match_pyro(prior, guide, elbo):
    """Closed-form KLs (a Gaussian guide under a Gaussian prior) and drawn ones (the rest) alike."""
    torch.manual_seed(1)
    prior_kwargs = {"num_components": 4} if prior in ("vamp", "mixture") else None
    vae = pyro_vae.VAE(D, L, hidden_sizes=(8,), prior=prior, prior_kwargs=prior_kwargs, guide=guide)
    x = _data_for(vae)
    _assert_same(vae, x, elbo=elbo, indices=torch.arange(10, 10 + B), num_data=N)


def test_covariates_masks_particles_and_a_tensor_kl_weight_match_trace_elbo():
    torch.manual_seed(2)
    vae = pyro_vae.VAE(D, L, hidden_sizes=(8,), covariate_dim=2, missing=True)
    y = torch.randn(B, 2)
    x = _data_for(vae, y=y)
    mask = torch.rand(B, D) < 0.7
    for particles in (1, 3):
        for elbo in ("trace", "meanfield"):
            _assert_same(
                vae,
                x,
                num_particles=particles,
                elbo=elbo,
                y=y,
                mask=mask,
                indices=torch.arange(B),
                num_data=N,
                kl_weight=torch.tensor(0.25),
            )
    _assert_same(vae, x, y=y)  # no plate scaling: the minibatch is the data


def test_size_factors_and_standardised_data_match_trace_elbo():
    torch.manual_seed(3)
    counts = pyro_vae.VAE(
        D, L, hidden_sizes=(8,), likelihood="negative_binomial", likelihood_kwargs={"size_factors": True}
    )
    x = _data_for(counts)
    _assert_same(counts, x, size_factor=torch.linspace(5.0, 30.0, B), indices=torch.arange(B), num_data=N)
    _assert_same(counts, x, indices=torch.arange(B), num_data=N)  # size factors from the rows' totals
    standard = pyro_vae.VAE(D, L, hidden_sizes=(8,), likelihood="normal", standardize=True)
    standard.initialize_from_data(torch.randn(50, D) * 40 + 7)
    _assert_same(standard, torch.randn(B, D) * 40 + 7, indices=torch.arange(B), num_data=N)


@pytest.mark.parametrize("elbo", ["trace", "meanfield"])
def test_fit_trains_the_same_model_through_either_path(elbo):
    torch.manual_seed(4)
    x = (torch.rand(64, D) < 0.4).float()
    trained = []
    for direct in (True, False):
        torch.manual_seed(5)
        vae = pyro_vae.VAE(D, L, hidden_sizes=(8,))
        history = pyro_vae.fit(
            vae, x, epochs=3, batch_size=16, kl_warmup_epochs=2, elbo=elbo, direct=direct, progress=False
        )
        trained.append((vae.state_dict(), history.column("train_elbo")))
    (a, elbo_a), (b, elbo_b) = trained
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-5), key
    assert elbo_a == pytest.approx(elbo_b, rel=1e-5)


class _OwnModel(pyro_vae.VAE):
    def model(self, x=None, y=None, size_factor=None, **kwargs):
        return super().model(x, y, size_factor, **kwargs)


def test_the_objective_is_pyros_where_the_parts_are_not_the_program():
    settings = TrainSettings()
    vae = pyro_vae.VAE(D, L, hidden_sizes=(8,))
    assert isinstance(training_objective(settings, vae=vae), DirectTraceELBO)
    assert training_objective(settings.replace(elbo="meanfield"), vae=vae).analytic_kl
    for other in (
        settings.replace(direct=False),
        settings.replace(jit=True),
        settings.replace(elbo="iwae", num_particles=2),
        settings.replace(elbo="enum"),
    ):
        assert not isinstance(training_objective(other, vae=vae), DirectTraceELBO)
    assert not isinstance(training_objective(settings, vae=None), DirectTraceELBO)  # a hand-written program
    wrapped = pyro_vae.VAE(D, L, hidden_sizes=(8,))
    wrapped.guide = lambda *args, guide=wrapped.guide, **kwargs: guide(*args, **kwargs)  # set on the instance
    for model in (
        _OwnModel(D, L, hidden_sizes=(8,)),
        pyro_vae.HierarchicalVAE(D, L, bottom_dim=2, hidden_sizes=(8,)),
        wrapped,
    ):
        assert not model.computes_own_elbo
        assert not isinstance(training_objective(settings, vae=model), DirectTraceELBO)
        with pytest.raises(ValueError, match="rewrites its model or guide"):
            DirectTraceELBO(model)


def test_the_direct_objective_refuses_another_program():
    vae, other = pyro_vae.VAE(D, L, hidden_sizes=(8,)), pyro_vae.VAE(D, L, hidden_sizes=(8,))
    with pytest.raises(ValueError, match="its own VAE"):
        DirectTraceELBO(vae).differentiable_loss(other.model, other.guide, torch.zeros(2, D))

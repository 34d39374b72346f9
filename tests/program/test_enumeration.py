"""Discrete latents marked for enumeration are summed out exactly, against the closed form of a
mixture of linear-Gaussian components (helpers.programs.LabelledMixture)."""

import pyro
import pyro.distributions as dist
import pytest
import torch

import pyro_vae
from helpers.programs import SIGMA, LabelledMixture, gaussian_posterior
from pyro_vae import diagnostics
from pyro_vae.program import bind

PROGRAM = LabelledMixture()
X, Y = PROGRAM.simulate(160)
KNOWN = torch.arange(len(X)) % 2 == 0  # half the rows labelled, as in semi-supervised learning
KW = dict(guide=PROGRAM.guide, plate="items")


@pytest.fixture
def uniform_labels():
    PROGRAM.label_probs = torch.full((PROGRAM.classes,), 1.0 / PROGRAM.classes)
    yield PROGRAM.label_probs
    PROGRAM.label_probs = None


def elbo_of(q, log_joint):
    return (q * (log_joint - q.log())).sum(-1)


def test_the_enumerated_site_is_read_as_such():
    sites = bind(PROGRAM.model, X, **KW).sites
    assert sites.enumerated == ("label",) and sites.discrete_latent == ("label",)
    assert sites.guide_parents["code"] == ("label",)


def test_one_particle_gives_the_exact_log_p_x_with_the_exact_guide():
    result = pyro_vae.log_likelihood(PROGRAM.model, X, num_particles=1, psis=False, **KW)
    exact = PROGRAM.log_marginal(X)
    assert torch.allclose(result.log_px, exact, atol=1e-4)
    assert torch.allclose(result.elbo, exact, atol=1e-4)


def test_the_sum_is_exact_whatever_q_of_the_label(uniform_labels):
    result = pyro_vae.log_likelihood(PROGRAM.model, X, num_particles=1, psis=False, **KW)
    assert torch.allclose(result.log_px, PROGRAM.log_marginal(X), atol=1e-4)
    # The ELBO term is E_q(y|x)[log p(x, y) - log q(y|x)] with the expectation taken exactly.
    q = uniform_labels.double().expand(len(X), -1)
    expected = elbo_of(q, PROGRAM.log_joint_label(X))
    assert torch.allclose(result.elbo, expected, atol=1e-4)
    assert pyro_vae.mean_elbo(PROGRAM.model, X, **KW) == pytest.approx(float(expected.mean()), abs=1e-4)


def test_semi_supervised_rows_keep_their_boolean_mask_and_are_exact(uniform_labels):
    covariates = {"label": Y, "known": KNOWN}
    result = pyro_vae.log_likelihood(PROGRAM.model, X, num_particles=1, psis=False, covariates=covariates, **KW)
    joint = PROGRAM.log_joint_label(X)
    labelled = joint[torch.arange(len(X)), Y]
    assert torch.allclose(result.log_px, torch.where(KNOWN, labelled, PROGRAM.log_marginal(X)), atol=1e-4)
    q = uniform_labels.double().expand(len(X), -1)
    assert torch.allclose(result.elbo, torch.where(KNOWN, labelled, elbo_of(q, joint)), atol=1e-4)
    # Chunks of one row each give the same numbers.
    small = pyro_vae.log_likelihood(
        PROGRAM.model, X, num_particles=1, psis=False, covariates=covariates, max_memory_mb=1e-4, **KW
    )
    assert torch.allclose(small.log_px, result.log_px, atol=1e-5)


def summing_model(x):
    """The mixture with the class marked for enumeration in the model, which its guides do not sample."""
    with pyro.plate("items", x.shape[0]):
        y = pyro.sample("label", dist.Categorical(PROGRAM.pi), infer={"enumerate": "parallel"})
        code = pyro.sample("code", dist.Normal(torch.zeros(3), 1.0).to_event(1))
        pyro.sample("obs", dist.Normal(code @ PROGRAM.W.T + PROGRAM.mu[y], SIGMA).to_event(1), obs=x)


def test_a_site_the_model_enumerates_and_the_guide_omits_is_summed_too():
    """The guide gives only q(code|obs), a single Gaussian: log p-hat converges to the exact value."""

    model = summing_model

    def guide(x):
        probs = PROGRAM.posterior_label(x)
        loc, sd = gaussian_posterior(PROGRAM.W, SIGMA, x - probs @ PROGRAM.mu)
        with pyro.plate("items", x.shape[0]):
            pyro.sample("code", dist.Normal(loc, 2 * sd).to_event(1))

    sites = bind(model, X, guide=guide, plate="items").sites
    assert sites.enumerated == ("label",) and sites.local == ("code",)
    result = pyro_vae.log_likelihood(model, X[:40], guide=guide, plate="items", num_particles=2000)
    error = (result.log_px - PROGRAM.log_marginal(X[:40])).abs()
    assert bool((error < 5 * result.mc_se + 0.02).all())


def test_tools_that_need_continuous_codes_refuse_the_discrete_site():
    with pytest.raises(ValueError, match="'label'.*discrete"):
        pyro_vae.log_likelihood(PROGRAM.model, X[:4], method="ais", num_particles=4, ais_steps=5, psis=False, **KW)
    with pytest.raises(ValueError, match="'label' is discrete"):
        diagnostics.active_units(PROGRAM.model, X, site="label", **KW)
    with pytest.raises(ValueError, match="'label' is discrete"):
        pyro_vae.AggregatePosterior.from_data(PROGRAM.model, X, site="label", **KW)
    # Without site=, the one continuous site is chosen and named.
    assert diagnostics.active_units(PROGRAM.model, X, **KW).site == "code"


def test_the_ais_refusal_names_the_way_out():
    with pytest.raises(ValueError, match="method='importance'"):
        pyro_vae.log_likelihood(PROGRAM.model, X[:4], method="ais", num_particles=4, ais_steps=5, psis=False, **KW)


def test_semi_supervised_data_exports_with_unlabelled_rows_as_missing():
    covariates = {"label": Y[:40], "known": KNOWN[:40]}
    idata = pyro_vae.to_inference_data(PROGRAM.model, X[:40], num_samples=4, covariates=covariates, **KW)
    labels = torch.as_tensor(idata.observed_data["label_observed"].values)
    assert bool(torch.isnan(labels[~KNOWN[:40]]).all()) and torch.equal(labels[KNOWN[:40]].long(), Y[:40][KNOWN[:40]])
    assert "label" not in idata.observed_data  # obs_mask's joined value is not data
    assert torch.equal(torch.as_tensor(idata.constant_data["label_observed_mask"].values), KNOWN[:40])


def test_drawing_from_the_posterior_refuses_a_site_only_the_model_sums():
    model = summing_model

    def guide(x):
        with pyro.plate("items", x.shape[0]):
            pyro.sample("code", dist.Normal(torch.zeros(3), 1.0).to_event(1))

    for tool in (
        lambda: pyro_vae.posterior_predictive(model, X[:5], 3, guide=guide, plate="items"),
        lambda: pyro_vae.to_inference_data(model, X[:5], guide=guide, plate="items", num_samples=3),
    ):
        with pytest.raises(ValueError, match=r"sums out \['label'\]"):
            tool()

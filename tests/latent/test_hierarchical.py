"""Every tool on a two-layer linear-Gaussian program (top -> mid -> obs, guide obs -> mid -> top),
against its closed forms: prior draws are ancestral, and aggregate posteriors, ELBO surgery and
holes use each site's marginals."""

import math

import pytest
import torch

import pyro_vae
from helpers.programs import L, TwoLayerLinear
from pyro_vae.diagnostics import active_units, elbo_surgery, holes
from pyro_vae.program import bind

PROGRAM = TwoLayerLinear()
X = PROGRAM.simulate(300)
KW = dict(guide=PROGRAM.guide, plate="rows")
Normal = torch.distributions.Normal


def marginal_guide(site):
    return PROGRAM.posterior_mid(X) if site == "mid" else PROGRAM.posterior_top(X)


def marginal_prior(site):
    return (PROGRAM.a, PROGRAM.prior_var) if site == "mid" else (torch.zeros(L), torch.ones(L))


def exact_mixture(loc, var, z):
    components = Normal(loc[None].double(), var.sqrt().double()).log_prob(z[:, None].double()).sum(-1)
    return torch.logsumexp(components, 1) - math.log(loc.shape[0])


def test_the_structure_names_each_dependency():
    sites = bind(PROGRAM.model, X, **KW).sites
    assert sites.model_parents == {"top": (), "mid": ("top",), "obs": ("mid",)}
    assert sites.guide_parents == {"mid": (), "top": ("mid",)}
    assert sites.dependencies_known


@pytest.mark.parametrize("site", ["mid", "top"])
def test_prior_draws_are_ancestral_whichever_site_is_named(site):
    draws = [pyro_vae.sample(PROGRAM.model, 20_000, x=X[:1], site=site, plate="rows", seed=s) for s in (0, 1)]
    mean, var = marginal_prior(site)
    for d in draws:
        assert torch.allclose(d.z.var(0), var, rtol=0.06)
        assert torch.allclose(d.z.mean(0), mean, atol=4 * (var / 20_000).sqrt().max())
        # Every site is drawn, and x from its marginal: W diag(P) W^T + sigma^2 I.
        assert torch.allclose(d.sites["mid"].var(0), PROGRAM.prior_var, rtol=0.06)
        expected_x = (PROGRAM.W**2 @ PROGRAM.prior_var) + 0.36
        assert torch.allclose(d.x.var(0), expected_x, rtol=0.06)
    assert not torch.equal(draws[0].sites["top"], draws[1].sites["top"])  # seeds give different upper draws


def test_z_is_never_ambiguous():
    both = pyro_vae.sample(PROGRAM.model, 10, x=X[:1], plate="rows")
    with pytest.raises(AttributeError, match=r"several latent sites.*sites\[name\]"):
        both.z  # noqa: B018
    assert set(both.sites) >= {"mid", "top"}
    named = pyro_vae.sample(PROGRAM.model, 10, x=X[:1], plate="rows", site="top")
    assert torch.equal(named.z, named.sites["top"])


@pytest.mark.parametrize("site", ["mid", "top"])
def test_the_aggregate_posterior_is_the_mixture_of_marginals(site):
    aggregate = pyro_vae.AggregatePosterior.from_data(PROGRAM.model, X, site=site, marginal_particles=64, **KW)
    again = pyro_vae.AggregatePosterior.from_data(PROGRAM.model, X, site=site, marginal_particles=64, **KW)
    assert torch.equal(aggregate.loc, again.loc)  # seeded: two builds agree
    loc, var = marginal_guide(site)
    z = aggregate.sample(2000, seed=3)
    error = (aggregate.log_prob(z).double() - exact_mixture(loc, var, z)).abs()
    if site == "mid":  # no guide parents: the exact N-component mixture
        assert aggregate.num_components == len(X)
        assert error.max() < 1e-4
    else:  # 64 draws of mid per point: a Monte Carlo mixture whose error shrinks with the draws
        assert aggregate.num_components == 64 * len(X)
        assert error.mean() < 0.06
        coarse = pyro_vae.AggregatePosterior.from_data(PROGRAM.model, X, site=site, marginal_particles=2, **KW)
        assert (coarse.log_prob(z).double() - exact_mixture(loc, var, z)).abs().mean() > 1.5 * error.mean()
    # Draws follow the marginal: their variance is that of the mixture of q(site | x_i).
    assert torch.allclose(z.var(0), loc.var(0) + var, rtol=0.1)


@pytest.mark.parametrize("site", ["mid", "top"])
def test_elbo_surgery_uses_the_marginals(site):
    surgery = elbo_surgery(PROGRAM.model, X, site=site, num_particles=20, **KW)
    loc, var = marginal_guide(site)
    prior_loc, prior_var = marginal_prior(site)
    exact = torch.distributions.kl_divergence(Normal(loc, var.sqrt()), Normal(prior_loc, prior_var.sqrt())).sum(-1)
    bias = surgery.marginal_density_se**2  # the Monte Carlo densities' own error, beside the sampling error
    assert abs(surgery.average_kl - float(exact.mean())) < 4 * surgery.average_kl_se + bias + 1e-3
    assert surgery.marginal_kl > -3 * surgery.marginal_kl_se
    assert surgery.site == site and surgery.average_kl_exact is None
    assert math.isclose(surgery.average_kl, surgery.mutual_information + surgery.marginal_kl, rel_tol=1e-9)


def test_holes_measure_the_marginals_and_name_the_site():
    for site in ("mid", "top"):
        result = holes(PROGRAM.model, X, site=site, num_samples=4000, **KW)
        assert result.site == site
        # With the exact posterior, the aggregate of 300 points covers the prior: few holes.
        assert result.hole_share < 0.03
        assert -4 * result.kl_q_p_se - result.prior_density_se < result.kl_q_p < 0.5
    assert holes(PROGRAM.model, X, site="top", num_samples=200, **KW).prior_density_se == 0.0


def test_active_units_average_over_the_parents():
    units = active_units(PROGRAM.model, X, site="top", **KW)
    loc, _ = PROGRAM.posterior_top(X)
    assert torch.allclose(units.variance.float(), loc.var(0), rtol=0.05)


def test_a_site_whose_ancestors_act_elsewhere_is_refused_for_decoding():
    direct = TwoLayerLinear(direct=True)
    aggregate = pyro_vae.AggregatePosterior.from_data(direct.model, X, site="mid", guide=direct.guide, plate="rows")
    with pytest.raises(ValueError, match=r"'obs' depends on \['top'\]"):
        pyro_vae.sample(direct.model, 8, source=aggregate, x=X[:1], site="mid", plate="rows")
    # Ancestral prior draws need no such condition.
    assert pyro_vae.sample(direct.model, 8, x=X[:1], site="mid", plate="rows").z.shape == (8, L)


def test_the_log_likelihood_stays_exact():
    ll = pyro_vae.log_likelihood(PROGRAM.model, X, num_particles=4, psis=False, **KW)
    assert (ll.log_px.double() - PROGRAM.log_marginal(X)).abs().max() < 1e-4

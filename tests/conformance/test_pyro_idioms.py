"""Every public tool on programs written in Pyro's own idioms: right against a closed form (or an
independent computation here), or refused by name before any work.

The programs and their closed forms are in ``programs.py``; ``docs/programs.md`` ("Which programs
each tool accepts") tabulates what these tests show.
"""

from __future__ import annotations

import warnings

import pyro
import pyro.distributions as dist
import pytest
import torch
from conformance.programs import (
    BooleanIndex,
    ConditionalPrior,
    GreyBernoulli,
    LabelledM2,
    MaskedRows,
    Sequence,
    TutorialPPCA,
)
from torch import nn

import pyro_vae
from pyro_vae.data import one_hot

EXACT = 1e-3  # nats: importance sampling with the exact posterior as proposal has constant weights


def close_to(estimate: float, truth: float, se: float, *, sigmas: float = 4.0, slack: float = 0.0) -> bool:
    return abs(estimate - truth) <= sigmas * se + slack


# ---------------------------------------------------------------------- the tutorial's PPCA
@pytest.fixture(scope="module")
def tutorial():
    program = TutorialPPCA()
    return program, program.simulate(300)


def test_log_likelihood_of_a_sizeless_plate_reshaped_obs_and_site_names_is_exact(tutorial):
    program, x = tutorial
    ll = pyro_vae.log_likelihood(program.model, x, guide=program.guide, num_particles=20)
    assert torch.allclose(ll.log_px, program.log_marginal(x), atol=EXACT)
    assert torch.allclose(ll.elbo, program.log_marginal(x), atol=EXACT)
    assert "300 points" in repr(ll) and len(repr(ll)) < 300


def test_mean_elbo_and_compare_of_the_tutorial_program_are_exact(tutorial):
    program, x = tutorial
    truth = float(program.log_marginal(x).mean())
    assert pyro_vae.mean_elbo(program.model, x, guide=program.guide) == pytest.approx(truth, abs=EXACT)
    table = pyro_vae.compare(
        {"exact": (program.model, program.guide), "prior as guide": (program.model, _prior_guide)}, x, num_particles=50
    )
    assert table.index[0] == "exact"


def _prior_guide(x):
    with pyro.plate("data"):
        pyro.sample("latent", dist.Normal(x.new_zeros(x.shape[0], TutorialPPCA.L), 1.0).to_event(1))


def test_latent_codes_and_reconstructions_are_the_posterior_means(tutorial):
    program, x = tutorial
    mean, _ = program.posterior(x)
    assert torch.allclose(pyro_vae.get_latent(program.model, x, guide=program.guide), mean, atol=1e-5)
    recon = pyro_vae.reconstruct(program.model, x, guide=program.guide)
    assert torch.allclose(recon, mean @ program.W.T + program.b, atol=1e-5)


def test_holes_and_surgery_of_the_tutorial_program_match_independent_computations(tutorial):
    program, x = tutorial
    loc, sd = program.posterior(x)
    q = dist.MixtureSameFamily(dist.Categorical(logits=torch.zeros(len(x))), dist.Normal(loc, sd).to_event(1))
    p = dist.Normal(torch.zeros(program.L), 1.0).to_event(1)
    with torch.random.fork_rng():
        torch.manual_seed(3)
        z = q.sample((20_000,))
    kl_qp = float((q.log_prob(z) - p.log_prob(z)).mean())
    holes = pyro_vae.diagnostics.holes(program.model, x, guide=program.guide, num_samples=4000)
    assert not holes.conditional_prior
    assert close_to(holes.kl_q_p, kl_qp, holes.kl_q_p_se, slack=0.01)
    surgery = pyro_vae.diagnostics.elbo_surgery(program.model, x, guide=program.guide, num_particles=4)
    average_kl = float(torch.distributions.kl_divergence(dist.Normal(loc, sd), dist.Normal(0.0, 1.0)).sum(-1).mean())
    assert surgery.average_kl_exact == pytest.approx(average_kl, abs=1e-4)
    assert close_to(surgery.marginal_kl, kl_qp, surgery.marginal_kl_se, slack=0.01)
    assert surgery.prior_conditioning == 0.0


def test_the_aggregate_posterior_is_the_exact_mixture(tutorial):
    program, x = tutorial
    loc, sd = program.posterior(x)
    q = dist.MixtureSameFamily(dist.Categorical(logits=torch.zeros(len(x))), dist.Normal(loc, sd).to_event(1))
    aggregate = pyro_vae.AggregatePosterior.from_data(program.model, x, guide=program.guide)
    z = torch.randn(50, program.L)
    assert torch.allclose(aggregate.log_prob(z).double(), q.log_prob(z).double(), atol=1e-4)
    assert "300 components" in repr(aggregate)


def test_the_check_and_the_export_read_the_site_named_obs_and_latent(tutorial):
    program, x = tutorial
    check = pyro_vae.posterior_predictive_check(program.model, x, guide=program.guide, num_samples=100)
    assert check.site == "obs"
    assert check.statistics["mean"].observed.float().allclose(x.reshape(len(x), -1).mean(0), atol=1e-5)
    assert check.coverage > 0.9  # the true model's posterior predictive covers its own data
    idata = pyro_vae.to_inference_data(program.model, x[:10], guide=program.guide, num_samples=8)
    assert set(idata.posterior.data_vars) == {"latent"}
    assert idata.posterior["latent"].shape[-1] == program.L
    observed = torch.as_tensor(idata.observed_data["obs"].values)
    assert torch.allclose(observed.float(), x[:10].reshape(10, -1))


def _observed_posterior(program, x, mask):
    """Mean ``(N, L)`` and covariance ``(N, L, L)`` of ``latent | x_obs`` for each row's observed entries."""
    locs, covs = [], []
    for row, seen in zip(x.reshape(x.shape[0], -1), mask.reshape(x.shape[0], -1)):
        w = program.W[seen]
        cov = torch.linalg.inv(torch.eye(program.L) + w.T @ w / program.SIGMA**2)
        locs.append(cov @ w.T @ (row[seen] - program.b[seen]) / program.SIGMA**2)
        covs.append(cov)
    return torch.stack(locs), torch.stack(covs)


def _masked(program):
    def guide(x, mask):  # the exact posterior given each row's observed entries
        loc, cov = _observed_posterior(program, x, mask)
        with pyro.plate("data"):
            pyro.sample("latent", dist.MultivariateNormal(loc, cov))

    return guide


def _with_holes(tutorial, n=40, seed=0):
    program, x = tutorial
    keep = torch.rand(n, *program.SHAPE, generator=torch.Generator().manual_seed(seed)) > 0.3
    return program, x[:n], keep, torch.where(keep, x[:n], torch.full_like(x[:n], float("nan")))


def test_a_mask_reaches_a_reshaped_observed_site(tutorial):
    program, x, keep, missing = _with_holes(tutorial)
    flat, observed = x.reshape(len(x), -1), keep.reshape(len(x), -1)
    cov = program.W @ program.W.T + program.SIGMA**2 * torch.eye(program.D)
    truth = torch.stack(
        [
            torch.distributions.MultivariateNormal(program.b[m].double(), cov[m][:, m].double()).log_prob(r[m].double())
            for r, m in zip(flat, observed)
        ]
    )
    ll = pyro_vae.log_likelihood(program.model, missing, guide=_masked(program), mask=keep, num_particles=20)
    assert torch.allclose(ll.log_px, truth, atol=EXACT)


def test_imputation_through_a_reshaped_observed_site_is_the_conditional_mean(tutorial):
    program, x, keep, missing = _with_holes(tutorial)
    loc, _ = _observed_posterior(program, x, keep)
    truth = torch.where(keep.reshape(len(x), -1), x.reshape(len(x), -1), loc @ program.W.T + program.b)
    filled = pyro_vae.impute(program.model, missing, guide=_masked(program), mask=keep, num_particles=4000)
    assert filled.mean.shape == x.shape and filled.draws.shape == (10, *x.shape)
    assert torch.equal(filled.mean[keep], x[keep])
    # A 4,000-draw average of E[x|z] over the exact posterior: its Monte Carlo error is below 0.02 here.
    assert (filled.mean.reshape(len(x), -1) - truth).abs().max() < 0.1


def test_a_guide_that_never_sees_the_mask_is_reported_in_one_line(tutorial):
    program, x = tutorial
    keep = torch.rand(x.shape, generator=torch.Generator().manual_seed(1)) > 0.4
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pyro_vae.log_likelihood(program.model, x[:60], guide=program.guide, mask=keep[:60], num_particles=50)
    found = [w for w in caught if "never sees which entries are missing" in str(w.message)]
    assert len(found) == 1 and "Pareto k > 0.7 for" in str(found[0].message)
    assert found[0].filename == __file__  # the caller's line, not a file of the library


class _Linear:
    """A sizeless-plate program with trainable networks, as a new user writes one."""

    def __init__(self, d, latent):
        self.encoder, self.decoder, self.latent = nn.Linear(d, 2 * latent), nn.Linear(latent, d), latent

    def model(self, x):
        pyro.module("decoder", self.decoder)
        with pyro.plate("data"):
            z = pyro.sample("z", dist.Normal(x.new_zeros(x.shape[0], self.latent), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(self.decoder(z), 0.5).to_event(1), obs=x)

    def guide(self, x):
        pyro.module("encoder", self.encoder)
        with pyro.plate("data"):
            loc, raw = self.encoder(x).chunk(2, -1)
            pyro.sample("z", dist.Normal(loc, nn.functional.softplus(raw) + 1e-3).to_event(1))


def _true_elbo(program, x, particles=50):
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(0)
        elbo = pyro.infer.Trace_ELBO(num_particles=particles, vectorize_particles=True, max_plate_nesting=1)
        return -elbo.loss(program.model, program.guide, x) / len(x)


@pytest.mark.parametrize("objective", ["trace", "iwae"])
def test_fit_on_a_sizeless_plate_raises_the_true_elbo(tutorial, objective):
    _, x = tutorial
    x = x.reshape(len(x), -1)
    torch.manual_seed(0)
    program = _Linear(x.shape[1], 2)
    before = _true_elbo(program, x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # five epochs do not converge, as fit says
        history = pyro_vae.fit(
            program.model, x, guide=program.guide, epochs=5, batch_size=50, lr=1e-2, elbo=objective, num_particles=8
        )
    after = _true_elbo(program, x)
    assert after > before + 1.0
    # What fit reports per point is the ELBO (or the tighter bound), not N / -1 times it.
    reported = history.column("train_elbo")[-1]  # averaged over the last epoch, while it still rose
    assert after - 2.0 < reported < after + (3.0 if objective == "iwae" else 1.0)


# ---------------------------------------------------------------------- M2: an observed label
@pytest.fixture(scope="module")
def labelled():
    program = LabelledM2()
    x, y = program.simulate(200)
    return program, x, y


def test_log_likelihood_of_an_image_with_its_observed_label_is_the_joint(labelled):
    program, x, y = labelled
    ll = pyro_vae.log_likelihood(program.model, x, guide=program.guide, covariates={"ys": y}, num_particles=20)
    assert torch.allclose(ll.log_px, program.log_joint(x, y), atol=EXACT)


def test_an_unlabelled_m2_sums_the_class_out_exactly(labelled):
    program, x, _ = labelled
    guide = pyro.infer.config_enumerate(program.enumerated_guide, "parallel")
    ll = pyro_vae.log_likelihood(program.model, x, guide=guide, num_particles=1)
    assert torch.allclose(ll.log_px, program.log_evidence(x), atol=EXACT)


def test_bdmc_simulates_the_image_beside_the_label_given(labelled):
    program, x, y = labelled
    bounds = pyro_vae.bdmc(program.model, 6, guide=program.guide, rows=x[:6], covariates={"ys": y[:6]}, ais_steps=30)
    assert bounds.x.shape == (6, program.D)
    truth = program.log_joint(bounds.x, y[:6])
    assert torch.allclose(bounds.lower, truth, atol=EXACT) and torch.allclose(bounds.upper, truth, atol=EXACT)


def test_generation_keeps_the_label_passed_and_x_is_the_image(labelled):
    program, x, _ = labelled
    drawn = pyro_vae.sample(program.model, 16, x=x[:1], ys=one_hot(2, 3))
    assert drawn.x.shape == (16, program.D)
    assert (drawn.sites["y"].argmax(-1) == 2).all()
    # E[x | z, y = 2] = W z + V[:, 2], exactly, for every draw.
    assert torch.allclose(drawn.mean - drawn.sites["z"] @ program.W.T, program.V[:, 2].expand(16, -1), atol=1e-5)
    prior = pyro_vae.prior_predictive(program.model, 400, x=x[:1])  # ys=None: the label is drawn too
    shares = torch.bincount(prior.sites["y"].argmax(-1), minlength=3) / 400
    assert torch.allclose(shares, program.pi, atol=0.08)


def test_replicates_keep_the_observed_label_and_are_checked_against_the_image(labelled):
    program, x, y = labelled
    replicated = pyro_vae.posterior_predictive(program.model, x[:5], 3, guide=program.guide, covariates={"ys": y[:5]})
    assert replicated.x.shape == (3, 5, program.D)
    assert torch.equal(replicated.sites["y"], y[:5].expand(3, -1, -1))
    check = pyro_vae.posterior_predictive_check(
        program.model, x, guide=program.guide, covariates={"ys": y}, num_samples=100
    )
    assert check.site == "x" and check.coverage > 0.9
    idata = pyro_vae.to_inference_data(
        program.model, x[:8], guide=program.guide, covariates={"ys": y[:8]}, num_samples=4
    )
    assert {"x", "y"} <= set(idata.observed_data.data_vars)


# ---------------------------------------------------------------------- the CVAE: a prior p(z|x)
@pytest.fixture(scope="module")
def cvae():
    program = ConditionalPrior()
    x, y = program.simulate(300)
    return program, x, y


def test_log_likelihood_of_a_cvae_is_log_p_y_given_x(cvae):
    program, x, y = cvae
    ll = pyro_vae.log_likelihood(program.model, x, guide=program.guide, covariates={"ys": y}, num_particles=20)
    assert torch.allclose(ll.log_px, program.log_conditional(x, y), atol=EXACT)


def test_holes_and_surgery_compare_with_the_marginal_of_a_conditional_prior(cvae):
    program, x, y = cvae
    q, p = program.aggregate_posterior(x, y), program.marginal_prior(x)
    with torch.random.fork_rng():
        torch.manual_seed(5)
        from_q, from_p = q.sample((20_000,)), p.sample((20_000,))
    kl_qp = float((q.log_prob(from_q) - p.log_prob(from_q)).mean())
    kl_pq = float((p.log_prob(from_p) - q.log_prob(from_p)).mean())
    holes = pyro_vae.diagnostics.holes(program.model, x, guide=program.guide, covariates={"ys": y}, num_samples=5000)
    assert holes.conditional_prior and "(1/N) sum_i p(z|x_i)" in repr(holes)
    assert close_to(holes.kl_q_p, kl_qp, holes.kl_q_p_se, slack=0.01)
    assert close_to(holes.kl_p_q, kl_pq, holes.kl_p_q_se, slack=0.01)
    surgery = pyro_vae.diagnostics.elbo_surgery(
        program.model, x, guide=program.guide, covariates={"ys": y}, num_particles=8
    )
    assert surgery.conditional_prior
    assert close_to(surgery.marginal_kl, kl_qp, surgery.marginal_kl_se, slack=0.01)
    total = surgery.mutual_information + surgery.marginal_kl + surgery.prior_conditioning
    assert total == pytest.approx(surgery.average_kl, abs=1e-9)


def test_the_check_of_a_cvae_compares_y_with_y(cvae):
    program, x, y = cvae
    check = pyro_vae.posterior_predictive_check(
        program.model, x, guide=program.guide, covariates={"ys": y}, num_samples=100
    )
    assert check.site == "y"
    assert torch.allclose(check.statistics["mean"].observed.float(), y.mean(0), atol=1e-5)
    assert check.coverage > 0.9 and check.statistics["mean"].share_extreme == 0.0
    replicated = pyro_vae.posterior_predictive(program.model, x[:4], 2, guide=program.guide, covariates={"ys": y[:4]})
    assert replicated.x.shape == (2, 4, program.P)
    idata = pyro_vae.to_inference_data(
        program.model, x[:6], guide=program.guide, covariates={"ys": y[:6]}, num_samples=4
    )
    assert torch.allclose(torch.as_tensor(idata.observed_data["y"].values).float(), y[:6])


def test_codes_and_draws_of_a_cvae(cvae):
    program, x, y = cvae
    loc, _ = program.posterior(x, y)
    assert torch.allclose(
        pyro_vae.get_latent(program.model, x, guide=program.guide, covariates={"ys": y}), loc, atol=1e-5
    )
    # z from each row's own prior p(z|x_i), then y: no site reads x, so the observed y is generated
    # (the ys passed only shape the rows; a model that takes ys=None there has no site to draw).
    drawn = pyro_vae.sample(program.model, 6, x=x[:6], ys=y[:6])
    assert drawn.x.shape == (6, program.P)
    assert torch.allclose(drawn.mean, drawn.sites["latent"] @ program.W.T + program.c, atol=1e-5)


def test_annealed_importance_sampling_and_active_units_on_a_cvae(cvae):
    program, x, y = cvae
    ais = pyro_vae.log_likelihood(
        program.model,
        x[:10],
        guide=program.guide,
        covariates={"ys": y[:10]},
        method="ais",
        num_particles=4,
        ais_steps=50,
    )
    assert torch.allclose(ais.log_px, program.log_conditional(x[:10], y[:10]), atol=EXACT)
    with pytest.raises(ValueError, match="does not observe x itself"):
        pyro_vae.impute(program.model, x, guide=program.guide, covariates={"ys": y}, mask=torch.ones_like(x).bool())
    units = pyro_vae.diagnostics.active_units(program.model, x, guide=program.guide, covariates={"ys": y})
    loc, _ = program.posterior(x, y)
    assert torch.allclose(units.variance.float(), loc.var(0), rtol=1e-4)


def test_the_aggregate_posterior_of_a_cvae_is_the_exact_mixture(cvae):
    program, x, y = cvae
    aggregate = pyro_vae.AggregatePosterior.from_data(program.model, x, guide=program.guide, covariates={"ys": y})
    z = torch.randn(30, program.L)
    assert torch.allclose(
        aggregate.log_prob(z).double(), program.aggregate_posterior(x, y).log_prob(z).double(), atol=1e-4
    )


# ---------------------------------------------------------------------- validate_args=False
@pytest.mark.parametrize(
    "tool",
    [
        lambda p, x: pyro_vae.log_likelihood(p.model, x, guide=p.guide, num_particles=10),
        lambda p, x: pyro_vae.compare({"a": (p.model, p.guide), "b": (p.model, p.guide)}, x, num_particles=10),
        lambda p, x: pyro_vae.posterior_predictive_check(p.model, x, guide=p.guide, num_samples=10),
        lambda p, x: pyro_vae.to_inference_data(p.model, x, guide=p.guide, num_samples=4),
        lambda p, x: pyro_vae.mean_elbo(p.model, x, guide=p.guide),
        lambda p, x: pyro_vae.diagnostics.elbo_surgery(p.model, x, guide=p.guide),
    ],
)
def test_grey_levels_under_a_bernoulli_without_validation_are_refused_by_name(tool):
    program = GreyBernoulli()
    grey = torch.rand(30, program.D, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="'obs' is a Bernoulli, a mass function"):
        tool(program, grey)
    tool(program, (grey > 0.5).float())  # the same program on binary data is accepted


# ---------------------------------------------------------------------- poutine.mask and .mask()
def test_rows_masked_by_the_program_score_zero_and_the_aggregate_tools_accept_an_all_true_mask():
    program = MaskedRows()
    x = program.simulate(80).reshape(80, -1)
    keep = torch.arange(80) % 3 != 0
    ll = pyro_vae.log_likelihood(program.model, x, guide=program.guide, covariates={"keep": keep}, num_particles=20)
    truth = torch.where(keep, program.log_marginal(x), torch.zeros(80, dtype=torch.float64))
    assert torch.allclose(ll.log_px, truth, atol=EXACT)
    aggregate = pyro_vae.AggregatePosterior.from_data(program.model, x, guide=program.guide, covariates={"keep": keep})
    assert aggregate.num_components == 80
    mixture = pyro_vae.LatentMixture.fit(program.model, x, 2, guide=program.guide, covariates={"keep": keep})
    assert mixture.num_components == 2


# ---------------------------------------------------------------------- boolean indexing
def test_a_boolean_index_in_the_model_is_refused_with_the_leading_dimension_contract():
    program = BooleanIndex()
    x = program.simulate(20)
    for tool in (pyro_vae.log_likelihood, pyro_vae.posterior_predictive):
        with pytest.raises(ValueError, match="leading particle dimension"):
            tool(program.model, x, 10, guide=program.guide) if tool is pyro_vae.posterior_predictive else tool(
                program.model, x, guide=program.guide, num_particles=10
            )


def test_fit_refuses_grey_levels_under_a_bernoulli_by_name():
    program = GreyBernoulli()
    decoder = nn.Linear(program.L, program.D)

    def model(x):
        pyro.module("decoder", decoder)
        with pyro.plate("data"):
            z = pyro.sample("latent", dist.Normal(x.new_zeros(x.shape[0], program.L), 1.0).to_event(1))
            pyro.sample("obs", dist.Bernoulli(logits=decoder(z), validate_args=False).to_event(1), obs=x)

    grey = torch.rand(30, program.D, generator=torch.Generator().manual_seed(0))
    before = decoder.weight.detach().clone()
    with pytest.raises(ValueError, match="'obs' is a Bernoulli, a mass function"):
        pyro_vae.fit(model, grey, guide=program.guide, epochs=1)
    assert torch.equal(decoder.weight, before)


# ---------------------------------------------------------------------- a sequence model
@pytest.fixture(scope="module")
def sequence():
    program = Sequence()
    return program, program.simulate(100)


def test_log_likelihood_of_a_sequence_with_a_site_per_step_is_exact(sequence):
    program, x = sequence
    ll = pyro_vae.log_likelihood(program.model, x, guide=program.guide, num_particles=20)
    assert torch.allclose(ll.log_px, program.log_marginal(x), atol=EXACT)
    assert set(ll.per_site) == {"obs_1", "obs_2", "obs_3"}


def test_checking_a_sequence_names_its_sites_and_checks_the_one_chosen(sequence):
    program, x = sequence
    with pytest.raises(ValueError, match=r"pass site= to choose one"):
        pyro_vae.posterior_predictive_check(program.model, x, guide=program.guide, num_samples=20)
    check = pyro_vae.posterior_predictive_check(program.model, x, guide=program.guide, num_samples=100, site="obs_2")
    assert torch.allclose(check.statistics["mean"].observed.float(), x[:, 1].mean(0), atol=1e-5)
    assert check.coverage > 0.9
    replicated = pyro_vae.posterior_predictive(program.model, x[:5], 2, guide=program.guide)
    assert {"obs_1", "obs_2", "obs_3", "z_1", "z_2", "z_3"} <= set(replicated.sites)
    assert torch.equal(replicated.x, replicated.sites["obs_1"])
    idata = pyro_vae.to_inference_data(program.model, x[:6], guide=program.guide, num_samples=4)
    assert {"obs_1", "obs_2", "obs_3"} <= set(idata.log_likelihood.data_vars)
    with pytest.raises(ValueError, match="continuous local latent sites"):
        pyro_vae.diagnostics.holes(program.model, x, guide=program.guide)

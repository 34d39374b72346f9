"""Posterior diagnostics on probabilistic PCA, where p(z|x) is known in closed form."""

import math

import pytest
import torch

import pyro_vae
from helpers.ppca import SIGMA, ExactEncoder, ScaledEncoder, log_marginal, posterior, ppca_vae, simulate
from pyro_vae import diagnostics


@pytest.fixture(scope="module")
def ppca():
    W, b, x = simulate(2000, 5, 2, SIGMA)
    return W, b, x


def closed_form_mutual_information(W):
    # I(x; z) = E_x KL(p(z|x) || p(z)) = 0.5 log det(M / sigma^2), M = W^T W + sigma^2 I.
    M = W.T @ W + SIGMA**2 * torch.eye(W.shape[1])
    return 0.5 * float(torch.logdet(M / SIGMA**2))


def test_elbo_surgery_recovers_closed_form_terms(ppca):
    W, b, x = ppca
    vae = ppca_vae(W, b, ExactEncoder(W, b, SIGMA))
    result = diagnostics.elbo_surgery(vae, x, num_particles=4)
    # Closed-form average KL of the exact posteriors from the prior.
    loc, cov = posterior(W, b, SIGMA, x)
    var = cov.diagonal()
    exact_kl = 0.5 * float((var.sum() + (loc**2).sum(1) - 2 - var.log().sum()).mean())
    assert result.average_kl_exact == pytest.approx(exact_kl, rel=1e-4)
    assert abs(result.average_kl - exact_kl) < 4 * result.average_kl_se
    # The identity holds draw by draw.
    assert result.average_kl == pytest.approx(result.mutual_information + result.marginal_kl, abs=1e-9)
    # Data simulated from the model: the aggregate of exact posteriors is close to the prior, and
    # the mutual information is the model's I(x; z) up to the sampling of 2,000 points.
    assert 0.0 <= result.marginal_kl < 0.03
    assert result.mutual_information == pytest.approx(closed_form_mutual_information(W), abs=0.08)
    assert result.mutual_information <= result.max_mutual_information
    assert result.num_draws == 8000


def test_elbo_surgery_sees_a_misplaced_aggregate_posterior(ppca):
    W, b, x = ppca
    shifted = diagnostics.elbo_surgery(ppca_vae(W, b, ScaledEncoder(W, b, shift=1.0)), x)
    # Shifting every posterior by 1 per dimension moves q(z) off the prior: KL(q(z)||p(z)) grows
    # by about the KL between N(1, I) and N(0, I), which is 1 nat in two dimensions.
    assert shifted.marginal_kl == pytest.approx(1.0, abs=0.1)


def test_active_units_match_the_closed_form_covariance(ppca):
    W, b, x = ppca
    W_dead = W.clone()
    W_dead[:, 1] = 0.0  # the second latent no longer affects x: p(z_2|x) = p(z_2)
    vae = ppca_vae(W_dead, b, ExactEncoder(W_dead, b, SIGMA))
    result = diagnostics.active_units(vae, x)
    assert result.count == 1 and result.active.tolist() == [True, False]
    loc, _ = posterior(W_dead, b, SIGMA, x)
    assert torch.allclose(result.variance, loc.double().var(0), atol=1e-6)
    assert result.variance[1] < 1e-10
    assert result.summary()["active_units"] == 1
    with pytest.raises(ValueError, match="at least two"):
        diagnostics.active_units(vae, x[:1])


def test_pareto_report_reads_k_in_words(ppca):
    W, b, x = ppca
    good = diagnostics.pareto_k_report(ppca_vae(W, b, ExactEncoder(W, b, SIGMA)), x[:100], num_particles=100)
    assert good.shares["k>0.7"] == 0.0 and good.shares["k<0.5"] == 1.0
    narrow = pyro_vae.log_likelihood(ppca_vae(W, b, ScaledEncoder(W, b, factor=0.4)), x[:100], num_particles=500)
    report = diagnostics.pareto_k_report(narrow)
    assert report.share_above(0.7) > 0.5  # k = 1 - 0.4^2 = 0.84 for this proposal
    assert sum(report.shares.values()) == pytest.approx(1.0)
    text = report.interpretation()
    assert "unreliable" in text and f"{100 * report.share_above(0.7):.1f}%" in text
    with pytest.raises(ValueError, match="psis=False"):
        diagnostics.pareto_k_report(pyro_vae.log_likelihood(ppca_vae(W, b), x[:5], num_particles=5, psis=False))


def test_amortization_gap_is_zero_for_the_optimal_guide_and_recovered_otherwise(ppca):
    W, b, x = ppca
    x = x[:100]
    exact = log_marginal(W, b, SIGMA, x).double()
    optimal = diagnostics.amortization_gap(
        ppca_vae(W, b, ExactEncoder(W, b, SIGMA)), x, num_steps=100, num_particles=100
    )
    assert abs(optimal.summary()["amortization_gap"]) < 0.01
    assert torch.allclose(optimal.encoder_elbo, exact, atol=1e-4)

    vae = ppca_vae(W, b, ScaledEncoder(W, b, factor=1.5, shift=0.5))
    before = [p.detach().clone() for p in vae.parameters()]
    result = diagnostics.amortization_gap(vae, x, num_steps=300, lr=0.05, num_particles=100)
    summary = result.summary()
    # The best Gaussian is the exact posterior here, so refinement closes the gap to log p(x).
    assert summary["amortization_gap"] > 1.0
    assert summary["refined_elbo"] == pytest.approx(float(exact.mean()), abs=0.02)
    assert summary["log_px"] == pytest.approx(float(exact.mean()), abs=0.01)
    assert summary["approximation_gap"] < 0.02
    loc, cov = posterior(W, b, SIGMA, x)
    assert torch.allclose(result.loc, loc, atol=0.1)
    assert torch.allclose(result.scale, cov.diagonal().sqrt().expand_as(loc), atol=0.05)
    assert all(torch.equal(p, q) for p, q in zip(before, vae.parameters()))  # the VAE is untouched
    assert all(p.requires_grad for p in vae.parameters())
    assert len(summary["trace"]) == 10
    with pytest.raises(ValueError, match="num_steps"):
        diagnostics.amortization_gap(vae, x, num_steps=0)


def test_bad_input_is_refused_before_work(ppca):
    W, b, x = ppca
    vae = ppca_vae(W, b)
    with pytest.raises(ValueError, match="num_particles"):
        diagnostics.elbo_surgery(vae, x, num_particles=0)
    with pytest.raises(ValueError, match="non-finite"):
        diagnostics.elbo_surgery(vae, x.clone().fill_(math.nan))
    with pytest.raises(ValueError, match="Pass the data"):
        diagnostics.pareto_k_report(vae)

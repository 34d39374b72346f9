"""Annealed importance sampling and bidirectional Monte Carlo against closed forms."""

import pytest
import torch

import pyro_vae
from helpers.programs import ConditionalLinear


def bad_guide(program):
    # Too narrow and shifted: importance weights from it are heavy-tailed (Pareto k > 0.7).
    return lambda x, y: program.guide(x, y, factor=0.4, shift=0.8)


def ais(program, x, y, guide, **kwargs):
    return pyro_vae.log_likelihood(
        program.model, x, guide=guide, covariates={"y": y}, plate="points", method="ais", **kwargs
    )


def test_ais_with_the_exact_posterior_as_start_is_exact():
    program = ConditionalLinear()
    x, y = program.simulate(30)
    result = ais(program, x, y, program.guide, num_particles=3, ais_steps=3, leapfrog_steps=2)
    assert torch.allclose(result.log_px, program.log_marginal(x, y), atol=1e-4)
    assert result.estimator.startswith("annealed importance sampling from the guide, 3 temperatures")
    assert result.pareto_k is None and result.acceptance.shape == (30,)


@pytest.mark.parametrize("start", ["guide", "prior"])
def test_ais_converges_to_the_exact_log_marginal_as_temperatures_grow(start):
    program = ConditionalLinear()
    x, y = program.simulate(40)
    exact = program.log_marginal(x, y)
    errors = {}
    for steps in (2, 100):
        result = ais(
            program,
            x,
            y,
            bad_guide(program),
            num_particles=8,
            ais_steps=steps,
            leapfrog_steps=5,
            ais_start=start,
            seed=1,
        )
        errors[steps] = (result.log_px - exact).mean().item(), result.mc_se.mean().item() / 40**0.5
    few, many = errors[2][0], errors[100][0]
    assert few < -0.2  # a lower bound with real slack at 2 temperatures
    assert abs(many) < max(4 * errors[100][1], 0.02)
    assert abs(many) < abs(few) / 5


def test_ais_is_closer_than_importance_sampling_at_equal_compute_when_pareto_k_is_large():
    program = ConditionalLinear()
    x, y = program.simulate(50)
    exact = program.log_marginal(x, y)
    chains, steps, leapfrog = 4, 50, 5
    annealed = ais(program, x, y, bad_guide(program), num_particles=chains, ais_steps=steps, leapfrog_steps=leapfrog)
    # Each temperature costs leapfrog + 2 evaluations of model and guide, each with a gradient
    # (about three forward passes): importance sampling gets that many draws.
    draws = chains * steps * (leapfrog + 2) * 3
    importance = pyro_vae.log_likelihood(
        program.model, x, guide=bad_guide(program), covariates={"y": y}, plate="points", num_particles=draws
    )
    assert importance.share_k_above(0.7) > 0.9
    ais_error = (annealed.log_px - exact).abs().mean().item()
    iwae_error = (importance.log_px - exact).abs().mean().item()
    assert ais_error < iwae_error / 3


def test_bdmc_sandwich_contains_the_exact_value_and_closes_with_more_temperatures():
    program = ConditionalLinear()
    rows, y = program.simulate(40)
    short = pyro_vae.bdmc(
        program.model,
        40,
        guide=bad_guide(program),
        rows=rows,
        covariates={"y": y},
        plate="points",
        num_chains=4,
        ais_steps=3,
        leapfrog_steps=5,
    )
    long = pyro_vae.bdmc(
        program.model,
        40,
        guide=bad_guide(program),
        rows=rows,
        covariates={"y": y},
        plate="points",
        num_chains=4,
        ais_steps=100,
        leapfrog_steps=5,
    )
    for result in (short, long):
        assert torch.equal(result.covariates["y"], y)
        exact = program.log_marginal(result.x, y).mean().item()
        se = ((result.upper - result.lower).std() / 40**0.5).item()
        assert result.lower.mean().item() <= exact + 2 * se
        assert exact <= result.upper.mean().item() + 2 * se
    assert short.gap > 0.3
    assert 0 <= long.gap < short.gap / 5
    assert long.summary()["steps"] == 100


def test_ais_on_a_vae_runs_chunked_and_seeded():
    torch.manual_seed(0)
    vae = pyro_vae.VAE(12, 2, hidden_sizes=(8,))
    x = (torch.rand(7, 12) < 0.4).float()
    a = pyro_vae.log_likelihood(vae, x, method="ais", num_particles=3, ais_steps=4, leapfrog_steps=2, seed=5)
    b = pyro_vae.log_likelihood(
        vae, x, method="ais", num_particles=3, ais_steps=4, leapfrog_steps=2, seed=5, max_memory_mb=0.01
    )  # one point per chunk
    assert a.log_px.shape == (7,) and torch.isfinite(a.log_px).all()
    assert a.summary()["estimator"].startswith("annealed")
    c = pyro_vae.log_likelihood(vae, x, method="ais", num_particles=3, ais_steps=4, leapfrog_steps=2, seed=5)
    assert torch.equal(a.log_px, c.log_px)
    assert torch.isfinite(b.log_px).all()


def test_bad_ais_settings_are_refused_before_any_work():
    vae = pyro_vae.VAE(12, 2, hidden_sizes=(8,))
    x = torch.zeros(3, 12)
    with pytest.raises(ValueError, match="method must be one of"):
        pyro_vae.log_likelihood(vae, x, method="annealed")
    with pytest.raises(ValueError, match="ais_start must be one of"):
        pyro_vae.log_likelihood(vae, x, method="ais", ais_start="posterior")
    with pytest.raises(ValueError, match="ais_steps must be a positive integer"):
        pyro_vae.log_likelihood(vae, x, method="ais", ais_steps=0)
    with pytest.raises(ValueError, match="Pareto k needs at least 10"):
        pyro_vae.log_likelihood(vae, x, method="ais", num_particles=4, psis=True)

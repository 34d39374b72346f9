"""Posterior-predictive checks against cases with known answers.

* A program whose observations do not depend on the latent replicates the data's own
  distribution: every entry's replicates and its observed value are exchangeable, so p-values are
  uniform and the central interval of ``S`` replicates, ``[x_(lo), x_(hi)]``, covers an observed
  value with probability exactly ``(hi - lo) / (S + 1)``.
* Overdispersed counts (negative binomial) under a Poisson model with the right means: too few
  zeros and too little variance in every replicate, so those checks fail for nearly every gene,
  while the negative binomial model with the true parameters passes them.
"""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch

import pyro_vae
from pyro_vae.diagnostics import STATISTICS, posterior_predictive_check
from pyro_vae.diagnostics.plots import predictive_check_figure


def _program(observation):
    """A program with a local latent the observation ignores, and its exact posterior (the prior)."""

    def model(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(torch.zeros(()), 1.0))
            pyro.sample("x", observation.to_event(1), obs=x)

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(torch.zeros(()), 1.0))

    return model, guide


def test_data_from_the_model_itself_give_uniform_p_values_and_exact_coverage():
    n, d, draws, level = 300, 100, 200, 0.95
    loc, scale = torch.linspace(-2.0, 2.0, d), torch.linspace(0.5, 3.0, d)
    x = dist.Normal(loc, scale).sample((n,))
    model, guide = _program(dist.Normal(loc, scale))
    check = posterior_predictive_check(model, x, guide=guide, num_samples=draws, level=level, seed=1)
    lo, hi = math.ceil(draws * (1 - level) / 2), math.ceil(draws * (1 + level) / 2)
    exact = (hi - lo) / (draws + 1)
    assert abs(check.coverage - exact) < 4 * math.sqrt(exact * (1 - exact) / (n * d))
    assert set(check.statistics) == {"mean", "variance", "correlation"}  # real values: no count statistics
    for name in ("mean", "variance"):
        p = check.statistics[name].p_values
        assert p.shape == (d,)
        assert check.statistics[name].share_extreme < 0.15  # 5% expected, 100 entries
        assert abs(float(p.mean()) - 0.5) < 0.1
    assert check.statistics["correlation"].replicated.shape == (draws, 1)


def test_overdispersed_counts_fail_the_poisson_checks_and_pass_the_negative_binomial_ones():
    n, d = 400, 30
    mean, concentration = torch.linspace(1.0, 8.0, d), torch.full((d,), 1.5)
    nb = dist.GammaPoisson(concentration, concentration / mean)
    x = nb.sample((n,))
    poisson_model, poisson_guide = _program(dist.Poisson(mean))
    nb_model, nb_guide = _program(dist.GammaPoisson(concentration, concentration / mean))
    poisson = posterior_predictive_check(poisson_model, x, guide=poisson_guide, num_samples=100)
    right = posterior_predictive_check(nb_model, x, guide=nb_guide, num_samples=100)
    assert set(poisson.statistics) == {"zeros", "row_totals", "mean", "variance", "correlation"}
    assert poisson.statistics["zeros"].share_extreme > 0.9
    assert float(poisson.statistics["zeros"].p_values.max()) < 0.025  # fewer zeros in every replicate
    assert poisson.statistics["variance"].share_extreme > 0.9
    assert poisson.coverage < 0.8  # intervals far too narrow
    assert right.statistics["zeros"].share_extreme < 0.2
    assert right.statistics["variance"].share_extreme < 0.2
    assert abs(right.coverage - 0.95) < 0.03
    table = poisson.table()
    assert list(table.index) == list(poisson.statistics)
    assert poisson.summary()["statistics"]["zeros"]["entries"] == d


def test_user_statistics_chunks_and_bad_arguments(tmp_path):
    x = dist.Poisson(torch.full((6,), 3.0)).sample((50,))
    model, guide = _program(dist.Poisson(torch.full((6,), 3.0)))

    def largest(data):
        return data.max(0).values

    check = posterior_predictive_check(
        model, x, guide=guide, statistics=["zeros", largest], num_samples=30, max_memory_mb=1e-4
    )  # one replicate per chunk
    assert set(check.statistics) == {"zeros", "largest"}
    assert check.statistics["largest"].replicated.shape == (30, 6)
    named = posterior_predictive_check(model, x, guide=guide, statistics={"total": lambda d: d.sum()}, num_samples=10)
    assert named.statistics["total"].observed.shape == (1,)
    assert predictive_check_figure(check, tmp_path / "ppc.png").stat().st_size > 0
    with pytest.raises(ValueError, match="Unknown statistic"):
        posterior_predictive_check(model, x, guide=guide, statistics=["skew"])
    with pytest.raises(ValueError, match="a number or a vector"):
        posterior_predictive_check(model, x, guide=guide, statistics={"outer": lambda d: d.T @ d}, num_samples=2)
    with pytest.raises(ValueError, match="level"):
        posterior_predictive_check(model, x, guide=guide, level=1.0)
    with pytest.raises(ValueError, match="num_samples"):
        posterior_predictive_check(model, x, guide=guide, num_samples=0)
    assert set(STATISTICS) >= {"zeros", "mean", "variance", "row_totals", "correlation"}


def test_a_vae_is_checked_through_its_own_program():
    torch.manual_seed(0)
    x = (torch.rand(40, 6) < 0.3).float()
    vae = pyro_vae.VAE(6, 2, hidden_sizes=(8,))
    pyro_vae.fit(vae, x, epochs=2, progress=False)
    check = pyro_vae.posterior_predictive_check(vae, x, num_samples=20)
    assert set(check.statistics) == {"mean", "variance", "correlation"}  # 0/1 data are not counts
    assert 0.0 <= check.coverage <= 1.0 and check.num_samples == 20


def test_user_statistics_that_give_nan_collide_are_complex_or_write_are_handled(tmp_path):
    x = dist.Poisson(torch.full((4,), 3.0)).sample((40,))
    kept = x.clone()
    model, guide = _program(dist.Poisson(torch.full((4,), 3.0)))

    def always_nan(data):
        return torch.full((4,), math.nan)

    def sometimes_nan(data):  # NaN on about half of the replicates
        return data.mean(0) if bool(data.sum() % 2) else torch.full((4,), math.nan)

    def writes(data):
        data.zero_()
        return data.mean(0)

    check = posterior_predictive_check(
        model, x, guide=guide, statistics={"nan": always_nan, "half": sometimes_nan, "writes": writes}, num_samples=20
    )
    assert math.isnan(check.statistics["nan"].share_extreme) and check.statistics["nan"].undefined == 4
    assert check.statistics["half"].undefined == 4  # never read as an extreme misfit
    assert torch.equal(x, kept)  # the statistic wrote on a copy
    assert check.statistics["writes"].observed.eq(0).all()
    assert predictive_check_figure(check, tmp_path / "nan.png").stat().st_size > 0
    with pytest.raises(ValueError, match="share the name"):
        posterior_predictive_check(
            model, x, guide=guide, statistics=[lambda d: d.max(0).values, lambda d: d.min(0).values]
        )
    with pytest.raises(ValueError, match="complex"):
        posterior_predictive_check(model, x, guide=guide, statistics={"c": lambda d: d.mean(0) * 1j}, num_samples=2)

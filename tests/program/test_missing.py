"""Missing entries (mask=) through every tool, against the closed forms of probabilistic PCA:
``x_o ~ N(W_o m + b_o, ...)`` marginally, ``E[x_m | x_o] = W_m E[z | x_o] + b_m``."""

import math
import warnings

import pyro
import pyro.distributions as dist
import pytest
import torch

import pyro_vae
from helpers.programs import orthogonal

D, L, SIGMA = 6, 2, 0.5


class MaskedPPCA:
    """PPCA written by hand; its guide is the exact posterior of ``z`` given the observed entries.

    The model never mentions the mask: the tools leave its missing entries out of the likelihood.
    """

    def __init__(self, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.W = orthogonal(D, L, [2.0, 1.0], seed) + 0.3 * torch.randn(D, L, generator=g)
        self.b = torch.randn(D, generator=g)

    def model(self, x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(torch.zeros(L), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z @ self.W.T + self.b, SIGMA).to_event(1), obs=x)

    def posterior(self, x, mask):
        """Mean ``(N, L)`` and covariance ``(N, L, L)`` of ``z | x_o``."""
        m = mask.to(x.dtype)
        precision = torch.eye(L) + torch.einsum("nd,dk,dl->nkl", m, self.W, self.W) / SIGMA**2
        cov = torch.linalg.inv(precision)
        mean = torch.einsum("nkl,nl->nk", cov, ((x - self.b) * m) @ self.W / SIGMA**2)
        return mean, cov

    def guide(self, x, mask=None):
        mask = torch.ones_like(x, dtype=torch.bool) if mask is None else mask
        mean, cov = self.posterior(x, mask)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.MultivariateNormal(mean, covariance_matrix=cov))

    def log_observed(self, x, mask):
        out = []
        for row, keep in zip(x, mask):
            W, b = self.W[keep], self.b[keep]
            cov = W @ W.T + SIGMA**2 * torch.eye(int(keep.sum()))
            out.append(dist.MultivariateNormal(b, covariance_matrix=cov).log_prob(row[keep]))
        return torch.stack(out).double()

    def conditional_mean(self, x, mask):
        mean, _ = self.posterior(x, mask)
        return torch.where(mask, x, mean @ self.W.T + self.b)

    def simulate(self, n, seed=1, missing=0.3):
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(n, L, generator=g) @ self.W.T + self.b + SIGMA * torch.randn(n, D, generator=g)
        mask = torch.rand(n, D, generator=g) > missing
        mask[:, 0] |= ~mask.any(1)  # every row keeps at least one value
        return x, mask


PROGRAM = MaskedPPCA()
X, MASK = PROGRAM.simulate(150)
HOLES = torch.where(MASK, X, torch.full_like(X, math.nan))  # what a user has: NaN where missing


def test_the_masked_log_likelihood_is_exact():
    exact = PROGRAM.log_observed(X, MASK)
    result = pyro_vae.log_likelihood(PROGRAM.model, HOLES, guide=PROGRAM.guide, mask=MASK, num_particles=10)
    assert torch.allclose(result.log_px, exact, atol=1e-4)
    one_row_chunks = pyro_vae.log_likelihood(
        PROGRAM.model, HOLES, guide=PROGRAM.guide, mask=MASK, num_particles=10, max_memory_mb=1e-4
    )
    assert torch.allclose(one_row_chunks.log_px, exact, atol=1e-4)
    assert pyro_vae.mean_elbo(PROGRAM.model, HOLES, guide=PROGRAM.guide, mask=MASK) == pytest.approx(
        float(exact.mean()), abs=1e-4
    )


def test_importance_weighted_imputation_matches_the_conditional_mean():
    result = pyro_vae.impute(PROGRAM.model, HOLES, guide=PROGRAM.guide, mask=MASK, num_particles=4000, num_samples=200)
    oracle = PROGRAM.conditional_mean(X, MASK)
    assert torch.equal(result.mean[MASK], X[MASK]) and torch.equal(result.draws[:, MASK], X[MASK].expand(200, -1))
    # Missing entries: within Monte Carlo error of E[x_m | x_o] (the exact guide gives equal weights).
    _, cov = PROGRAM.posterior(X, MASK)
    sd = torch.einsum("dk,nkl,dl->nd", PROGRAM.W, cov, PROGRAM.W).sqrt()
    error = (result.mean - oracle)[~MASK] / (sd[~MASK] / math.sqrt(4000))
    assert error.abs().max() < 5
    assert result.effective_sample_size.min() > 3900
    # The draws spread like p(x_m | x_o): variance W_m Cov(z|x_o) W_m^T + sigma^2.
    spread = result.draws.var(0)[~MASK] / (sd[~MASK] ** 2 + SIGMA**2)
    assert 0.8 < float(spread.mean()) < 1.2


def test_imputation_weights_fix_a_poor_guide():
    def wide_guide(x, mask=None):
        mean, cov = PROGRAM.posterior(x, MASK if mask is None else mask)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.MultivariateNormal(mean + 0.3, covariance_matrix=2.0 * cov))

    oracle = PROGRAM.conditional_mean(X, MASK)
    weighted = pyro_vae.impute(PROGRAM.model, HOLES, guide=wide_guide, mask=MASK, num_particles=4000, num_samples=0)
    unweighted = pyro_vae.posterior_predictive(PROGRAM.model, HOLES, 4000, guide=wide_guide, mask=MASK)
    plain = torch.where(MASK, X, unweighted.mean.mean(0))
    assert (weighted.mean - oracle)[~MASK].abs().mean() < 0.3 * (plain - oracle)[~MASK].abs().mean()


def test_the_export_shows_no_missing_entry_as_data():
    idata = pyro_vae.to_inference_data(PROGRAM.model, HOLES[:20], guide=PROGRAM.guide, mask=MASK[:20], num_samples=5)
    observed = idata.observed_data["x"].values
    assert bool((torch.isnan(torch.as_tensor(observed)) == ~MASK[:20]).all())
    assert bool((torch.as_tensor(idata.constant_data["x_mask"].values) == MASK[:20]).all())
    # log p(x_i | z) counts the observed entries only: with z fixed at a draw, the masked Gaussian sum.
    z = torch.as_tensor(idata.posterior["z"].values[0, 0])
    manual = dist.Normal(z @ PROGRAM.W.T + PROGRAM.b, SIGMA).log_prob(X[:20]).mul(MASK[:20]).sum(-1)
    assert torch.allclose(torch.as_tensor(idata.log_likelihood["x"].values[0, 0]).float(), manual, atol=1e-4)


def test_bad_masks_are_refused_before_any_work():
    kw = dict(guide=PROGRAM.guide, num_particles=10)
    with pytest.raises(TypeError, match="boolean"):
        pyro_vae.log_likelihood(PROGRAM.model, HOLES, mask=MASK.float(), **kw)
    with pytest.raises(ValueError, match="one flag per value"):
        pyro_vae.log_likelihood(PROGRAM.model, HOLES, mask=MASK[:, :3], **kw)
    with pytest.raises(ValueError, match="NaN where the mask says observed"):
        pyro_vae.log_likelihood(PROGRAM.model, HOLES, mask=torch.ones_like(MASK), **kw)
    never = MASK.clone()
    never[:, 2] = False
    with pytest.raises(ValueError, match=r"Features \[2\]"):
        pyro_vae.log_likelihood(PROGRAM.model, HOLES, mask=never, **kw)
    with pytest.raises(ValueError, match="non-finite"):
        pyro_vae.log_likelihood(PROGRAM.model, HOLES, **kw)  # NaN without a mask

    def transformed(x):  # observes a transformation of x: the tools cannot find the entries to mask
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(torch.zeros(L), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z @ PROGRAM.W.T, SIGMA).to_event(1), obs=x - PROGRAM.b)

    with pytest.raises(ValueError, match="does not observe x itself"):
        pyro_vae.log_likelihood(transformed, HOLES, mask=MASK, **kw)


def test_a_vae_trained_with_missing_entries_is_near_the_closed_form():
    """A linear-Gaussian VAE (PPCA) built with missing=True, trained on 30% missing entries."""
    x, mask = PROGRAM.simulate(2000, seed=3)
    holes = torch.where(mask, x, torch.full_like(x, math.nan))
    torch.manual_seed(0)
    vae = pyro_vae.VAE(D, L, hidden_sizes=(), likelihood="normal", likelihood_kwargs={"scale": "global"}, missing=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        pyro_vae.fit(vae, holes, mask=mask, epochs=60, lr=1e-2, batch_size=100, progress=False)
    test_x, test_mask = X, MASK
    result = pyro_vae.log_likelihood(vae, HOLES, mask=test_mask, num_particles=500)
    exact = PROGRAM.log_observed(test_x, test_mask)
    assert abs(float(result.mean) - float(exact.mean())) < 0.05  # nats per point, the true model's value
    filled = pyro_vae.impute(vae, HOLES, mask=test_mask, num_particles=500, num_samples=0)
    oracle = PROGRAM.conditional_mean(test_x, test_mask)
    error, baseline = (filled.mean - oracle)[~test_mask], (test_x - oracle)[~test_mask]
    assert float(error.pow(2).mean()) < 0.05 * float(baseline.pow(2).mean() + 1)
    # A VAE built without missing=True takes masks too: its encoder sees zeros where entries are missing.
    plain = pyro_vae.VAE(D, L, hidden_sizes=(), likelihood="normal", likelihood_kwargs={"scale": "global"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        pyro_vae.fit(plain, holes, mask=mask, epochs=60, lr=1e-2, batch_size=100, progress=False)
    plain_result = pyro_vae.log_likelihood(plain, HOLES, mask=test_mask, num_particles=500)
    assert abs(float(plain_result.mean) - float(exact.mean())) < 0.1


def test_fit_scores_only_the_observed_entries_of_a_program():
    """With the exact posterior as guide the ELBO is log p(x_obs): one epoch at a vanishing learning
    rate reports exactly the closed form, so training counted the observed entries and nothing else."""
    offset = torch.nn.Parameter(torch.zeros(()))  # something to train, left where it is by lr=1e-12

    def model(x):
        pyro.factor("nothing", 0.0 * pyro.param("offset", offset))  # a parameter the loss depends on, by 0
        PROGRAM.model(x)

    history = pyro_vae.fit(
        model, HOLES, guide=PROGRAM.guide, mask=MASK, epochs=1, lr=1e-12, batch_size=50, init_from_data=False
    )
    exact = PROGRAM.log_observed(X, MASK)
    assert history.rows[0]["train_elbo"] == pytest.approx(float(exact.mean()), abs=1e-4)


def test_a_standardized_likelihood_is_masked_in_the_units_of_the_data():
    """The change of variables of standardisation counts the observed entries' scales only, and a
    VAE built with standardize=True trains with a mask."""
    from pyro_vae.likelihoods.distributions import Standardized
    from pyro_vae.program.missing import mask_features

    g = torch.Generator().manual_seed(0)
    loc, scale = torch.randn(5, generator=g), torch.rand(5, generator=g) + 0.5
    base_loc, base_scale = torch.randn(3, 5, generator=g), torch.rand(3, 5, generator=g) + 0.5
    x = torch.randn(3, 5, generator=g)
    mask = torch.rand(3, 5, generator=g) > 0.4
    fn = Standardized(dist.Normal(base_loc, base_scale).to_event(1), loc, scale)
    direct = torch.where(mask, dist.Normal(loc + scale * base_loc, scale * base_scale).log_prob(x), 0.0).sum(-1)
    assert torch.allclose(mask_features(fn, mask).log_prob(x), direct, atol=1e-5)
    assert torch.allclose(mask_features(fn, mask).expand((2, 3)).log_prob(x), direct.expand(2, 3), atol=1e-5)

    data = torch.randn(60, 5, generator=g) * 3 + 2
    seen = torch.rand(60, 5, generator=g) > 0.3
    vae = pyro_vae.VAE(5, 2, likelihood="normal", standardize=True, hidden_sizes=(8,))
    history = pyro_vae.fit(vae, torch.where(seen, data, torch.nan), mask=seen, epochs=2, progress=False)
    assert all(math.isfinite(v) for v in history.column("train_elbo"))


def test_the_masked_defaults_reach_the_oracle_on_probabilistic_pca():
    """PPCA data with 30% of entries missing at random: a linear-Gaussian VAE that sees the mask, trained
    with fit's defaults for masked data (the importance-weighted bound, a start by EM on the observed
    entries), scores held-out rows within 0.3 nats of the closed form under the true parameters and
    imputes within 5% of the oracle's RMSE (E[x_mis | x_obs] under the true parameters)."""
    from pyro_vae.distributions.linear_gaussian import conditional_mean, observed_log_likelihood

    g = torch.Generator().manual_seed(3)
    d, latent, noise = 8, 2, 0.4
    weights = torch.randn(d, latent, generator=g, dtype=torch.float64)
    mean = torch.randn(d, generator=g, dtype=torch.float64)

    def simulate(n):
        z = torch.randn(n, latent, generator=g, dtype=torch.float64)
        return z @ weights.T + mean + noise * torch.randn(n, d, generator=g, dtype=torch.float64)

    x, test = simulate(1500), simulate(400)
    seen, test_seen = torch.rand(x.shape, generator=g) > 0.3, torch.rand(test.shape, generator=g) > 0.3
    test_seen[~test_seen.any(1), 0] = True
    oracle = conditional_mean(test, test_seen, mean, weights, noise**2)
    cov = weights @ weights.T + noise**2 * torch.eye(d, dtype=torch.float64)  # the oracle, checked directly
    for row, observed, best in zip(test[:20], test_seen[:20], oracle[:20]):
        o, u = observed, ~observed
        assert torch.allclose(best[u], mean[u] + cov[u][:, o] @ torch.linalg.solve(cov[o][:, o], row[o] - mean[o]))

    def rmse(filled):
        return float((filled - test)[~test_seen].pow(2).mean().sqrt())

    torch.manual_seed(0)
    vae = pyro_vae.VAE(d, latent, likelihood="normal", hidden_sizes=(), missing=True)
    history = pyro_vae.fit(vae, torch.where(seen, x, torch.nan).float(), mask=seen, epochs=40, progress=False)
    assert len(history.rows) == 40
    holes = torch.where(test_seen, test, torch.nan).float()
    ll = pyro_vae.log_likelihood(vae, holes, mask=test_seen, num_particles=500)
    truth = observed_log_likelihood(test, test_seen, mean, weights, noise**2)
    assert abs(float((ll.log_px - truth).mean())) < 0.3
    filled = pyro_vae.impute(vae, holes, mask=test_seen, num_particles=500, num_samples=0)
    assert rmse(filled.mean.double()) < 1.05 * rmse(oracle)

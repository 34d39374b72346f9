"""Every tool on Pyro programs written by hand, against closed forms (see tests/programs.py)."""

import math

import numpy as np
import pyro
import pyro.distributions as dist
import pyro.distributions.transforms as T
import pytest
import torch
from torch import nn

import pyro_vae
from helpers.programs import SIGMA, ConditionalLinear, D, L, gaussian_marginal, gaussian_posterior, orthogonal
from pyro_vae import diagnostics
from pyro_vae._util.arviz_compat import arviz

az = arviz()


@pytest.fixture(scope="module")
def conditional():
    program = ConditionalLinear()
    x, y = program.simulate(120)
    return program, x, y


# ---------------------------------------------------------------------- a conditional model
def test_exact_guide_gives_the_closed_form_log_p_x_given_y(conditional):
    program, x, y = conditional
    result = pyro_vae.log_likelihood(
        program.model, x, guide=program.guide, covariates={"y": y}, plate="points", num_particles=20
    )
    exact = program.log_marginal(x, y)
    assert torch.allclose(result.log_px, exact, atol=1e-4)
    assert torch.allclose(result.elbo, exact, atol=1e-4)  # q = p(h|x,y): the ELBO is log p(x|y)
    assert torch.all(result.pareto_k == -math.inf)
    assert result.likelihood == "obs: Normal" and not result.is_discrete and result.num_features == D
    one_draw = pyro_vae.mean_elbo(program.model, x, guide=program.guide, covariates={"y": y}, plate="points")
    assert one_draw == pytest.approx(float(exact.mean()), abs=1e-4)


def test_labels_are_sliced_with_x_in_every_chunk(conditional):
    program, x, y = conditional
    shuffled = y[torch.randperm(len(y), generator=torch.Generator().manual_seed(0))]
    for memory in (1e-6, 0.05, 1e4):  # one point per chunk, a few, all at once
        right = pyro_vae.log_likelihood(
            program.model,
            x,
            guide=program.guide,
            covariates={"y": y},
            plate="points",
            num_particles=10,
            max_memory_mb=memory,
        )
        wrong = pyro_vae.log_likelihood(
            program.model,
            x,
            guide=program.guide,
            covariates={"y": shuffled},
            plate="points",
            num_particles=10,
            max_memory_mb=memory,
        )
        assert torch.allclose(right.log_px, program.log_marginal(x, y), atol=1e-4)
        assert torch.allclose(wrong.log_px, program.log_marginal(x, shuffled), atol=1e-4)
    assert float((right.log_px - wrong.log_px).mean()) > 1.0  # the labels matter, and are used


def test_iwae_estimate_converges_to_the_closed_form(conditional):
    program, x, y = conditional
    exact = program.log_marginal(x, y)
    gaps = []
    for particles in (1, 10, 100, 2000):
        result = pyro_vae.log_likelihood(
            program.model,
            x,
            guide=program.inexact_guide,
            covariates={"y": y},
            plate="points",
            num_particles=particles,
            psis=False,
            seed=2,
        )
        gaps.append(float((result.log_px - exact).mean()))
    assert gaps[0] < gaps[1] < gaps[2] < gaps[3]
    assert gaps[0] < -0.2 and abs(gaps[3]) < 0.01


def test_compare_ranks_hand_written_pairs(conditional):
    program, x, y = conditional
    other = ConditionalLinear(seed=5)  # another W, V, b: a worse model of these data
    table = pyro_vae.compare(
        {"true": (program.model, program.guide), "other": (other.model, other.guide)},
        x,
        covariates={"y": y},
        plate="points",
        num_particles=20,
    )
    assert list(table.index) == ["true", "other"]
    assert table.loc["true", "elpd"] == pytest.approx(float(program.log_marginal(x, y).sum()), abs=0.05)
    assert table.loc["other", "elpd"] == pytest.approx(float(other.log_marginal(x, y).sum()), abs=0.05)
    assert table.attrs["estimator"]["true"] == "importance sampling"


def test_predictive_draws_have_the_right_shapes_and_moments(conditional):
    program, x, y = conditional
    prior = pyro_vae.prior_predictive(program.model, 4000, x=x[:1], covariates={"y": y[:1]}, plate="points")
    assert prior.z.shape == (4000, L) and prior.x.shape == (4000, D) and prior.mean.shape == (4000, D)
    # obs | y ~ N(V y + b, W W^T + s^2 I): sample moments within Monte Carlo error.
    assert torch.allclose(prior.x.mean(0), program.mean(y[:1])[0], atol=0.15)
    cov = program.W @ program.W.T + SIGMA**2 * torch.eye(D)
    assert torch.allclose(torch.cov(prior.x.T), cov, atol=0.3)
    post = pyro_vae.posterior_predictive(
        program.model, x[:5], 50, guide=program.guide, covariates={"y": y[:5]}, plate="points"
    )
    assert post.z.shape == (50, 5, L) and post.x.shape == (50, 5, D) and post.mean.shape == (50, 5, D)
    recon = pyro_vae.reconstruct(program.model, x[:5], guide=program.guide, covariates={"y": y[:5]}, plate="points")
    loc, _ = gaussian_posterior(program.W, SIGMA, x[:5] - program.mean(y[:5]))
    assert torch.allclose(recon, loc @ program.W.T + program.mean(y[:5]), atol=1e-5)
    with pytest.raises(ValueError, match="pass x"):
        pyro_vae.prior_predictive(program.model, 3, plate="points")


def test_inference_data_from_a_hand_written_program(conditional):
    program, x, y = conditional
    data = pyro_vae.to_inference_data(
        program.model, x[:6], guide=program.guide, covariates={"y": y[:6]}, plate="points", num_samples=30, num_chains=2
    )
    # The site "obs" would collide with ArviZ's observation dimension, which is renamed.
    assert data.posterior["h"].dims == ("chain", "draw", "obs_index", "latent")
    assert data.posterior["h"].shape == (2, 30, 6, L)
    assert list(data.log_likelihood.data_vars) == list(data.observed_data.data_vars) == ["obs"]
    h = torch.as_tensor(data.posterior["h"].values)
    expected = dist.Normal(h @ program.W.T + program.mean(y[:6]), SIGMA).to_event(1).log_prob(x[:6])
    np.testing.assert_allclose(data.log_likelihood["obs"].values, expected.numpy(), rtol=1e-5)
    assert len(az.summary(data, var_names=["h"])) == 6 * L
    assert data.prior_predictive["obs"].shape == (2, 30, 6, D)


def test_bad_programs_and_data_are_refused_before_any_work(conditional):
    program, x, y = conditional
    with pytest.raises(ValueError, match=r"no pyro.plate named 'data'.*points"):
        pyro_vae.log_likelihood(program.model, x, guide=program.guide, covariates={"y": y})
    with pytest.raises(ValueError, match="covariate 'y' has shape"):
        pyro_vae.log_likelihood(program.model, x, guide=program.guide, covariates={"y": y[:5]}, plate="points")
    with pytest.raises(ValueError, match="guide=my_guide"):
        pyro_vae.log_likelihood(program.model, x, covariates={"y": y}, plate="points")

    def guide_without_h(x, y):
        pass

    with pytest.raises(ValueError, match=r"\['h'\] are not sampled by the guide"):
        pyro_vae.log_likelihood(program.model, x, guide=guide_without_h, covariates={"y": y}, plate="points")


# ---------------------------------------------------------------------- per-point tables by index
def test_models_that_read_tables_by_plate_indices_get_the_right_rows():
    """A model that looks up per-point offsets by ``subsample=indices``: chunks must pass positions."""
    W = orthogonal(D, L, [2.0, 1.0, 0.5], seed=3)
    g = torch.Generator().manual_seed(4)
    n = 60
    offsets = 5 * torch.randn(n, D, generator=g)
    x = torch.randn(n, L, generator=g) @ W.T + offsets + SIGMA * torch.randn(n, D, generator=g)

    def model(x, indices=None, num_data=None):
        with pyro.plate("data", num_data or len(x), subsample=indices) as rows:
            h = pyro.sample("h", dist.Normal(torch.zeros(L), 1.0).to_event(1))
            pyro.sample("obs", dist.Normal(h @ W.T + offsets[rows], SIGMA).to_event(1), obs=x)

    def guide(x, indices=None, num_data=None):
        with pyro.plate("data", num_data or len(x), subsample=indices) as rows:
            loc, sd = gaussian_posterior(W, SIGMA, x - offsets[rows])
            pyro.sample("h", dist.Normal(loc, sd).to_event(1))

    exact = gaussian_marginal(W, SIGMA, offsets, x).double()
    for memory in (1e-6, 0.02, 1e4):  # chunks of 1 point, of several, of all
        result = pyro_vae.log_likelihood(model, x, guide=guide, num_particles=10, max_memory_mb=memory)
        assert torch.allclose(result.log_px, exact, atol=1e-4)
    for batch in (1, 7, n):
        assert pyro_vae.mean_elbo(model, x, guide=guide, batch_size=batch) == pytest.approx(
            float(exact.mean()), abs=1e-4
        )


# ---------------------------------------------------------------------- two observed modalities
class TwoModalities:
    """``h ~ N(0, I)``; ``a | h ~ N(A h + m_a, s_a^2 I)``, ``b | h ~ N(B h + m_b, s_b^2 I)``."""

    def __init__(self):
        # A and B each have orthogonal columns, so A^T A and B^T B and the posterior are diagonal.
        # ``a`` pins h down; ``b`` says little about it.
        self.A, self.B = orthogonal(5, 2, [2.0, 1.5], seed=7), orthogonal(4, 2, [0.3, 0.2], seed=17)
        self.sa, self.sb = 0.3, 1.0
        self.ma, self.mb = torch.linspace(-1, 1, 5), torch.linspace(2, 3, 4)

    def model(self, a, b):
        with pyro.plate("data", a.shape[0]):
            h = pyro.sample("h", dist.Normal(torch.zeros(2), 1.0).to_event(1))
            pyro.sample("a", dist.Normal(h @ self.A.T + self.ma, self.sa).to_event(1), obs=a)
            pyro.sample("b", dist.Normal(h @ self.B.T + self.mb, self.sb).to_event(1), obs=b)

    def posterior(self, a, b):
        precision = torch.eye(2) + self.A.T @ self.A / self.sa**2 + self.B.T @ self.B / self.sb**2
        cov = torch.linalg.inv(precision)
        loc = ((a - self.ma) @ self.A / self.sa**2 + (b - self.mb) @ self.B / self.sb**2) @ cov.T
        return loc, cov.diagonal().sqrt()

    def guide(self, a, b):
        loc, sd = self.posterior(a, b)
        with pyro.plate("data", a.shape[0]):
            pyro.sample("h", dist.Normal(loc, sd).to_event(1))

    def joint(self, a, b):
        factor = torch.cat([self.A, self.B])
        noise = torch.cat([torch.full((5,), self.sa**2), torch.full((4,), self.sb**2)])
        cov = factor @ factor.T + torch.diag(noise)
        mean = torch.cat([self.ma, self.mb])
        return torch.distributions.MultivariateNormal(mean, cov).log_prob(torch.cat([a, b], -1)).double()

    def simulate(self, n):
        g = torch.Generator().manual_seed(8)
        h = torch.randn(n, 2, generator=g)
        return (
            h @ self.A.T + self.ma + self.sa * torch.randn(n, 5, generator=g),
            h @ self.B.T + self.mb + self.sb * torch.randn(n, 4, generator=g),
        )


def test_two_observed_sites_joint_and_per_site_log_likelihoods():
    two = TwoModalities()
    a, b = two.simulate(80)
    result = pyro_vae.log_likelihood(two.model, a, guide=two.guide, covariates={"b": b}, num_particles=3000, seed=1)
    assert torch.allclose(result.log_px, two.joint(a, b), atol=1e-3)
    assert set(result.per_site) == {"a", "b"} and result.num_features == 9
    marginal_a = gaussian_marginal(two.A, two.sa, two.ma, a).double()
    marginal_b = gaussian_marginal(two.B, two.sb, two.mb, b).double()
    # Each site's own log p from the same draws: weights p(site|h) p(h) / q(h|a, b). Since a pins h
    # down, q(h|a, b) is close to p(h|a) and the estimate for a converges; for b it is far narrower
    # than p(h|b), which the per-site Pareto k reports.
    assert abs(float((result.per_site["a"] - marginal_a).mean())) < 0.02
    assert float((result.per_site_pareto_k["a"] > 0.7).double().mean()) < 0.1
    assert float((result.per_site_pareto_k["b"] > 0.7).double().mean()) > 0.5
    assert float((result.per_site["b"] - marginal_b).mean()) < 0.0  # too low, as k warns
    summary = result.summary()
    assert set(summary["nll_per_site"]) == set(summary["share_k_above_0.7_per_site"]) == {"a", "b"}

    data = pyro_vae.to_inference_data(two.model, a[:6], guide=two.guide, covariates={"b": b[:6]}, num_samples=20)
    assert list(data.log_likelihood.data_vars) == list(data.observed_data.data_vars) == ["a", "b"]
    np.testing.assert_array_equal(data.observed_data["b"].values, b[:6].numpy())
    assert data.posterior_predictive["a"].dims == ("chain", "draw", "obs", "a_dim_0")
    summed = data.log_likelihood["a"].values + data.log_likelihood["b"].values
    assert summed.shape == (1, 20, 6)
    assert len(az.summary(data, var_names=["h"])) == 6 * 2


# ---------------------------------------------------------------------- a global latent
class GlobalOffset:
    """``c ~ N(0, I_D)`` shared by all points; ``h ~ N(0, I)``; ``obs | h, c ~ N(W h + c, s^2 I)``."""

    def __init__(self):
        self.W = orthogonal(D, L, [2.0, 1.0, 0.5], seed=9)
        self.c_loc = nn.Parameter(torch.linspace(-1, 1, D))

    def model(self, x):
        c = pyro.sample("c", dist.Normal(torch.zeros(D), 1.0).to_event(1))
        with pyro.plate("data", x.shape[0]):
            h = pyro.sample("h", dist.Normal(torch.zeros(L), 1.0).to_event(1))
            pyro.sample("obs", dist.Normal(h @ self.W.T + c, SIGMA).to_event(1), obs=x)

    def guide(self, x):
        c = pyro.sample("c", dist.Normal(self.c_loc, 0.01).to_event(1))
        # Under the tools' particle plate c has shape (S, 1, D); without it, (D,): both broadcast.
        loc, sd = gaussian_posterior(self.W, SIGMA, x - c)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("h", dist.Normal(loc, sd).to_event(1))


def test_global_latents_are_refused_or_conditioned_on_as_stated():
    program = GlobalOffset()
    g = torch.Generator().manual_seed(10)
    x = (
        torch.randn(50, L, generator=g) @ program.W.T
        + torch.linspace(-1, 1, D)
        + SIGMA * torch.randn(50, D, generator=g)
    )
    with pytest.raises(ValueError, match=r"global latent site\(s\) \['c'\].*global_values"):
        pyro_vae.log_likelihood(program.model, x, guide=program.guide, num_particles=10)
    given = torch.full((D,), 0.3)
    result = pyro_vae.log_likelihood(
        program.model, x, guide=program.guide, num_particles=10, global_values={"c": given}
    )
    assert torch.allclose(result.log_px, gaussian_marginal(program.W, SIGMA, given, x).double(), atol=1e-4)
    assert result.conditioned_on == {"c": "given value"}
    median = pyro_vae.log_likelihood(
        program.model, x, guide=program.guide, num_particles=10, global_values="guide_median"
    )
    assert median.conditioned_on == {"c": "guide median (201 draws)"}
    at_loc = gaussian_marginal(program.W, SIGMA, program.c_loc.detach(), x).double()
    assert torch.allclose(median.log_px, at_loc, atol=0.05)  # the median of 201 draws of N(c_loc, 0.01^2)
    assert median.summary()["conditioned_on"] == {"c": "guide median (201 draws)"}
    with pytest.raises(ValueError, match="missing"):
        pyro_vae.log_likelihood(program.model, x, guide=program.guide, num_particles=10, global_values={"d": given})
    # Draws and exports carry the global latent (shape (draw, D)) next to the local one.
    data = pyro_vae.to_inference_data(program.model, x[:4], guide=program.guide, num_samples=15)
    assert data.posterior["c"].shape == (1, 15, D) and data.posterior["h"].shape == (1, 15, 4, L)
    draws = torch.as_tensor(data.posterior["c"].values[0])[:, None, :]
    h = torch.as_tensor(data.posterior["h"].values[0])
    expected = dist.Normal(h @ program.W.T + draws, SIGMA).to_event(1).log_prob(x[:4])
    np.testing.assert_allclose(data.log_likelihood["obs"].values[0], expected.numpy(), rtol=1e-5)


class VAEWithOffset(pyro_vae.VAE):
    """A VAE subclass with one more (global) latent: a learned offset ``b`` added to the decoder output."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.b_loc = nn.Parameter(torch.zeros(self.input_dim))
        self.b_rawscale = nn.Parameter(torch.full((self.input_dim,), -3.0))

    def model(self, x=None, y=None, *, indices=None, num_data=None, kl_weight=1.0):
        pyro.module("decoder", self.decoder)
        b = pyro.sample("b", dist.Normal(torch.zeros(self.input_dim), 1.0).to_event(1))
        with self._data_plate(x, indices, num_data):
            z = pyro.sample("z", self.prior())
            pyro.sample("x", dist.Normal(self.decode(z) + b, 0.5).to_event(1), obs=x)

    def guide(self, x, y=None, *, indices=None, num_data=None, kl_weight=1.0):
        pyro.module("encoder", self.encoder)
        pyro.sample("b", dist.Normal(self.b_loc, nn.functional.softplus(self.b_rawscale)).to_event(1))
        with self._data_plate(x, indices, num_data):
            loc, scale = self.encode(x)
            pyro.sample("z", dist.Normal(loc, scale).to_event(1))


def test_a_vae_subclass_with_an_extra_latent_exports_and_saves_it(tmp_path):
    vae = VAEWithOffset(6, 2, hidden_sizes=(8,), likelihood="normal")
    x = torch.randn(5, 6)
    data = pyro_vae.to_inference_data(vae, x, num_samples=10)
    assert set(data.posterior.data_vars) == {"z", "b"}
    z, b = torch.as_tensor(data.posterior["z"].values[0]), torch.as_tensor(data.posterior["b"].values[0])
    own = dist.Normal(vae.decode(z) + b[:, None, :], 0.5).to_event(1).log_prob(x).detach()
    np.testing.assert_allclose(data.log_likelihood["x"].values[0], own.numpy(), rtol=1e-5)
    path = pyro_vae.save(vae, tmp_path / "offset.pt")
    with pytest.raises(ValueError, match="VAEWithOffset.*cls="):
        pyro_vae.load(path)
    back = pyro_vae.load(path, cls=VAEWithOffset)
    assert torch.equal(back.b_loc, vae.b_loc) and isinstance(back, VAEWithOffset)


# ---------------------------------------------------------------------- a flow guide
def test_a_hand_written_flow_guide_works_with_every_tool(conditional):
    program, x, y = conditional
    torch.manual_seed(0)
    flow = T.affine_autoregressive(L, hidden_dims=[8])

    def flow_guide(x, y):
        pyro.module("flow", flow)
        loc, sd = gaussian_posterior(program.W, SIGMA, x - program.mean(y))
        with pyro.plate("points", x.shape[0]):
            pyro.sample("h", dist.TransformedDistribution(dist.Normal(loc, sd).to_event(1), [flow]))

    args = dict(guide=flow_guide, covariates={"y": y[:40]}, plate="points")
    result = pyro_vae.log_likelihood(program.model, x[:40], num_particles=500, **args)
    assert result.pareto_k is not None and torch.isfinite(result.log_px).all()
    assert abs(float((result.log_px - program.log_marginal(x[:40], y[:40])).mean())) < 0.1

    aggregate = pyro_vae.AggregatePosterior.from_data(program.model, x[:40], **args)
    assert len(aggregate.transforms) == 1 and aggregate.num_components == 40
    z = aggregate.sample(25, seed=3)
    loc, sd = gaussian_posterior(program.W, SIGMA, x[:40] - program.mean(y[:40]))
    components = dist.TransformedDistribution(dist.Normal(loc, sd.expand_as(loc)).to_event(1), [flow])
    direct = torch.logsumexp(components.log_prob(z[:, None, :]), dim=1) - math.log(40)
    assert torch.allclose(aggregate.log_prob(z), direct.detach(), atol=1e-4)

    mixture = pyro_vae.LatentMixture.fit(
        pyro_vae.Program(program.model, flow_guide, plate="points"), x[:40], 2, covariates={"y": y[:40]}
    )
    assert mixture.loc.shape == (2, L)
    surgery = diagnostics.elbo_surgery(program.model, x[:40], **args)
    assert surgery.average_kl == pytest.approx(surgery.mutual_information + surgery.marginal_kl, abs=1e-9)
    assert diagnostics.active_units(program.model, x[:40], **args).count == L
    data = pyro_vae.to_inference_data(
        program.model, x[:5], num_samples=20, guide=flow_guide, covariates={"y": y[:5]}, plate="points"
    )
    assert len(az.summary(data, var_names=["h"])) == 5 * L


# ---------------------------------------------------------------------- networks that take (B, L) only
class TwoDimensionalOnly(nn.Module):
    """A decoder that, like many convolutional ones, refuses anything but ``(B, L)``."""

    def __init__(self, out):
        super().__init__()
        self.linear = nn.Linear(L, out)

    def forward(self, z):
        if z.ndim != 2:
            raise RuntimeError(f"expected a (B, L) input, got {tuple(z.shape)}")
        return self.linear(z)


def test_networks_that_take_only_two_dimensions_are_refused_with_the_contract_or_wrapped():
    torch.manual_seed(0)
    net = TwoDimensionalOnly(D)
    x = torch.randn(10, D)

    def make(decoder):
        def model(x):
            pyro.module("dec", net)
            with pyro.plate("data", x.shape[0]):
                h = pyro.sample("h", dist.Normal(torch.zeros(L), 1.0).to_event(1))
                pyro.sample("obs", dist.Normal(decoder(h), 1.0).to_event(1), obs=x)

        return model

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("h", dist.Normal(torch.zeros(x.shape[0], L), 1.0).to_event(1))

    with pytest.raises(ValueError, match=r"extra leading dimensions.*FlattenLeading"):
        pyro_vae.log_likelihood(make(net), x, guide=guide, num_particles=10)
    result = pyro_vae.log_likelihood(make(pyro_vae.FlattenLeading(net)), x, guide=guide, num_particles=10)
    assert result.log_px.shape == (10,)
    # A VAE flattens the particle dimensions itself: the same decoder works in every tool.
    vae = pyro_vae.VAE(D, L, likelihood="normal", decoder=TwoDimensionalOnly(D * 1), likelihood_kwargs={"scale": 1.0})
    assert pyro_vae.log_likelihood(vae, x, num_particles=10).log_px.shape == (10,)
    assert pyro_vae.posterior_predictive(vae, x, 3).x.shape == (3, 10, D)
    assert pyro_vae.prior_predictive(vae, 4).x.shape == (4, D)


# ---------------------------------------------------------------------- nested plates, other names
def test_a_feature_plate_inside_the_data_plate_is_summed_per_point():
    W = orthogonal(D, L, [2.0, 1.0, 0.5], seed=11)
    g = torch.Generator().manual_seed(12)
    x = torch.randn(30, L, generator=g) @ W.T + SIGMA * torch.randn(30, D, generator=g)

    def model(x):
        with pyro.plate("units", x.shape[0], dim=-2):
            h = pyro.sample("h", dist.Normal(torch.zeros(1, L), 1.0).to_event(1))
            with pyro.plate("features", D, dim=-1):
                pyro.sample("pixel", dist.Normal((h @ W.T).squeeze(-2), SIGMA), obs=x)

    def guide(x):
        loc, sd = gaussian_posterior(W, SIGMA, x)
        with pyro.plate("units", x.shape[0], dim=-2):
            pyro.sample("h", dist.Normal(loc.unsqueeze(-2), sd).to_event(1))

    result = pyro_vae.log_likelihood(model, x, guide=guide, plate="units", num_particles=10)
    assert torch.allclose(result.log_px, gaussian_marginal(W, SIGMA, torch.zeros(D), x).double(), atol=1e-4)
    post = pyro_vae.posterior_predictive(model, x[:3], 5, guide=guide, plate="units")
    assert post.x.shape == (5, 3, D) and post.z.shape == (5, 3, L)


def test_sampling_decodes_any_latent_distribution_through_a_hand_written_model(conditional):
    program, x, y = conditional
    source = dist.Normal(torch.zeros(L), 0.1).to_event(1)
    drawn = pyro_vae.sample(program.model, 6, source=source, x=x[:1], plate="points", y=y[:1], seed=1)
    assert drawn.z.shape == (6, L) and drawn.x.shape == (6, D)
    assert torch.allclose(drawn.mean, drawn.z @ program.W.T + program.mean(y[:1]), atol=1e-5)
    again = pyro_vae.sample(program.model, 6, source=source, x=x[:1], plate="points", y=y[:1], seed=1)
    assert torch.equal(drawn.z, again.z)
    with pytest.raises(ValueError, match="event shape"):
        pyro_vae.sample(
            program.model, 2, source=dist.Normal(torch.zeros(L + 1), 1.0).to_event(1), x=x[:1], plate="points", y=y[:1]
        )


# ---------------------------------------------------------------------- parameters of the program
def test_tools_see_the_programs_own_pyro_params():
    """A program's ``pyro.param`` sites keep the caller's values inside every tool (the tools' private
    parameter store starts from the caller's), and nothing a tool registers reaches the caller."""
    from torch.distributions import constraints

    x = torch.randn(40, 3) * 2

    def model(x):
        scale = pyro.param("noise", torch.tensor(1.0), constraint=constraints.positive)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(torch.zeros(3), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z, scale).to_event(1), obs=x)

    def guide(x):
        scale = pyro.param("noise", torch.tensor(1.0), constraint=constraints.positive)
        with pyro.plate("data", x.shape[0]):
            # The exact posterior of z given x: N(x / (1 + s^2), s^2 / (1 + s^2)).
            pyro.sample("z", dist.Normal(x / (1 + scale**2), scale / (1 + scale**2).sqrt()).to_event(1))

    for value in (0.5, 2.0):
        pyro.get_param_store()["noise"] = torch.tensor(value)
        result = pyro_vae.log_likelihood(model, x, guide=guide, num_particles=2, psis=False)
        exact = dist.Normal(0.0, math.sqrt(1 + value**2)).log_prob(x).sum(-1)
        assert torch.allclose(result.log_px.float(), exact, atol=1e-4)
    assert set(pyro.get_param_store().keys()) == {"noise"}

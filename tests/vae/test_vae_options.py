"""The VAE's covariates (a conditional VAE) and its guide families (diagonal Gaussian, IAF)."""

import math

import pyro.distributions as dist
import pytest
import torch

import pyro_vae
from pyro_vae.data import one_hot

CLASSES, D = 4, 16


def blocks(n=400, seed=0):
    """Class k lights pixels 4k..4k+3 with probability 0.9, the others with probability 0.05."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(CLASSES, (n,), generator=g)
    probs = torch.full((n, D), 0.05)
    for k in range(CLASSES):
        probs[labels == k, 4 * k : 4 * k + 4] = 0.9
    return torch.bernoulli(probs, generator=g), labels


@pytest.fixture(scope="module")
def conditional_vae():
    x, labels = blocks()
    torch.manual_seed(0)
    vae = pyro_vae.VAE(D, 2, hidden_sizes=(32,), covariate_dim=CLASSES)
    pyro_vae.fit(vae, x, covariates={"y": one_hot(labels, CLASSES)}, epochs=30, batch_size=50, lr=1e-2)
    return vae, x, labels


def test_a_conditional_vae_generates_the_class_it_is_given(conditional_vae):
    vae, _, _ = conditional_vae
    for k in range(CLASSES):
        means = pyro_vae.sample(vae, 200, y=one_hot(k, CLASSES), seed=k).mean.mean(0)
        block = means[4 * k : 4 * k + 4].mean()
        rest = torch.cat([means[: 4 * k], means[4 * k + 4 :]]).mean()
        assert block > 0.7 and rest < 0.2, (k, block, rest)
    # The decoder is given the chosen y for every draw.
    drawn = pyro_vae.sample(vae, 5, y=one_hot(2, CLASSES), seed=0)
    assert torch.allclose(drawn.mean, vae.decode_mean(drawn.z, one_hot(2, CLASSES).expand(5, -1)), atol=1e-6)
    prior = pyro_vae.prior_predictive(vae, 6, covariates={"y": one_hot([0, 1, 2], CLASSES)})
    assert prior.x.shape == (6, D)


def test_a_conditional_vae_scores_data_with_its_labels(conditional_vae):
    vae, x, labels = conditional_vae
    right = pyro_vae.log_likelihood(vae, x, covariates={"y": one_hot(labels, CLASSES)}, num_particles=50)
    wrong = pyro_vae.log_likelihood(
        vae, x, covariates={"y": one_hot((labels + 1) % CLASSES, CLASSES)}, num_particles=50
    )
    assert right.mean > wrong.mean + 5.0  # the wrong class predicts the wrong block of pixels
    data = pyro_vae.to_inference_data(vae, x[:5], covariates={"y": one_hot(labels[:5], CLASSES)}, num_samples=4)
    assert data.posterior["z"].shape == (1, 4, 5, 2)


def test_conditional_vae_refuses_missing_or_misshapen_covariates(conditional_vae, tmp_path):
    vae, x, labels = conditional_vae
    with pytest.raises(ValueError, match=r"conditional \(covariate_dim=4\).*covariates=\{'y'"):
        pyro_vae.log_likelihood(vae, x, num_particles=10)
    with pytest.raises(ValueError, match=r"y must have shape"):
        pyro_vae.log_likelihood(vae, x, covariates={"y": one_hot(labels, 5)}, num_particles=10)
    with pytest.raises(ValueError, match="no covariates"):
        pyro_vae.log_likelihood(pyro_vae.VAE(D, 2), x, covariates={"y": one_hot(labels, CLASSES)}, num_particles=10)
    with pytest.raises(ValueError, match="labels must lie"):
        one_hot(torch.tensor([0, 4]), CLASSES)
    back = pyro_vae.load(pyro_vae.save(vae, tmp_path / "cvae.pt"))
    assert back.covariate_dim == CLASSES
    y = one_hot(labels[:10], CLASSES)
    assert torch.equal(
        pyro_vae.reconstruct(back, x[:10], covariates={"y": y}), pyro_vae.reconstruct(vae, x[:10], covariates={"y": y})
    )


def test_the_iaf_guide_is_a_flow_every_tool_reads_from_the_trace(tmp_path):
    x, _ = blocks(120)
    torch.manual_seed(0)
    vae = pyro_vae.VAE(D, 3, hidden_sizes=(16,), guide="iaf", guide_kwargs={"num_flows": 2, "hidden_dims": [12]})
    pyro_vae.fit(vae, x, epochs=2, batch_size=40)
    fn = vae.guide_family(*vae.encode(x[:4]))
    assert isinstance(fn, dist.TransformedDistribution) and len(fn.transforms) == 3  # flow, permutation, flow

    aggregate = pyro_vae.AggregatePosterior.from_data(vae, x[:30])
    assert len(aggregate.transforms) == 3
    z = aggregate.sample(20, seed=1)
    loc, scale = vae.encode(x[:30])
    components = vae.guide_family(loc, scale)
    direct = torch.logsumexp(components.log_prob(z[:, None, :]), dim=1) - math.log(30)
    assert torch.allclose(aggregate.log_prob(z), direct.detach(), atol=1e-4)

    result = pyro_vae.log_likelihood(vae, x, num_particles=100)
    assert result.pareto_k is not None and torch.isfinite(result.log_px).all()
    back = pyro_vae.load(pyro_vae.save(vae, tmp_path / "iaf.pt"))
    assert back.config()["guide"] == "iaf"
    again = pyro_vae.log_likelihood(back, x, num_particles=100)
    assert torch.equal(again.log_px, result.log_px)
    assert pyro_vae.diagnostics.active_units(vae, x).variance.shape == (3,)
    # The amortization gap refines each point's base Gaussian under the same shared flows, starting
    # at the encoder's: it cannot be (meaningfully) negative.
    gap = pyro_vae.diagnostics.amortization_gap(vae, x[:10], num_steps=30, num_particles=500).summary()
    assert gap["amortization_gap"] > -0.05


def test_guide_registry_refuses_bad_choices():
    with pytest.raises(ValueError, match="Unknown guide"):
        pyro_vae.VAE(D, 2, guide="maf")
    with pytest.raises(ValueError, match="latent_dim >= 2"):
        pyro_vae.VAE(D, 1, guide="iaf")
    with pytest.raises(ValueError, match="Bad arguments"):
        pyro_vae.VAE(D, 2, guide="iaf", guide_kwargs={"depth": 3})
    with pytest.raises(ValueError, match="VampPrior"):
        pyro_vae.VAE(D, 2, prior="vamp", covariate_dim=3)


def test_active_units_of_a_flow_guide_are_not_inflated_by_monte_carlo_noise():
    # q(z|x) does not depend on x at all (a zero encoder): no unit is active, whatever the flow.
    vae = pyro_vae.VAE(D, 3, hidden_sizes=(8,), guide="iaf")
    with torch.no_grad():
        for p in vae.encoder.parameters():
            p.zero_()
    x, _ = blocks(200)
    assert pyro_vae.diagnostics.active_units(vae, x).count == 0

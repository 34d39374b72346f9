"""Latent sources for new samples: fitted mixture, sample(source=...), and hole diagnostics."""

import pytest
import torch
from torch import nn

import pyro_vae
from pyro_vae import diagnostics
from pyro_vae.data import Split

L = 2


class FixedEncoder(nn.Module):
    """q(z|x) = N(x[:, :2] + shift, scale^2 I): codes known exactly."""

    def __init__(self, scale=0.05, shift=0.0):
        super().__init__()
        self.scale, self.shift = scale, shift
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        loc = x[:, :L] + self.shift + 0 * self.dummy
        return loc, torch.full_like(loc, self.scale)


def vae_with(encoder, input_dim=4):
    return pyro_vae.VAE(
        input_dim, L, hidden_sizes=(8,), likelihood="normal", likelihood_kwargs={"scale": 1.0}, encoder=encoder
    )


def three_clusters(n=3000, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[-3.0, 0.0], [0.0, 3.0], [3.0, -1.0]])
    which = torch.multinomial(torch.tensor([0.5, 0.3, 0.2]), n, replacement=True, generator=g)
    codes = centres[which] + 0.3 * torch.randn(n, L, generator=g)
    return torch.cat([codes, torch.randn(n, 2, generator=g)], dim=1), which


def test_fitted_mixture_recovers_a_known_mixture_and_is_saved_with_the_model(tmp_path):
    x, _ = three_clusters()
    vae = vae_with(FixedEncoder())
    mixture = pyro_vae.LatentMixture.fit(vae, x, 3, seed=0)
    order = mixture.loc[:, 0].argsort()
    assert torch.allclose(mixture.weights[order], torch.tensor([0.5, 0.3, 0.2], dtype=torch.float32), atol=0.03)
    expected = torch.tensor([[-3.0, 0.0], [0.0, 3.0], [3.0, -1.0]])
    assert torch.allclose(mixture.loc[order], expected, atol=0.05)
    # Fitted to draws z ~ q(z|x): component variance = cluster variance + posterior variance.
    cov = mixture.scale_tril @ mixture.scale_tril.transpose(-1, -2)
    assert torch.allclose(cov.diagonal(dim1=-2, dim2=-1), torch.full((3, 2), 0.3**2 + 0.05**2), atol=0.01)
    # Density against direct computation.
    z = torch.randn(10, L)
    direct = torch.stack(
        [
            mixture.weights[k].log() + torch.distributions.MultivariateNormal(mixture.loc[k], cov[k]).log_prob(z)
            for k in range(3)
        ]
    ).logsumexp(0)
    assert torch.allclose(mixture.log_prob(z), direct, atol=1e-5)
    assert mixture.memory_bytes == 3 * (1 + 2 + 3) * 4

    vae.latent_mixture = mixture
    path = pyro_vae.save(vae, tmp_path / "model.pt")
    again = pyro_vae.load(path, encoder=FixedEncoder())
    assert isinstance(again.latent_mixture, pyro_vae.LatentMixture)
    assert torch.equal(again.latent_mixture.loc, mixture.loc)
    assert torch.allclose(again.latent_mixture.log_prob(z), mixture.log_prob(z))
    assert torch.equal(
        pyro_vae.sample(again, 5, source="mixture", seed=2).z, pyro_vae.sample(vae, 5, source="mixture", seed=2).z
    )


def test_sample_sources_shapes_seeds_and_subsets():
    x, which = three_clusters(600)
    split = Split(x=x, labels=which, image_shape=(2, 2))
    vae = vae_with(FixedEncoder(scale=0.01))
    state = torch.get_rng_state()
    for source in ("prior", "aggregate", "subset"):
        out = pyro_vae.sample(vae, 32, source=source, x=split, seed=4)
        assert out.z.shape == (32, L) and out.x.shape == (32, 4) and out.mean.shape == (32, 4)
        assert torch.equal(out.z, pyro_vae.sample(vae, 32, source=source, x=split, seed=4).z)
    assert torch.equal(torch.get_rng_state(), state)
    # One label's subset: every code lies next to an encoded point of that label.
    subset = pyro_vae.sample(vae, 200, source="subset", x=split, label=1, seed=0).z
    distances = torch.cdist(subset, x[which == 1, :L]).min(1).values
    assert float(distances.max()) < 0.06
    # A ready AggregatePosterior is reused.
    aggregate = pyro_vae.AggregatePosterior.from_data(vae, x[:10])
    assert torch.equal(pyro_vae.sample(vae, 8, source=aggregate, seed=1).z, aggregate.sample(8, seed=1))


def test_generated_tensors_carry_no_autograd_graph():
    """What the generation tools return is data: no tensor holds the networks' graph (which would
    keep it in memory and make ``.numpy()`` and plotting fail)."""
    x, which = three_clusters(60)
    split = Split(x=x, labels=which, image_shape=(2, 2))
    vae = vae_with(FixedEncoder(scale=0.01))
    outputs = [pyro_vae.sample(vae, 8, source=source, x=split) for source in ("prior", "aggregate", "subset")]
    outputs += [pyro_vae.prior_predictive(vae, 8), pyro_vae.posterior_predictive(vae, x[:3], 2)]
    for out in outputs:
        tensors = [out.x, out.mean, *out.sites.values(), *out.means.values()]
        assert not any(t.requires_grad for t in tensors)
    assert not pyro_vae.reconstruct(vae, x[:3]).requires_grad
    assert not pyro_vae.get_latent(vae, x[:3]).requires_grad


def test_sample_refuses_bad_requests():
    x, which = three_clusters(50)
    vae = vae_with(FixedEncoder())
    with pytest.raises(ValueError, match="Unknown source"):
        pyro_vae.sample(vae, 4, source="posterior_mean", x=x)
    with pytest.raises(ValueError, match="no fitted mixture"):
        pyro_vae.sample(vae, 4, source="mixture")
    with pytest.raises(ValueError, match="needs the data x"):
        pyro_vae.sample(vae, 4, source="aggregate")
    with pytest.raises(ValueError, match="Split"):
        pyro_vae.sample(vae, 4, source="subset", x=x, label=1)
    with pytest.raises(ValueError, match="labels present"):
        pyro_vae.sample(vae, 4, source="subset", x=Split(x=x, labels=which, image_shape=(2, 2)), label=7)
    with pytest.raises(ValueError, match="num_samples"):
        pyro_vae.sample(vae, 0)
    vae.latent_mixture = pyro_vae.LatentMixture(2, 3)
    with pytest.raises(ValueError, match="latent_dim"):
        vae.config()


def test_holes_are_absent_when_the_aggregate_posterior_is_the_prior():
    x = torch.randn(2000, 4)
    covering = diagnostics.holes(vae_with(Standard()), x)
    # q(z|x) = N(0, I) for every x: q(z) = p(z) exactly.
    assert abs(covering.kl_q_p) < 1e-6 and abs(covering.kl_p_q) < 1e-6
    assert abs(covering.hole_share - 0.01) < 3 * covering.hole_share_se + 1e-9


def test_holes_measure_a_shifted_aggregate_posterior():
    x = torch.zeros(500, 4)
    shifted = diagnostics.holes(vae_with(Standard(shift=3.0)), x)
    # q(z) = N((3, 0), I) against p(z) = N(0, I): both KLs equal 3^2 / 2 = 4.5.
    assert shifted.kl_q_p == pytest.approx(4.5, abs=4 * shifted.kl_q_p_se)
    assert shifted.kl_p_q == pytest.approx(4.5, abs=4 * shifted.kl_p_q_se)
    # Most prior draws fall where q(z) is below the density that 99% of its own draws exceed.
    assert shifted.hole_share > 0.5
    with pytest.raises(ValueError, match="quantile"):
        diagnostics.holes(vae_with(Standard()), x, quantile=1.5)


@pytest.mark.parametrize("scale", [0.05, 0.3])
def test_held_out_codes_land_in_holes_at_the_nominal_rate(scale):
    # Sharp codes (scale 0.05) are where scoring a code with its own component sets the bar far
    # too high; the leave-one-out threshold works for sharp and broad codes alike.
    g = torch.Generator().manual_seed(3)
    train, test = torch.randn(1500, 4, generator=g), torch.randn(1500, 4, generator=g)
    vae = vae_with(FixedEncoder(scale=scale))
    found = diagnostics.holes(vae, train, quantile=0.05, num_samples=4000)
    aggregate = pyro_vae.AggregatePosterior.from_data(vae, train)
    held_out_codes = test[:, :L] + scale * torch.randn(1500, L, generator=g)
    share = float((aggregate.log_prob(held_out_codes).double() < found.threshold).double().mean())
    se = (0.05 * 0.95 / 1500) ** 0.5 + found.hole_share_se
    assert abs(share - 0.05) < 3.5 * se
    # The bar of the old rule (each code scored with its own component) misses by far for sharp codes.
    codes, rows = aggregate.sample_with_components(4000, seed=0)
    own_included = torch.quantile(aggregate.log_prob(codes).double(), 0.05)
    old_share = float((aggregate.log_prob(held_out_codes).double() < own_included).double().mean())
    if scale == 0.05:
        assert old_share > 0.15  # three times the nominal rate, in two dimensions already


def test_leave_one_out_density_is_the_mixture_of_the_other_components():
    loc, scale = torch.randn(5, 2), torch.rand(5, 2) + 0.2
    aggregate = pyro_vae.AggregatePosterior(loc, scale)
    z, leave = torch.randn(7, 2), torch.tensor([0, 1, 2, 3, 4, 0, 2])
    expected = torch.stack(
        [
            pyro_vae.AggregatePosterior(loc[torch.arange(5) != i], scale[torch.arange(5) != i]).log_prob(z[j : j + 1])[
                0
            ]
            for j, i in enumerate(leave.tolist())
        ]
    )
    assert torch.allclose(aggregate.log_prob(z, leave_out=leave), expected, atol=1e-6)


class Standard(nn.Module):
    """q(z|x) = N(shift e_1, I) whatever x is."""

    def __init__(self, shift=0.0):
        super().__init__()
        self.shift = shift
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        loc = torch.zeros(x.shape[0], L) + 0 * self.dummy
        loc[:, 0] = self.shift
        return loc, torch.ones_like(loc)

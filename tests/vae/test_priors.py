"""Priors: densities against direct computation, and end-to-end training on the digits."""

import math

import pytest
import torch
from pyro import poutine

import pyro_vae
from pyro_vae.vae.priors import FlowPrior, MixturePrior, VampPrior

PRIORS = [
    ("normal", {}),
    ("learned_normal", {}),
    ("mixture", {"num_components": 4}),
    ("vamp", {"num_components": 6}),
    ("flow", {"num_flows": 2, "hidden_dims": [16]}),
]


def gaussian_log_density(z, loc, scale):
    """log N(z; loc, diag(scale^2)) written out, for z (M, L) and loc, scale (L,)."""
    return (-0.5 * ((z - loc) / scale) ** 2 - scale.log() - 0.5 * math.log(2 * math.pi)).sum(-1)


def test_mixture_log_density_is_the_weighted_sum_of_gaussians():
    prior = MixturePrior(3, num_components=4, init_seed=1)
    with torch.no_grad():
        prior.logits.copy_(torch.tensor([0.5, -1.0, 0.0, 2.0]))
        prior.raw_scale.add_(torch.linspace(-1, 1, 12).reshape(4, 3))
    z = torch.randn(20, 3)
    weights = torch.softmax(prior.logits, 0)
    direct = sum(weights[k] * gaussian_log_density(z, prior.loc[k], prior.scale[k]).exp() for k in range(4)).log()
    assert torch.allclose(prior().log_prob(z), direct, atol=1e-5)


def test_vamp_prior_is_the_average_posterior_of_the_pseudo_inputs():
    vae = pyro_vae.VAE(6, 2, hidden_sizes=(8,), prior="vamp", prior_kwargs={"num_components": 5})
    prior = vae.prior
    z = torch.randn(30, 2)
    loc, scale = vae.encoder(prior.pseudo_inputs)
    direct = torch.stack([gaussian_log_density(z, loc[k], scale[k]) for k in range(5)]).exp().mean(0).log()
    assert torch.allclose(prior().log_prob(z), direct, atol=1e-5)
    # Pseudo-inputs live in data space and can start at data points.
    x = torch.rand(40, 6)
    prior.initialize_from(x, seed=3)
    assert all(any(torch.equal(u, row) for row in x) for u in prior.pseudo_inputs)
    with pytest.raises(ValueError, match="shape"):
        prior.initialize_from(torch.rand(3, 6))
    # The encoder belongs to the VAE once: the prior does not register it again.
    assert not any(name.startswith("prior.") and "encoder" in name for name, _ in vae.named_parameters())
    with pytest.raises(RuntimeError, match="not attached"):
        VampPrior(2).distribution()


def test_flow_prior_density_integrates_the_change_of_variables():
    prior = FlowPrior(2, num_flows=2, hidden_dims=[8])
    torch.manual_seed(0)
    with torch.no_grad():
        for p in prior.parameters():
            p.add_(0.3 * torch.randn_like(p))  # move away from the identity initialisation
        # Mass on a grid: the density integrates to about one over a wide box.
        grid = torch.linspace(-8, 8, 401)
        zz = torch.cartesian_prod(grid, grid)
        mass = prior().log_prob(zz).exp().sum() * (grid[1] - grid[0]) ** 2
    assert float(mass) == pytest.approx(1.0, abs=0.02)
    with pytest.raises(ValueError, match="latent_dim >= 2"):
        FlowPrior(1)


@pytest.mark.parametrize("name,kwargs", PRIORS)
def test_every_prior_trains_end_to_end_on_the_digits(name, kwargs, tmp_path):
    data = pyro_vae.data.load("digits", binarize="dynamic")
    torch.manual_seed(0)
    vae = pyro_vae.VAE(data.input_dim, 2, hidden_sizes=(32,), prior=name, prior_kwargs=kwargs)
    before = [p.detach().clone() for p in vae.prior.parameters()]
    trace = poutine.trace(vae.model).get_trace(data.val.x[:7])
    assert trace.nodes["z"]["fn"].event_shape == (2,) and trace.nodes["z"]["value"].shape == (7, 2)
    history = pyro_vae.fit(vae, data.train, val=data.val, epochs=3, batch_size=64, lr=3e-3)
    elbos = history.column("val_elbo")
    assert all(math.isfinite(e) for e in elbos) and elbos[-1] > elbos[0]
    # Learned priors are trained by the same SVI step.
    assert all(not torch.equal(b, p) for b, p in zip(before, vae.prior.parameters()))
    path = pyro_vae.save(vae, tmp_path / "model.pt")
    again = pyro_vae.load(path)
    z = torch.randn(9, 2)
    assert torch.allclose(again.prior().log_prob(z), vae.prior().log_prob(z))
    samples = pyro_vae.prior_predictive(again, 5, seed=0)
    assert samples.z.shape == (5, 2) and samples.mean.shape == (5, data.input_dim)


def test_bad_prior_arguments():
    with pytest.raises(ValueError, match="num_components"):
        pyro_vae.VAE(6, 2, prior="mixture", prior_kwargs={"num_components": 0})
    with pytest.raises(ValueError, match="Unknown prior"):
        pyro_vae.VAE(6, 2, prior="gaussian")

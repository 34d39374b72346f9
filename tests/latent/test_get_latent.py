"""get_latent: the posterior means E_q[z | x_i], checked against closed forms on one and two layers."""

import pytest
import torch

import pyro_vae
from helpers.programs import LabelledMixture, TwoLayerLinear


def test_a_vae_gives_its_encoder_means():
    vae = pyro_vae.VAE(6, 3, hidden_sizes=(8,))
    x = torch.bernoulli(torch.full((20, 6), 0.5), generator=torch.Generator().manual_seed(0))
    assert torch.allclose(pyro_vae.get_latent(vae, x), vae.encode(x)[0].detach())


def test_both_layers_of_a_hierarchy_match_their_closed_forms():
    program = TwoLayerLinear()
    x = program.simulate(200)
    mid = pyro_vae.get_latent(program.model, x, guide=program.guide, plate="rows", site="mid")
    assert torch.allclose(mid, program.posterior_mid(x)[0], atol=1e-5)  # the guide's own mean
    top = pyro_vae.get_latent(program.model, x, guide=program.guide, plate="rows", site="top")
    exact, var = program.posterior_top(x)
    error = (top - exact) / (var / 256).sqrt()  # a 256-draw average over mid
    assert error.abs().max() < 6 and abs(float(error.mean())) < 0.3
    with pytest.raises(ValueError, match="top|mid"):
        pyro_vae.get_latent(program.model, x, guide=program.guide, plate="rows")  # two sites: name one


def test_a_discrete_site_is_refused_by_name():
    mixture = LabelledMixture()
    x, _ = mixture.simulate(20)
    with pytest.raises(ValueError, match="label"):
        pyro_vae.get_latent(mixture.model, x, guide=mixture.guide, plate="items", site="label")


def test_counterfactual_decoding_under_another_covariate_value():
    from helpers.programs import ConditionalLinear, K

    program = ConditionalLinear()
    x, y = program.simulate(30)
    codes = pyro_vae.get_latent(program.model, x, guide=program.guide, covariates={"y": y}, plate="points")
    other = torch.nn.functional.one_hot((y.argmax(-1) + 1) % K, K).float()  # every point in another batch
    decoded = pyro_vae.latent.decode(program.model, codes, x=x, covariates={"y": other}, plate="points")
    assert torch.allclose(decoded.mean, codes @ program.W.T + program.mean(other), atol=1e-5)

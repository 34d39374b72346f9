"""The default networks' width: one hidden layer of 400, of 256 for the unbounded count likelihoods."""

import numpy as np
import pytest
import torch

import pyro_vae
from pyro_vae.cli import main as cli_main

D, L = 5, 2


def widths(vae):
    return [layer.out_features for layer in vae.encoder.body if isinstance(layer, torch.nn.Linear)]


@pytest.mark.parametrize(
    "likelihood, expected",
    [
        ("poisson", [256]),
        ("negative_binomial", [256]),
        ("zero_inflated_negative_binomial", [256]),
        ("bernoulli", [400]),
        ("normal", [400]),
    ],
)
def test_each_likelihood_brings_its_default_width(likelihood, expected):
    vae = pyro_vae.VAE(D, L, likelihood=likelihood)
    assert widths(vae) == expected
    assert vae.config()["hidden_sizes"] == expected
    assert widths(pyro_vae.VAE(D, L, likelihood=likelihood, hidden_sizes=(8, 4))) == [8, 4]
    assert widths(pyro_vae.VAE(D, L, likelihood=likelihood, hidden_sizes=())) == []


def test_a_saved_model_keeps_the_width_it_was_built_with(tmp_path):
    config = pyro_vae.VAE(D, L, likelihood="poisson", hidden_sizes=(400,)).config()
    assert widths(pyro_vae.VAE.from_config(config)) == [400]  # a count model saved with the old default
    vae = pyro_vae.VAE(D, L, likelihood="negative_binomial")
    assert widths(pyro_vae.load(pyro_vae.save(vae, tmp_path / "m.pt"))) == [256]


def test_bad_widths_are_refused():
    with pytest.raises(ValueError, match="hidden_sizes"):
        pyro_vae.VAE(D, L, likelihood="poisson", hidden_sizes=(0,))


def test_the_command_line_takes_the_likelihoods_width_unless_told(tmp_path):
    counts = torch.poisson(torch.full((60, D), 4.0), generator=torch.Generator().manual_seed(0))
    table = tmp_path / "counts.npy"
    np.save(table, counts.numpy())
    for hidden, expected in (([], [256]), (["--hidden", "16"], [16])):
        out = tmp_path / f"run{len(hidden)}"
        args = ["train", "--data", str(table), "--likelihood", "poisson", "--epochs", "1", "--out", str(out), *hidden]
        assert cli_main(args) == 0
        assert widths(pyro_vae.load(out / "model.pt")) == expected

"""What the encoder reads of x: log(1 + x) for unbounded counts by default, as scVI's encoder does."""

import pytest
import torch

import pyro_vae
from pyro_vae.cli import main as cli_main

D, L = 5, 2


@pytest.mark.parametrize(
    "likelihood, expected",
    [
        ("poisson", "log1p"),
        ("negative_binomial", "log1p"),
        ("zero_inflated_negative_binomial", "log1p"),
        ("bernoulli", "none"),
        ("binomial", "none"),
        ("normal", "none"),
    ],
)
def test_unbounded_counts_reach_the_encoder_as_log1p_by_default(likelihood, expected):
    kwargs = {"total_count": 16} if likelihood == "binomial" else None
    vae = pyro_vae.VAE(D, L, hidden_sizes=(8,), likelihood=likelihood, likelihood_kwargs=kwargs)
    assert vae.input_transform == expected
    x = torch.tensor([[0.0, 1.0, 3.0, 15.0, 16.0]])
    seen = torch.log1p(x) if expected == "log1p" else x / vae.input_scale
    assert torch.allclose(vae.scaled_inputs(x), seen)


def test_the_transform_is_switchable_combines_with_a_scale_and_is_saved(tmp_path):
    raw = pyro_vae.VAE(D, L, hidden_sizes=(8,), likelihood="poisson", input_transform="none", input_scale=10.0)
    x = torch.tensor([[0.0, 5.0, 10.0, 100.0, 1000.0]])
    assert torch.allclose(raw.scaled_inputs(x), x / 10.0)
    both = pyro_vae.VAE(D, L, hidden_sizes=(8,), likelihood="normal", input_transform="log1p", input_scale=2.0)
    assert torch.allclose(both.scaled_inputs(x), torch.log1p(x) / 2.0)
    for vae in (raw, both):
        back = pyro_vae.load(pyro_vae.save(vae, tmp_path / "m.pt"))
        assert back.input_transform == vae.input_transform and back.input_scale == vae.input_scale
        assert torch.equal(back.scaled_inputs(x), vae.scaled_inputs(x))


def test_a_model_saved_before_the_option_keeps_reading_raw_counts():
    config = pyro_vae.VAE(D, L, hidden_sizes=(8,), likelihood="poisson").config()
    del config["input_transform"]  # a description written before the option existed
    assert pyro_vae.VAE.from_config(config).input_transform == "none"


def test_bad_transforms_and_data_are_refused():
    with pytest.raises(ValueError, match="input_transform must be one of"):
        pyro_vae.VAE(D, L, likelihood="poisson", input_transform="log")
    with pytest.raises(ValueError, match="cannot be combined"):
        pyro_vae.VAE(D, L, likelihood="normal", standardize=True, input_transform="log1p")
    vae = pyro_vae.VAE(D, L, hidden_sizes=(8,), likelihood="normal", input_transform="log1p")
    with pytest.raises(ValueError, match="log\\(1 \\+ x\\)"):
        vae.check_data(torch.full((3, D), -2.0))


def test_vamp_pseudo_inputs_start_where_the_encoder_reads():
    vae = pyro_vae.VAE(D, L, hidden_sizes=(8,), likelihood="poisson", prior="vamp", prior_kwargs={"num_components": 3})
    counts = torch.poisson(torch.full((20, D), 30.0), generator=torch.Generator().manual_seed(0))
    vae.prior.initialize_from(counts, seed=1)
    rows = torch.randperm(20, generator=torch.Generator().manual_seed(1))[:3]
    assert torch.allclose(vae.prior.pseudo_inputs, torch.log1p(counts[rows]))


def test_the_command_line_chooses_the_transform(tmp_path):
    counts = torch.poisson(torch.full((120, D), 4.0), generator=torch.Generator().manual_seed(0))
    table = tmp_path / "counts.npy"
    import numpy as np

    np.save(table, counts.numpy())
    for choice, expected in (("auto", "log1p"), ("none", "none")):
        out = tmp_path / choice
        cli_main(
            ["train", "--data", str(table), "--likelihood", "poisson", "--input-transform", choice, "--epochs", "1",
             "--hidden", "8", "--out", str(out)]
        )  # fmt: skip
        assert pyro_vae.load(out / "model.pt").input_transform == expected

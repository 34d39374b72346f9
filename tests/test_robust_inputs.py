"""Inputs of every common type are converted to the model's dtype or refused up front, clearly."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

import pyro_vae

D = 6


@pytest.fixture
def vae():
    return pyro_vae.VAE(D, 2, hidden_sizes=(4,), likelihood="normal", likelihood_kwargs={"scale": 1.0})


@pytest.mark.parametrize(
    "convert",
    [
        lambda x: x.double(),
        lambda x: x.half(),
        lambda x: x.bfloat16(),
        lambda x: x.numpy(),
        lambda x: x.numpy().astype(np.float64),
        lambda x: pd.DataFrame(x.numpy()),
        lambda x: x > 0,
        lambda x: x.round().long(),
    ],
    ids=["float64", "float16", "bfloat16", "numpy32", "numpy64", "pandas", "bool", "int"],
)
def test_numeric_inputs_of_any_type_are_converted_to_the_models_dtype(vae, convert):
    x = torch.randn(5, D, generator=torch.Generator().manual_seed(0))
    converted = convert(x)
    reference = float32(converted)
    result = pyro_vae.log_likelihood(vae, converted, num_particles=10, seed=0)
    expected = pyro_vae.log_likelihood(vae, reference, num_particles=10, seed=0)
    assert torch.equal(result.log_px, expected.log_px)
    pyro_vae.fit(vae, converted, epochs=1, batch_size=5)


def float32(values):
    if isinstance(values, pd.DataFrame):
        values = values.to_numpy()
    if isinstance(values, np.ndarray):
        values = torch.from_numpy(np.array(values))  # a copy: pandas 3 hands out read-only arrays
    return values.float()


@pytest.mark.parametrize(
    "bad, error, message",
    [
        (torch.randn(5, D, dtype=torch.complex64), ValueError, "complex"),
        (np.array([["a"] * D] * 2), TypeError, "numpy array of"),
        ([[0.0] * D], TypeError, "torch.Tensor or numpy"),
    ],
)
def test_other_inputs_are_refused_with_a_clear_message(vae, bad, error, message):
    with pytest.raises(error, match=message):
        pyro_vae.log_likelihood(vae, bad, num_particles=10)


@pytest.mark.parametrize(
    "settings, message, error",
    [
        ({"lr": math.inf}, "lr", ValueError),
        ({"lr": math.nan}, "lr", ValueError),
        ({"epochs": True}, "epochs", TypeError),  # a wrong type is a TypeError
        ({"batch_size": 2.5}, "batch_size", TypeError),
        ({"kl_warmup_epochs": math.inf}, "kl_warmup_epochs", ValueError),
    ],
)
def test_bad_training_settings_are_refused_before_any_work(vae, settings, message, error):
    before = [p.clone() for p in vae.parameters()]
    with pytest.raises(error, match=message):
        pyro_vae.fit(vae, torch.randn(10, D), **{"epochs": 1, **settings})
    assert all(torch.equal(a, b) for a, b in zip(before, vae.parameters()))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"input_scale": math.inf}, "input_scale"),
        ({"input_scale": math.nan}, "input_scale"),
        ({"image_shape": (-2, -3)}, "image_shape"),
        ({"likelihood": "bernoulli", "likelihood_kwargs": {"num_levels": 256}}, "takes no options"),
    ],
)
def test_bad_model_options_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        pyro_vae.VAE(D, 2, **kwargs)


def test_a_read_only_array_is_copied_not_shared():
    from pyro_vae._util.checks import as_tensor

    values = np.ones((3, 2), dtype=np.float32)
    values.flags.writeable = False  # as pandas 3 hands out a frame's values, or a memory map
    tensor = as_tensor(values, "x")
    tensor[0, 0] = 5.0
    assert values[0, 0] == 1.0
    writable = np.ones((3, 2), dtype=np.float32)
    assert as_tensor(writable, "x").data_ptr() == writable.ctypes.data  # a writable one is shared

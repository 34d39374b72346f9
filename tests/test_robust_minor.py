"""Small inputs that used to crash, pass silently or allocate without bound: each is now a clear
error before any work."""

import json
import math

import numpy as np
import pytest
import torch

import pyro_vae
from pyro_vae._util.checks import as_tensor
from pyro_vae.data.readers import load_table
from pyro_vae.io.runs import read_config

X = torch.bernoulli(torch.full((30, 6), 0.5), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("budget", [True, 0, -5, math.inf, math.nan, "64"])
def test_memory_budgets_must_be_finite_positive_numbers(budget):
    vae = pyro_vae.VAE(6, 2, hidden_sizes=(4,))
    for call in (
        lambda: pyro_vae.log_likelihood(vae, X, num_particles=10, max_memory_mb=budget),
        lambda: pyro_vae.to_inference_data(vae, X, num_samples=5, max_memory_mb=budget),
        lambda: pyro_vae.diagnostics.elbo_surgery(vae, X, max_memory_mb=budget),
        lambda: pyro_vae.AggregatePosterior(torch.zeros(5, 2), torch.ones(5, 2), max_memory_mb=budget),
    ):
        with pytest.raises((TypeError, ValueError), match="max_memory_mb must be a finite positive number"):
            call()


def test_a_bad_seed_is_refused_before_the_model_changes():
    vae = pyro_vae.VAE(6, 2, hidden_sizes=(4,))
    before = {k: v.clone() for k, v in vae.state_dict().items()}
    with pytest.raises(TypeError, match="seed must be an int"):
        pyro_vae.fit(vae, X, epochs=1, seed="7")
    assert all(torch.equal(v, before[k]) for k, v in vae.state_dict().items())
    assert len(pyro_vae.fit(vae, X, epochs=1, seed=np.int64(7)).rows) == 1  # numpy integers are seeds


def test_seeds_out_of_range_and_covariates_a_vae_cannot_take_are_refused_before_the_model_changes():
    vae = pyro_vae.VAE(6, 2, hidden_sizes=(4,))
    before = {k: v.clone() for k, v in vae.state_dict().items()}
    with pytest.raises(ValueError, match="magnitude below 2\\*\\*62"):
        pyro_vae.fit(vae, X, epochs=1, seed=2**70)
    with pytest.raises(ValueError, match="no covariates"):
        pyro_vae.fit(vae, X, epochs=1, covariates={"y": torch.ones(len(X), 2)})
    assert all(torch.equal(v, before[k]) for k, v in vae.state_dict().items())
    for seed in ("x", 1.5):
        with pytest.raises(TypeError, match="seed must be an int"):
            pyro_vae.data.load("digits", seed=seed)
    assert len(pyro_vae.data.load("digits", seed=np.int64(1)).train) > 0


def test_draws_beyond_the_bound_are_refused_before_allocating():
    mixture = pyro_vae.LatentMixture(3, 2)
    with pytest.raises(ValueError, match="draw in parts"):
        mixture.sample(10**9)
    assert mixture.sample(5).shape == (5, 2)
    vae = pyro_vae.VAE(6, 2, hidden_sizes=(4,))
    mask = torch.ones_like(X, dtype=torch.bool)
    mask[:, 0] = torch.arange(len(X)) % 2 == 0
    for kwargs in ({"num_particles": 10**9}, {"num_samples": 10**8}):
        with pytest.raises(ValueError, match="max_values"):
            pyro_vae.impute(vae, X, mask=mask, **kwargs)


def test_one_hot_refuses_fractions_and_booleans():
    with pytest.raises(ValueError, match="whole numbers"):
        pyro_vae.data.one_hot(1.7, 3)
    with pytest.raises(ValueError, match="whole numbers"):
        pyro_vae.data.one_hot(torch.tensor([True, False]), 2)
    assert pyro_vae.data.one_hot([0, 2.0], 3).tolist() == [[1, 0, 0], [0, 0, 1]]


def test_an_aggregate_sample_beyond_one_gib_is_refused_before_allocating():
    agg = pyro_vae.AggregatePosterior(torch.zeros(5, 4), torch.ones(5, 4))
    with pytest.raises(ValueError, match="draw in parts"):
        agg.sample(10**9)
    assert agg.sample(10, seed=0).shape == (10, 4)


def test_counts_beyond_float32_are_refused_not_rounded(tmp_path):
    with pytest.raises(ValueError, match="16,777,217, beyond 16,777,216"):
        as_tensor(torch.tensor([[1, 2**24 + 1]]), "x", torch.float32)
    assert as_tensor(torch.tensor([[1, 2**24]]), "x", torch.float32).tolist() == [[1.0, 2.0**24]]
    # Counts held as float64 are counts too; real values of that size round as real values do.
    with pytest.raises(ValueError, match="33,554,433, beyond 16,777,216"):
        as_tensor(torch.tensor([[1.0, 2.0**25 + 1]], dtype=torch.float64), "x", torch.float32)
    assert as_tensor(torch.tensor([[0.5, 2.0**25 + 1]], dtype=torch.float64), "x", torch.float32).dtype == torch.float32
    assert as_tensor(torch.tensor([[1.0, 2.0**24]], dtype=torch.float64), "x", torch.float32).tolist() == [
        [1.0, 2.0**24]
    ]
    path = tmp_path / "counts.csv"
    path.write_text("a,b\n1,2\n3,33554433\n4,5\n")
    with pytest.raises(ValueError, match="counts would be rounded"):
        load_table(path)


def test_a_huge_sparse_config_is_refused_without_reading_it(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    with open(run / "config.json", "wb") as handle:  # 3 GB on paper, a few bytes on disk
        handle.write(b"{")
        handle.truncate(3 * 2**30)
    with pytest.raises(ValueError, match="longer than"):
        read_config(run)
    (run / "config.json").write_text(json.dumps({"data": "digits", "binarize": "none", "seed": 0, "model": {}}))
    assert read_config(run)["seed"] == 0


def test_each_method_has_defaults_of_its_own():
    vae = pyro_vae.VAE(6, 2, hidden_sizes=(4,))
    assert pyro_vae.log_likelihood(vae, X[:4]).num_particles == 1000  # importance samples
    ais = pyro_vae.log_likelihood(vae, X[:4], method="ais", ais_steps=10)
    assert ais.num_particles == 16 and ais.is_annealed  # chains, not importance sampling's 1,000


def test_a_likelihood_parameter_beyond_floating_point_is_refused():
    for spec in (math.inf, 1e400, math.nan):
        with pytest.raises(ValueError, match="finite positive number"):
            pyro_vae.VAE(6, 2, likelihood="normal", likelihood_kwargs={"scale": spec})

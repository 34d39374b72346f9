"""The three-sample data-copying test (Meehan, Chaudhuri & Dasgupta 2020) on generators of known behaviour."""

import pytest
import torch

from pyro_vae.diagnostics import quality
from pyro_vae.diagnostics.copying import _mann_whitney_z


def sets(seed=0, n_train=3000, n=1000, d=5):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n_train, d, generator=g), torch.randn(n, d, generator=g), g


def test_a_generator_that_perturbs_training_points_is_caught_copying():
    train, test, g = sets()
    copies = train[torch.randint(len(train), (1000,), generator=g)] + 0.05 * torch.randn(1000, 5, generator=g)
    result = quality.data_copying(train, test, copies, num_cells=10)
    assert result.statistic < -5 and result.p_value < 1e-6
    assert result.near_copies > 0.5
    assert result.summary()["nn_generated"]["q50"] < result.summary()["nn_test"]["q5"]


def test_a_generator_drawing_from_the_data_distribution_is_not_flagged():
    train, test, g = sets()
    fresh = torch.randn(1000, 5, generator=g)
    result = quality.data_copying(train, test, fresh, num_cells=10)
    spread = sum((c["test_count"] / 1000) ** 2 for c in result.cells) ** 0.5  # the null's sd (all cells kept)
    assert result.cells_dropped == 0
    assert abs(result.statistic) < 3.5 * spread
    assert result.p_value > 1e-3
    assert result.near_copies < 0.05


def test_an_underfitting_generator_sits_farther_than_new_data():
    train, test, g = sets()
    wide = 1.6 * torch.randn(1000, 5, generator=g)
    result = quality.data_copying(train, test, wide, num_cells=10)
    assert result.statistic > 3 and result.p_value > 0.99


def test_mann_whitney_z_matches_its_definition():
    test_d = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64)
    gen_d = torch.tensor([0.5, 2.0, 5.0], dtype=torch.float64)
    # Pairs with generated > test: 0.5 -> 0; 2.0 -> 1 plus a tie (0.5); 5.0 -> 4. U = 5.5.
    u = 5.5
    expected = (u - 6) / (12 * 8 / 12) ** 0.5
    assert _mann_whitney_z(test_d, gen_d) == pytest.approx(expected)


def test_bad_inputs_are_refused_with_the_reason():
    train, test, _ = sets(n_train=50, n=30)
    with pytest.raises(ValueError, match="same number of features"):
        quality.data_copying(train, test, torch.zeros(30, 4))
    with pytest.raises(ValueError, match="num_cells=100 needs at least as many training points"):
        quality.data_copying(train, test, test, num_cells=100)
    with pytest.raises(ValueError, match="No cell holds 20"):
        quality.data_copying(train, test[:10], test[:10], num_cells=5)
    with pytest.raises(ValueError, match="non-finite"):
        quality.data_copying(train, test, torch.full((30, 5), float("nan")))

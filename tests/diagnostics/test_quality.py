"""Sample-quality metrics: exact Fréchet distance, and real images beat noise and shuffled pixels."""

import pytest
import torch

import pyro_vae
from pyro_vae.diagnostics import quality


def test_frechet_distance_matches_the_closed_form_for_diagonal_gaussians():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(200_000, 3, generator=g, dtype=torch.float64) * torch.tensor([1.0, 2.0, 0.5]).double()
    b = torch.randn(200_000, 3, generator=g, dtype=torch.float64) * torch.tensor([1.5, 1.0, 0.5]).double() + 1.0
    # |m_a - m_b|^2 + sum (s_a - s_b)^2 for diagonal covariances.
    expected = 3 * 1.0 + (1 - 1.5) ** 2 + (2 - 1) ** 2 + 0.0
    assert quality.frechet_distance(a, b) == pytest.approx(expected, abs=0.05)
    assert quality.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)


def test_precision_recall_of_shifted_and_identical_sets():
    g = torch.Generator().manual_seed(1)
    real = torch.randn(1000, 2, generator=g)
    same = torch.randn(1000, 2, generator=g)
    far = same + 10.0
    half = torch.cat([same[:500], far[:500]])
    assert quality.precision_recall(real, same).precision > 0.9
    assert quality.precision_recall(real, far).precision == 0.0
    mixed = quality.precision_recall(real, half)
    assert 0.4 < mixed.precision < 0.55  # half of the generated set lies off the real manifold
    with pytest.raises(ValueError, match="k must be"):
        quality.precision_recall(real, same, k=5000)


@pytest.fixture(scope="module")
def digits_classifier(tmp_path_factory):
    data = pyro_vae.data.load("digits")
    cache = tmp_path_factory.mktemp("cache")
    classifier = quality.feature_classifier(data, epochs=30, cache_dir=cache)
    return data, classifier, cache


def test_classifier_is_trained_once_and_cached(digits_classifier):
    data, classifier, cache = digits_classifier
    assert classifier.test_accuracy > 0.85
    files = list((cache / "classifiers").glob("digits-*.pt"))
    assert len(files) == 1
    again = quality.feature_classifier(data, epochs=30, cache_dir=cache)
    assert again.test_accuracy == classifier.test_accuracy
    x = data.test.x[:5]
    assert torch.equal(again.features(x), classifier.features(x))
    files[0].write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="unreadable"):
        quality.feature_classifier(data, epochs=30, cache_dir=cache)


def test_held_out_real_images_score_better_than_noise_and_shuffled_pixels(digits_classifier):
    data, classifier, _ = digits_classifier
    real, held_out = data.train.x[:600], data.test.x
    g = torch.Generator().manual_seed(0)
    noise = torch.rand(held_out.shape, generator=g)
    shuffled = held_out[:, torch.randperm(held_out.shape[1], generator=g)]
    scores = {
        name: quality.sample_quality(classifier, real, images)
        for name, images in (("held_out", held_out), ("noise", noise), ("shuffled", shuffled))
    }
    for bad in ("noise", "shuffled"):
        assert scores["held_out"]["frechet_distance"] < scores[bad]["frechet_distance"] / 5
        assert scores["held_out"]["precision"] > scores[bad]["precision"] + 0.3
        assert scores["held_out"]["recall"] > scores[bad]["recall"] + 0.3

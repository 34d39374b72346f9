"""Library-size (size-factor) offsets for count likelihoods: mean = l_i * softmax(raw_i)."""

import pytest
import torch

import pyro_vae

D = 12


def counts(n, seed=0):
    """Two compositions, libraries spread over a factor of about 30, negative-binomial noise."""
    g = torch.Generator().manual_seed(seed)
    kind = torch.randint(2, (n,), generator=g)
    compositions = torch.softmax(torch.randn(2, D, generator=g) * 1.5, -1)
    library = torch.exp(torch.empty(n).uniform_(4.0, 7.5, generator=g))
    mean = library[:, None] * compositions[kind]
    rate = torch.distributions.Gamma(5.0, 5.0 / mean).sample()  # concentration 5
    return torch.poisson(rate, generator=g), library


@pytest.mark.parametrize("likelihood", ["poisson", "negative_binomial", "zero_inflated_negative_binomial"])
def test_the_mean_is_the_size_factor_times_a_composition(likelihood):
    vae = pyro_vae.VAE(
        D, 2, hidden_sizes=(8,), likelihood=likelihood, likelihood_kwargs={"size_factors": True}, input_scale=100.0
    )
    raw = torch.randn(5, D * vae.likelihood.params_per_feature)
    size = torch.tensor([10.0, 100.0, 1000.0, 1.0, 50.0])
    mean = vae.likelihood.mean(raw, size)
    if likelihood != "zero_inflated_negative_binomial":
        assert torch.allclose(mean.sum(-1), size, rtol=1e-4)
    assert torch.allclose(vae.likelihood(raw, size).mean, mean, rtol=1e-5)
    with pytest.raises(ValueError, match="size factors"):
        vae.likelihood(raw)


def test_size_factors_fit_counts_of_uneven_depth_better_and_generate_at_a_chosen_depth():
    x, library = counts(600)
    train, test = x[:500], x[500:]
    scores = {}
    for size_factors in (False, True):
        torch.manual_seed(0)
        vae = pyro_vae.VAE(
            D,
            2,
            hidden_sizes=(16,),
            likelihood="negative_binomial",
            input_scale=float(x.max()),
            likelihood_kwargs={"size_factors": size_factors},
        )
        pyro_vae.fit(vae, train, epochs=40, batch_size=100, lr=1e-2)
        scores[size_factors] = pyro_vae.log_likelihood(vae, test, num_particles=100)
    with_sizes, without = scores[True], scores[False]
    diff = with_sizes.log_px - without.log_px
    assert float(diff.mean()) > 3 * float(diff.std() / len(diff) ** 0.5)  # clearly better on held-out counts
    # Generated at a chosen depth: the means add up to it; by default at the training median.
    drawn = pyro_vae.sample(vae, 50, size_factor=torch.tensor([2000.0]), seed=0)
    assert torch.allclose(drawn.mean.sum(-1), torch.full((50,), 2000.0), rtol=1e-3)
    default = pyro_vae.sample(vae, 50, seed=0)
    assert torch.allclose(default.mean.sum(-1), vae.library_median.expand(50), rtol=1e-3)
    assert float(vae.library_median) == pytest.approx(float(train.sum(-1).median()))
    # Given size factors are used for evaluation too (here: the true libraries).
    given = pyro_vae.log_likelihood(vae, test, covariates={"size_factor": library[500:]}, num_particles=100)
    assert torch.isfinite(given.log_px).all()


def test_size_factors_are_refused_where_they_do_not_apply():
    with pytest.raises(ValueError, match="size_factor applies"):
        pyro_vae.log_likelihood(
            pyro_vae.VAE(D, 2, likelihood="poisson", input_scale=10.0),
            torch.ones(4, D),
            covariates={"size_factor": torch.ones(4)},
            num_particles=10,
        )
    with pytest.raises(ValueError, match="takes no options"):
        pyro_vae.VAE(D, 2, likelihood="bernoulli", likelihood_kwargs={"size_factors": True})


@pytest.mark.parametrize("size_factors", [False, True])
def test_the_negative_binomial_starts_at_the_method_of_moments_concentration(size_factors):
    # Counts of a constant composition over many genes (so that a cell's total stands for its size):
    # the moment estimate recovers each gene's concentration, and with size factors the spread of
    # library sizes is not taken for over-dispersion.
    g = torch.Generator().manual_seed(0)
    cells, truth = 20000, torch.tensor([0.5, 2.0, 8.0] * 20)
    composition = torch.full((60,), 1 / 60)
    size = torch.exp(5.0 + 0.6 * torch.randn(cells, 1, generator=g)) if size_factors else torch.full((cells, 1), 150.0)
    mean = size * composition
    torch.manual_seed(0)
    counts = torch.poisson(torch.distributions.Gamma(truth, truth / mean).sample(), generator=g)
    likelihood = pyro_vae.get_likelihood("negative_binomial", size_factors=size_factors)
    _, start = likelihood.initial_values(counts)
    # Per value of the truth, the median over its 20 genes (each gene's estimate has its sampling noise).
    medians = start["concentration"].reshape(20, 3).median(0).values
    assert torch.allclose(medians, truth[:3], rtol=0.1)
    if size_factors:  # read without the size factors, the library sizes look like strong over-dispersion
        plain = pyro_vae.get_likelihood("negative_binomial").initial_values(counts)[1]["concentration"]
        assert (plain < 0.7 * truth).all() and plain[2::3].median() < 0.25 * 8.0


@pytest.mark.parametrize("size_factors", [False, True])
def test_the_zero_inflated_model_starts_its_gate_at_the_zeros_the_negative_binomial_leaves(size_factors):
    # Plain negative-binomial counts start with the gate at its floor (1%), not at one half; with 30%
    # of the counts set to zero the gate starts well above it. Either way the mixture's mean starts
    # at each gene's mean count; with size factors, whose compositions sum to one, in proportion to it.
    g = torch.Generator().manual_seed(1)
    cells = 20000
    composition = torch.softmax(torch.randn(30, generator=g), -1)
    size = torch.exp(6.0 + 0.5 * torch.randn(cells, 1, generator=g)) if size_factors else torch.full((cells, 1), 400.0)
    torch.manual_seed(1)
    counts = torch.poisson(torch.distributions.Gamma(3.0, 3.0 / (size * composition)).sample(), generator=g)
    inflated = torch.where(torch.rand(counts.shape, generator=g) < 0.3, torch.zeros_like(counts), counts)
    likelihood = pyro_vae.get_likelihood("zero_inflated_negative_binomial", size_factors=size_factors)
    likelihood.build(30)
    for x, gate_range in ((counts, (0.01, 0.03)), (inflated, (0.1, 0.5))):
        (mean_raw, gate_logits), start = likelihood.initial_values(x)
        gate = torch.sigmoid(gate_logits)
        assert gate_range[0] - 1e-6 <= gate.median() <= gate_range[1]
        raw = torch.cat([mean_raw, gate_logits]).expand(cells, -1)
        mixture_mean = likelihood.mean(raw, x.sum(-1) if size_factors else None).mean(0)
        ratio = mixture_mean / x.mean(0)
        assert torch.allclose(ratio, ratio.mean() if size_factors else torch.ones(30), rtol=0.05)

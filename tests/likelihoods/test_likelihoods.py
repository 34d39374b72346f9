"""Every likelihood's log-probability against scipy.stats or a closed form, its support checks,
its positive parameters, and save/load of what it learned."""

import math

import numpy as np
import pytest
import torch
from scipy import special, stats

import pyro_vae
from pyro_vae.likelihoods import DiscretizedLogistic, get_likelihood
from pyro_vae.likelihoods.distributions import dequantize

B, D = 5, 4
GEN = torch.Generator().manual_seed(0)


def make(name, **kwargs):
    likelihood = get_likelihood(name, **kwargs)
    likelihood.build(D)
    return likelihood.double()


def raw_for(likelihood, scale=1.0):
    return scale * torch.randn(B, D * likelihood.params_per_feature, generator=GEN, dtype=torch.float64)


def softplus(x):
    return np.logaddexp(0.0, x)


def log_prob(likelihood, raw, x):
    return likelihood(raw).log_prob(x).detach().numpy()


def counts(high):
    return torch.randint(0, high + 1, (B, D), generator=GEN).double()


def unit_values():
    return torch.rand(B, D, generator=GEN, dtype=torch.float64) * 0.98 + 0.01


def test_bernoulli():
    lik = make("bernoulli")
    raw, x = raw_for(lik), torch.randint(0, 2, (B, D), generator=GEN).double()
    expected = stats.bernoulli.logpmf(x.numpy(), special.expit(raw.numpy())).sum(-1)
    np.testing.assert_allclose(log_prob(lik, raw, x), expected, rtol=1e-10)


def test_continuous_bernoulli_closed_form():
    lik = make("continuous_bernoulli")
    raw, x = raw_for(lik, 2.0), unit_values()
    lam = special.expit(raw.numpy())
    log_norm = np.log(2 * np.arctanh(1 - 2 * lam) / (1 - 2 * lam))
    expected = (log_norm + x.numpy() * np.log(lam) + (1 - x.numpy()) * np.log1p(-lam)).sum(-1)
    np.testing.assert_allclose(log_prob(lik, raw, x), expected, rtol=1e-8)


@pytest.mark.parametrize("name,scipy_dist", [("normal", stats.norm), ("laplace", stats.laplace)])
@pytest.mark.parametrize("mode", [0.7, "global", "feature", "decoder"])
def test_location_scale_families_in_every_scale_mode(name, scipy_dist, mode):
    lik = make(name, scale=mode, min_scale=0.05)
    with torch.no_grad():
        if mode == "feature":
            lik.scale.raw.copy_(torch.linspace(-1, 1, D))
    raw, x = raw_for(lik), torch.randn(B, D, generator=GEN, dtype=torch.float64)
    loc = raw[:, :D].numpy()
    if mode == "decoder":
        scale = 0.05 + softplus(raw[:, D:].numpy())
    elif mode == 0.7:
        scale = 0.7
    else:
        scale = 0.05 + softplus(lik.scale.raw.detach().numpy())
    expected = scipy_dist.logpdf(x.numpy(), loc=loc, scale=scale).sum(-1)
    np.testing.assert_allclose(log_prob(lik, raw, x), expected, rtol=1e-10)
    assert lik.params_per_feature == (2 if mode == "decoder" else 1)
    np.testing.assert_allclose(lik.mean(raw).detach().numpy(), loc)


def test_student_t_with_learned_degrees_of_freedom():
    lik = make("student_t", scale=0.5, df="global", init_df=3.0)
    raw, x = raw_for(lik), 3 * torch.randn(B, D, generator=GEN, dtype=torch.float64)
    expected = stats.t.logpdf(x.numpy(), df=3.0, loc=raw.numpy(), scale=0.5).sum(-1)
    np.testing.assert_allclose(log_prob(lik, raw, x), expected, rtol=1e-8)


def test_beta_mean_precision():
    lik = make("beta", concentration="decoder", min_concentration=0.1)
    raw, x = raw_for(lik), unit_values()
    mean = special.expit(raw[:, :D].numpy())
    kappa = 0.1 + softplus(raw[:, D:].numpy())
    expected = stats.beta.logpdf(x.numpy(), mean * kappa, (1 - mean) * kappa).sum(-1)
    np.testing.assert_allclose(log_prob(lik, raw, x), expected, rtol=1e-8)
    np.testing.assert_allclose(lik.mean(raw).detach().numpy(), mean)


def test_binomial():
    lik = make("binomial", total_count=16)
    raw, x = raw_for(lik), counts(16)
    expected = stats.binom.logpmf(x.numpy(), 16, special.expit(raw.numpy())).sum(-1)
    np.testing.assert_allclose(log_prob(lik, raw, x), expected, rtol=1e-10)
    np.testing.assert_allclose(lik.mean(raw).detach().numpy(), 16 * special.expit(raw.numpy()))


def test_poisson():
    lik = make("poisson")
    raw, x = raw_for(lik, 3.0), counts(30)
    rate = softplus(raw.numpy()) + 1e-6
    expected = stats.poisson.logpmf(x.numpy(), rate).sum(-1)
    np.testing.assert_allclose(log_prob(lik, raw, x), expected, rtol=1e-10)


@pytest.mark.parametrize("mode", [2.5, "global", "feature", "decoder"])
def test_negative_binomial(mode):
    lik = make("negative_binomial", concentration=mode)
    raw, x = raw_for(lik, 3.0), counts(40)
    mean = softplus(raw[:, :D].numpy()) + 1e-6
    if mode == "decoder":
        r = 1e-3 + softplus(raw[:, D:].numpy())
    elif mode == 2.5:
        r = 2.5
    else:
        r = 1e-3 + softplus(lik.concentration.raw.detach().numpy())
    expected = stats.nbinom.logpmf(x.numpy(), r, r / (r + mean)).sum(-1)
    np.testing.assert_allclose(log_prob(lik, raw, x), expected, rtol=1e-8)
    np.testing.assert_allclose(lik.mean(raw).detach().numpy(), mean)


def test_zero_inflated_negative_binomial_closed_form():
    lik = make("zero_inflated_negative_binomial", concentration=1.5)
    raw, x = raw_for(lik, 2.0), counts(20)
    x[:, 0] = 0  # make sure zeros occur
    mean, gate = softplus(raw[:, :D].numpy()) + 1e-6, special.expit(raw[:, D:].numpy())
    nb = stats.nbinom(1.5, 1.5 / (1.5 + mean))
    xs = x.numpy()
    expected = np.where(xs == 0, np.log(gate + (1 - gate) * nb.pmf(0)), np.log1p(-gate) + nb.logpmf(xs)).sum(-1)
    np.testing.assert_allclose(log_prob(lik, raw, x), expected, rtol=1e-8)
    np.testing.assert_allclose(lik.mean(raw).detach().numpy(), (1 - gate) * mean, rtol=1e-10)


def test_categorical_over_levels():
    lik = make("categorical", num_levels=7)
    raw, x = raw_for(lik), counts(6)
    logits = raw.numpy().reshape(B, 7, D).transpose(0, 2, 1)  # level j is the j-th block of D outputs
    log_p = special.log_softmax(logits, axis=-1)
    expected = np.take_along_axis(log_p, x.long().numpy()[..., None], -1)[..., 0].sum(-1)
    np.testing.assert_allclose(log_prob(lik, raw, x), expected, rtol=1e-10)
    np.testing.assert_allclose(lik.mean(raw).detach().numpy(), (np.exp(log_p) * np.arange(7)).sum(-1), rtol=1e-10)


def _logistic_masses(loc, scale, levels):
    """(..., L) masses of the binned logistic straight from scipy's cdf."""
    edges = np.arange(1, levels) / levels
    cdf = stats.logistic.cdf((edges - loc[..., None]) / scale[..., None])
    cdf = np.concatenate([np.zeros_like(cdf[..., :1]), cdf, np.ones_like(cdf[..., :1])], axis=-1)
    return np.diff(cdf, axis=-1)


@pytest.mark.parametrize("scale", [1e-3, 0.02, 0.3, 5.0])
def test_discretized_logistic_against_scipy_cdf(scale):
    levels = 256
    loc = torch.tensor([0.0, 0.3, 0.5, 0.999], dtype=torch.float64)
    s = torch.full_like(loc, scale)
    distribution = DiscretizedLogistic(loc.unsqueeze(-1), s.unsqueeze(-1), levels)
    k = torch.arange(levels, dtype=torch.float64).unsqueeze(-1)  # (L, 1) against batch (4,)
    log_mass = distribution.log_prob(k).T.numpy()  # (4, L)
    expected = _logistic_masses(loc.numpy(), s.numpy(), levels)
    mask = expected > 1e-300
    np.testing.assert_allclose(np.exp(log_mass[mask]), expected[mask], rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(np.exp(log_mass).sum(-1), 1.0, rtol=1e-9)
    np.testing.assert_allclose(distribution.mean.numpy(), (expected * np.arange(levels)).sum(-1), rtol=1e-9)


def test_discretized_logistic_mixture_likelihood():
    lik = make("discretized_logistic", num_levels=16, num_components=3)
    assert lik.params_per_feature == 3 * 2 + 3  # locations, mixture logits, decoder scales
    raw, x = raw_for(lik), counts(15)
    parts = raw.numpy().reshape(B, 9, D)
    loc, logits = special.expit(parts[:, 0:3]), parts[:, 3:6]
    scale = 1e-3 + softplus(parts[:, 6:9])
    weights = special.softmax(logits, axis=1)
    masses = _logistic_masses(loc, scale, 16)  # (B, 3, D, L)
    per_value = (weights[..., None] * masses).sum(1)  # (B, D, L)
    expected = np.log(np.take_along_axis(per_value, x.long().numpy()[..., None], -1)[..., 0]).sum(-1)
    np.testing.assert_allclose(log_prob(lik, raw, x), expected, rtol=1e-8)


def test_dequantised_density_is_the_stated_bound_and_converges_to_the_bin_mass():
    levels = 8
    lik = make("normal", scale=0.2, num_levels=levels)
    assert lik.is_discrete and lik.measure == "mass"
    raw, x = raw_for(lik) * 0.3 + 0.5, counts(levels - 1)
    torch.manual_seed(3)
    got = log_prob(lik, raw, x)
    torch.manual_seed(3)
    u = torch.rand(B, D, dtype=torch.float64) * (1 - 2e-6) + 1e-6
    expected = stats.norm.logpdf(((x + u) / levels).numpy(), raw.numpy(), 0.2).sum(-1) - D * math.log(levels)
    np.testing.assert_allclose(got, expected, rtol=1e-10)
    # Averaging exp(log_prob) over the noise gives the mass of the bin [k/L, (k+1)/L), exactly.
    single = get_likelihood("normal", scale=0.2, num_levels=levels).double()
    single.build(1)
    k = torch.arange(levels, dtype=torch.float64).unsqueeze(-1)
    raw1 = torch.full((20000, levels, 1), 0.4, dtype=torch.float64)
    draws = single(raw1).log_prob(k).exp()  # (draws, levels): fresh noise in every entry
    mass = stats.norm.cdf((k.numpy() + 1) / levels, 0.4, 0.2) - stats.norm.cdf(k.numpy() / levels, 0.4, 0.2)
    se = draws.std(0).numpy() / math.sqrt(len(draws))
    assert np.all(np.abs(draws.mean(0).numpy() - mass[:, 0]) < 4 * se + 1e-12)


def test_dequantised_points_stay_inside_the_open_interval_in_float32():
    # 255 + u rounds to 256 in float32 for u near 1; unclamped, the Beta log-density would be infinite.
    top = torch.full((4,), 255.0)
    noise = torch.tensor([1e-6, 0.5, 1 - 1e-6, 1 - 1e-7])
    assert ((top + noise) / 256 == 1).any()
    x = dequantize(top, noise, 256)
    assert (x < 1).all() and (x > 0).all()
    assert dequantize(torch.zeros(1), torch.full((1,), 1e-6), 256).item() > 0
    lik = make("beta", concentration=3.0, num_levels=256).float()
    raw = torch.zeros(1, D)
    torch.manual_seed(0)
    values = torch.full((200000, D), 255.0)  # about 7.6e-6 of these draws round onto 1 unclamped
    assert torch.isfinite(lik(raw).log_prob(values)).all()


def test_dequantised_samples_and_means_are_levels():
    lik = make("beta", num_levels=256)
    raw = raw_for(lik)
    sample = lik(raw).sample()
    assert torch.equal(sample, sample.round()) and sample.min() >= 0 and sample.max() <= 255
    mean = lik.mean(raw)
    np.testing.assert_allclose(mean.detach().numpy(), (256 * special.expit(raw.numpy()) - 0.5).clip(0, 255))


INVALID = [
    ("bernoulli", {}, 0.5, "values 0 or 1"),
    ("continuous_bernoulli", {}, 1.5, r"values in \[0"),
    ("beta", {}, 0.0, "strictly between 0 and 1"),
    ("binomial", {"total_count": 16}, 17.0, "integers 0 to 16"),
    ("binomial", {"total_count": 16}, 2.5, "integers 0 to 16"),
    ("poisson", {}, -1.0, "non-negative integers"),
    ("negative_binomial", {}, 0.5, "non-negative integers"),
    ("zero_inflated_negative_binomial", {}, -2.0, "non-negative integers"),
    ("categorical", {"num_levels": 256}, 256.0, "integers 0 to 255"),
    ("discretized_logistic", {"num_levels": 256}, 3.5, "integers 0 to 255"),
    ("normal", {"num_levels": 256}, 0.5, "integers 0 to 255"),
]


@pytest.mark.parametrize("name,kwargs,bad,words", INVALID)
def test_support_errors_name_the_likelihood_and_the_support(name, kwargs, bad, words):
    vae = pyro_vae.VAE(D, 2, hidden_sizes=(4,), likelihood=name, likelihood_kwargs=kwargs)
    x = torch.zeros(3, D) + (0.5 if name in ("beta", "continuous_bernoulli") else 0.0)
    x[1, 2] = bad
    with pytest.raises(ValueError, match=words) as error:
        pyro_vae.fit(vae, x, epochs=1)
    assert repr(name) in str(error.value)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"scale": "sometimes"}, "positive number or one of"),
        ({"scale": -1.0}, "positive number or one of"),
        ({"scale": "global", "min_scale": 0.5, "init_scale": 0.1}, "must exceed"),
        ({"num_levels": 1}, "at least 2"),
        ({"bins": 3}, "Bad arguments for the 'normal' likelihood"),
    ],
)
def test_bad_likelihood_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        get_likelihood("normal", **kwargs)


def test_learned_positive_parameters_never_fall_below_their_floor():
    for mode in ("global", "feature", "decoder"):
        lik = make("laplace", scale=mode, min_scale=0.01)
        raw = torch.full((B, D * lik.params_per_feature), -1e4, dtype=torch.float64)
        with torch.no_grad():
            if mode != "decoder":
                lik.scale.raw.fill_(-1e4)
        scale = lik(raw).base_dist.scale
        assert torch.all(scale == 0.01), mode


def test_decoder_width_mismatch_is_explained():
    lik = make("normal", scale="decoder")
    with pytest.raises(ValueError, match=r"needs 4 \* 2"):
        lik(torch.zeros(2, D))


CHECKPOINT_CASES = [
    ("negative_binomial", {"concentration": "feature"}, "counts"),
    ("normal", {"scale": "global", "num_levels": 17}, "levels"),
    ("discretized_logistic", {"num_levels": 17, "num_components": 2, "scale": "feature"}, "levels"),
    ("student_t", {"df": "feature", "scale": "decoder"}, "real"),
]


@pytest.mark.parametrize("name,kwargs,kind", CHECKPOINT_CASES)
def test_save_load_keeps_the_likelihood_and_what_it_learned(tmp_path, name, kwargs, kind):
    torch.manual_seed(0)
    x = {
        "counts": torch.poisson(torch.full((40, D), 3.0)),
        "levels": counts(16).float().repeat(8, 1),
        "real": torch.randn(40, D),
    }[kind]
    vae = pyro_vae.VAE(D, 2, hidden_sizes=(8,), likelihood=name, likelihood_kwargs=kwargs)
    before = {k: v.clone() for k, v in vae.likelihood.state_dict().items()}
    pyro_vae.fit(vae, x, epochs=3, batch_size=20, lr=0.05)
    learned = vae.likelihood.state_dict()
    assert learned and any(not torch.equal(before[k], learned[k]) for k in learned)
    pyro_vae.save(vae, tmp_path / "m.pt")
    back = pyro_vae.load(tmp_path / "m.pt")
    assert type(back.likelihood) is type(vae.likelihood) and back.likelihood.config == vae.likelihood.config
    assert back.likelihood.describe() == vae.likelihood.describe()
    for key, value in learned.items():
        assert torch.equal(back.likelihood.state_dict()[key], value)
    raw = vae.decoder(torch.randn(6, 2))
    torch.manual_seed(1)
    a = vae.likelihood(raw).log_prob(x[:6])
    torch.manual_seed(1)
    b = back.likelihood(raw).log_prob(x[:6])
    assert torch.allclose(a, b)


def test_models_saved_before_positive_parameters_still_load(tmp_path):
    vae = pyro_vae.VAE(D, 2, hidden_sizes=(8,), likelihood="normal")
    state = vae.state_dict()
    state["likelihood.raw_scale"] = state.pop("likelihood.scale.raw") + 1.0
    back = pyro_vae.VAE(D, 2, hidden_sizes=(8,), likelihood="normal")
    back.load_state_dict(state)
    assert torch.equal(back.likelihood.scale.raw, state["likelihood.raw_scale"])


def test_every_registered_likelihood_declares_itself():
    kwargs = {"binomial": {"total_count": 4}}
    for name in pyro_vae.LIKELIHOODS:
        if name.startswith("test_"):
            continue
        lik = make(name, **kwargs.get(name, {}))
        described = lik.describe()
        assert described["measure"] in ("mass", "density") and described["event_shape"] == f"({D},)"
        raw = raw_for(lik)
        distribution = lik(raw)
        assert distribution.event_shape == (D,) and distribution.batch_shape == (B,)
        assert lik.mean(raw).shape == (B, D)
        sample = distribution.sample()
        assert bool(lik.support.check(sample).all()), name


def test_the_documented_registration_example_works():
    import pyro.distributions as dist

    @pyro_vae.register_likelihood("test_gumbel")
    class GumbelLikelihood(pyro_vae.DensityLikelihood):
        def __init__(self, scale="global", num_levels=None):
            super().__init__(num_levels=num_levels, scale=scale)
            self.scale = self.positive("scale", scale, floor=1e-3, init=0.1)

        def density(self, raw):
            loc, scale = self.split(raw)
            return dist.Gumbel(loc, scale.expand_as(loc)).to_event(1)

    try:
        lik = make("test_gumbel", scale="decoder")
        raw, x = raw_for(lik), torch.randn(B, D, generator=GEN, dtype=torch.float64)
        scale = 1e-3 + softplus(raw[:, D:].numpy())
        expected = stats.gumbel_r.logpdf(x.numpy(), raw[:, :D].numpy(), scale).sum(-1)
        np.testing.assert_allclose(log_prob(lik, raw, x), expected, rtol=1e-10)
        vae = pyro_vae.VAE(D, 2, hidden_sizes=(4,), likelihood="test_gumbel", likelihood_kwargs={"num_levels": 16})
        assert vae.likelihood.is_discrete and vae.input_scale == 15.0
        pyro_vae.fit(vae, counts(15).float(), epochs=1)
    finally:
        pyro_vae.LIKELIHOODS.pop("test_gumbel")

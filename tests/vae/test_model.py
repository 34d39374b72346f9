import pytest
import torch
from pyro import poutine
from torch import nn

import pyro_vae

N, D, L = 40, 12, 3


def binary_data(n=N, d=D, seed=0):
    return torch.bernoulli(torch.full((n, d), 0.3), generator=torch.Generator().manual_seed(seed))


def test_sites_shapes_and_plate_scale():
    vae = pyro_vae.VAE(D, L, hidden_sizes=(16,))
    x = binary_data(8)
    indices = torch.arange(8, 16)
    guide_trace = poutine.trace(vae.guide).get_trace(x, indices=indices, num_data=N)
    model_trace = poutine.trace(poutine.replay(vae.model, trace=guide_trace)).get_trace(x, indices=indices, num_data=N)
    z, obs = model_trace.nodes["z"], model_trace.nodes["x"]
    assert z["value"].shape == (8, L) and z["fn"].event_shape == (L,)
    assert obs["is_observed"] and obs["value"].shape == (8, D) and obs["fn"].event_shape == (D,)
    for site in (z, obs, guide_trace.nodes["z"]):
        assert [f.name for f in site["cond_indep_stack"]] == ["data"]
        assert site["scale"] == pytest.approx(N / 8)
    assert torch.equal(model_trace.nodes["data"]["value"], indices)
    params = {n for n, s in model_trace.nodes.items() if s["type"] == "param"}
    assert any(p.startswith("decoder$$$") for p in params)
    assert any(n.startswith("encoder$$$") for n, s in guide_trace.nodes.items() if s["type"] == "param")


def test_minibatch_elbos_average_to_the_full_data_elbo():
    """Over a partition into equal minibatches, the plate-scaled minibatch ELBOs average exactly to
    the full-data ELBO (for the same z per point): each point enters with weight N/B, in K = N/B
    batches. A random minibatch is therefore an unbiased estimate."""
    vae = pyro_vae.VAE(D, L, hidden_sizes=(16,))
    x = binary_data()
    full_guide = poutine.trace(vae.guide).get_trace(x)
    full_model = poutine.trace(poutine.replay(vae.model, trace=full_guide)).get_trace(x)
    full = full_model.log_prob_sum() - full_guide.log_prob_sum()

    order = torch.randperm(N, generator=torch.Generator().manual_seed(1))
    batch = 8
    estimates = []
    for start in range(0, N, batch):
        idx = order[start : start + batch]
        # Replay the full run's z for these points through a minibatch guide.
        template = poutine.trace(vae.guide).get_trace(x[idx], indices=idx, num_data=N)
        template.nodes["z"]["value"] = full_guide.nodes["z"]["value"][idx]
        g = poutine.trace(poutine.replay(vae.guide, trace=template)).get_trace(x[idx], indices=idx, num_data=N)
        m = poutine.trace(poutine.replay(vae.model, trace=g)).get_trace(x[idx], indices=idx, num_data=N)
        estimates.append(m.log_prob_sum() - g.log_prob_sum())
    assert torch.stack(estimates).mean().item() == pytest.approx(full.item(), rel=1e-5)


def test_kl_weight_scales_latent_sites_only():
    vae = pyro_vae.VAE(D, L, hidden_sizes=(16,))
    x = binary_data(4)
    trace = poutine.trace(vae.model).get_trace(x, kl_weight=0.25)
    assert trace.nodes["z"]["scale"] == pytest.approx(0.25)
    assert trace.nodes["x"]["scale"] == 1.0


class TinyEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(D, 2 * L)

    def forward(self, x):
        loc, s = self.lin(x).chunk(2, -1)
        return loc, nn.functional.softplus(s) + 1e-3


def test_user_networks_are_accepted_and_trained():
    decoder = nn.Sequential(nn.Linear(L, 10), nn.Tanh(), nn.Linear(10, D))
    vae = pyro_vae.VAE(D, L, encoder=TinyEncoder(), decoder=decoder)
    before = decoder[0].weight.clone()
    pyro_vae.fit(vae, binary_data(), epochs=1, batch_size=10)
    assert not torch.equal(before, decoder[0].weight)


@pytest.mark.parametrize(
    "bad, message",
    [
        (torch.full((5, D), float("nan")), "NaN"),
        (torch.full((5, D), float("inf")), "non-finite"),
        (torch.zeros(5, D + 1), "features per point"),
        (torch.zeros(D), "shape"),
        (torch.zeros(0, D), "N >= 1"),
        (torch.full((5, D), 0.5), "outside the support"),
        ([[0.0] * D], "torch.Tensor or numpy"),
    ],
)
def test_bad_training_data_is_refused_before_any_work(bad, message):
    vae = pyro_vae.VAE(D, L, hidden_sizes=(8,))
    before = [p.clone() for p in vae.parameters()]
    with pytest.raises((ValueError, TypeError), match=message):
        pyro_vae.fit(vae, bad, epochs=1)
    assert all(torch.equal(a, b) for a, b in zip(before, vae.parameters()))


def test_data_checked_in_blocks_finds_a_single_bad_value_anywhere_and_counts_all_of_them():
    # Large enough for many 256 KB blocks; one bad value in the last block, then two in the middle.
    vae = pyro_vae.VAE(D, L, hidden_sizes=(8,))
    x = torch.bernoulli(torch.full((200_000, D), 0.3), generator=torch.Generator().manual_seed(0))
    assert vae.check_data(x) is x
    x[-1, -1] = float("nan")
    with pytest.raises(ValueError, match=r"1 non-finite value\(s\) \(NaN\)"):
        vae.check_data(x)
    x[-1, -1] = 1.0
    x[100_000, 3] = x[100_001, 0] = 0.5
    with pytest.raises(ValueError, match=r"has 2 value\(s\) outside the support"):
        vae.check_data(x)


def test_a_likelihood_with_its_own_validate_still_sees_all_the_data():
    vae = pyro_vae.VAE(D, L, hidden_sizes=(8,))
    seen = []

    class Strict(type(vae.likelihood)):
        def validate(self, x, what="data"):
            seen.append(tuple(x.shape))
            if bool((x.sum(-1) == 0).any()):
                raise ValueError(f"{what} has an empty row")

    vae.likelihood.__class__ = Strict
    vae.check_data(torch.ones(4, D))
    assert seen == [(4, D)]
    with pytest.raises(ValueError, match="empty row"):
        vae.check_data(torch.zeros(4, D))


def test_support_errors_explain_the_fix():
    vae = pyro_vae.VAE(D, L, likelihood="continuous_bernoulli")
    with pytest.raises(ValueError, match=r"\[0.0, 1.0\].*Scale the data"):
        vae.check_data(torch.full((3, D), 2.0))
    with pytest.raises(ValueError, match="binarize"):
        pyro_vae.VAE(D, L).check_data(torch.full((3, D), 0.5))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"likelihood": "gamma-ray"}, "Unknown likelihood"),
        ({"prior": "uniformish"}, "Unknown prior"),
        ({"hidden_sizes": (0,)}, "positive"),
        ({"image_shape": (5, 5)}, "does not hold"),
        ({"likelihood": "normal", "likelihood_kwargs": {"scale": -1.0}}, "positive number"),
    ],
)
def test_bad_configuration_is_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        pyro_vae.VAE(D, L, **kwargs)


def test_registries_take_new_entries_in_a_few_lines():
    import pyro.distributions as dist
    from torch.distributions import constraints

    @pyro_vae.register_likelihood("test_laplace")
    class Laplace(pyro_vae.Likelihood):
        support = constraints.real

        def distribution(self, raw):
            return dist.Laplace(raw, 0.5).to_event(1)

    @pyro_vae.register_prior("test_student")
    class Student(pyro_vae.Prior):
        def distribution(self):
            return dist.StudentT(4.0, self.zeros, self.ones).to_event(1)

    try:
        vae = pyro_vae.VAE(D, L, likelihood="test_laplace", prior="test_student", hidden_sizes=(8,))
        history = pyro_vae.fit(vae, torch.randn(20, D), epochs=2, batch_size=10)
        assert len(history.rows) == 2
        with pytest.raises(ValueError, match="already registered"):
            pyro_vae.register_likelihood("test_laplace")(Laplace)
    finally:
        pyro_vae.LIKELIHOODS.pop("test_laplace")
        pyro_vae.PRIORS.pop("test_student")

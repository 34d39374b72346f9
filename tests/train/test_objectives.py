"""The per-point importance-weighted objective, the gated dense layer and the matrix-product mixture."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch

import pyro_vae
from helpers.ppca import ExactEncoder, linear_gaussian_vae, log_marginal, simulate
from helpers.programs import SIGMA, ConditionalLinear, D, L, gaussian_posterior
from pyro_vae.distributions.mixtures import DiagonalNormalMixture
from pyro_vae.objectives import ImportanceWeightedELBO
from pyro_vae.vae.networks import GatedDense


def bound(objective, model, guide, *args, repeats=1, **kwargs):
    with pyro.validation_enabled(False):
        return torch.tensor(
            [-objective.loss(model, guide, *args, **kwargs) for _ in range(repeats)], dtype=torch.float64
        )


@pytest.mark.parametrize("particles", [1, 7])
def test_exact_guide_gives_the_exact_log_marginal_for_any_number_of_particles(particles):
    program = ConditionalLinear()
    x, y = program.simulate(50)
    exact = program.log_marginal(x, y).sum().item()
    objective = ImportanceWeightedELBO(particles, plate="points")
    assert bound(objective, program.model, program.guide, x, y).item() == pytest.approx(exact, abs=2e-3)


def test_bound_rises_with_particles_towards_the_log_marginal_for_an_inexact_guide():
    program = ConditionalLinear()
    x, y = program.simulate(50)
    exact = program.log_marginal(x, y).sum().item()
    torch.manual_seed(0)
    means = {}
    for particles in (1, 10, 2000):
        values = bound(
            ImportanceWeightedELBO(particles, plate="points"), program.model, program.inexact_guide, x, y, repeats=10
        )
        means[particles] = (values.mean().item(), values.std().item() / math.sqrt(10))
    (m1, s1), (m10, s10), (m2000, s2000) = means[1], means[10], means[2000]
    assert m1 + 5 * (s1 + s10) < m10 < m2000 < exact + 5 * s2000
    assert exact - m2000 < 0.02 * abs(exact - m1)  # 2,000 particles close nearly all of the ELBO's gap


def test_one_particle_matches_trace_elbo_in_expectation():
    program = ConditionalLinear()
    x, y = program.simulate(50)
    torch.manual_seed(1)
    iwae = bound(ImportanceWeightedELBO(1, plate="points"), program.model, program.inexact_guide, x, y, repeats=200)
    elbo = bound(pyro.infer.Trace_ELBO(), program.model, program.inexact_guide, x, y, repeats=200)
    se = math.sqrt(iwae.var().item() / 200 + elbo.var().item() / 200)
    assert abs(iwae.mean().item() - elbo.mean().item()) < 4 * se


def test_subsampled_minibatch_is_scaled_by_num_data_over_batch():
    W, b, x = simulate(40, 6, 2, 0.5)
    vae = pyro_vae.VAE(
        6, 2, hidden_sizes=(), likelihood="normal", likelihood_kwargs={"scale": 0.5}, encoder=ExactEncoder(W, b, 0.5)
    )
    with torch.no_grad():
        vae.decoder.net[0].weight.copy_(W)
        vae.decoder.net[0].bias.copy_(b)
    rows = torch.arange(10, 20)
    exact = log_marginal(W, b, 0.5, x[rows]).sum().item() * 40 / 10
    value = bound(ImportanceWeightedELBO(3), vae.model, vae.guide, x[rows], indices=rows, num_data=40)
    assert value.item() == pytest.approx(exact, rel=1e-4)


@pytest.mark.parametrize("declared", ["minibatch", "sizeless"])
def test_a_plate_fit_scales_gives_each_point_its_own_unscaled_bound(declared):
    """A program whose plate runs over the minibatch (sized B, or without a size) is scaled to N by
    fit; each point's log-weight must not carry that N / B, or the bound is another objective. The
    reference declares the plate as pyro.plate("data", N, subsample=rows), on the same draws."""
    from pyro_vae.program.protocol import as_program
    from pyro_vae.train.trainee import ProgramTrainee

    program = ConditionalLinear()
    x, y = program.simulate(40)
    rows = torch.arange(10, 20)

    def model(x, y, plate):
        with plate:
            h = pyro.sample("h", dist.Normal(x.new_zeros(x.shape[0], L), 1.0).to_event(1))
            pyro.sample("obs", dist.Normal(h @ program.W.T + program.mean(y), SIGMA).to_event(1), obs=x)

    def guide(x, y, plate):
        loc, sd = gaussian_posterior(program.W, SIGMA, x - program.mean(y))
        shift = pyro.param("shift", torch.tensor(0.3))  # something for the trainee to train
        with plate:
            pyro.sample("h", dist.Normal(loc + shift, 1.5 * sd).to_event(1))

    def minibatch_plate(x):
        return pyro.plate("data", x.shape[0]) if declared == "minibatch" else pyro.plate("data")

    def subsampled(fn):
        return lambda x, y: fn(x, y, pyro.plate("data", 40, subsample=rows))

    def minibatch(fn):
        return lambda x, y: fn(x, y, minibatch_plate(x))

    objective = ImportanceWeightedELBO(8)
    trainee = ProgramTrainee(as_program(minibatch(model), minibatch(guide)), as_program(model).data(x, {"y": y}), 40)
    pyro.set_rng_seed(3)
    trained = objective.loss(trainee.model, trainee.guide, x[rows], y=y[rows], num_data=40)
    pyro.set_rng_seed(3)
    reference = objective.loss(subsampled(model), subsampled(guide), x[rows], y[rows])
    assert trained == pytest.approx(reference, rel=1e-6)


def test_global_latents_are_refused_with_the_site_name():
    def model(x):
        shift = pyro.sample("shift", dist.Normal(0.0, 1.0))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Normal(shift, 1.0), obs=x)

    def guide(x):
        pyro.sample("shift", dist.Normal(0.0, 1.0))

    with pytest.raises(ValueError, match="'shift' lies outside"):
        ImportanceWeightedELBO(4).loss(model, guide, torch.zeros(5))


def test_fit_with_the_importance_weighted_objective_reaches_the_ppca_optimum():
    from helpers.ppca import decoder_params, max_log_likelihood

    W, b, x = simulate(1000, 6, 2, 0.5, seed=3, orthogonal=False)
    target = max_log_likelihood(x, 2).item()
    vae = linear_gaussian_vae(6, 2)
    pyro_vae.fit(vae, x, epochs=30, batch_size=100, lr=2e-2, elbo="iwae", num_particles=5, seed=0)
    achieved = log_marginal(*decoder_params(vae), x).mean().item()
    assert achieved <= target + 1e-4
    assert achieved == pytest.approx(target, abs=0.03)


def test_gated_dense_layer_is_a_gated_linear_map_and_a_vae_choice():
    torch.manual_seed(0)
    layer = GatedDense(5, 3)
    x = torch.randn(4, 5)
    expected = (x @ layer.linear.weight.T + layer.linear.bias) * torch.sigmoid(
        x @ layer.gate.weight.T + layer.gate.bias
    )
    assert torch.allclose(layer(x), expected)
    vae = pyro_vae.VAE(12, 3, hidden_sizes=(8, 6), activation="gated")
    gated = [m for m in vae.modules() if isinstance(m, GatedDense)]
    assert [(m.linear.in_features, m.linear.out_features) for m in gated] == [(12, 8), (8, 6), (3, 8), (8, 6)]
    loaded = pyro_vae.VAE.from_config(vae.config())
    assert loaded.state_dict().keys() == vae.state_dict().keys()
    with pytest.raises(ValueError, match="Unknown activation 'gate'"):
        pyro_vae.VAE(12, 3, activation="gate")


def test_matrix_product_mixture_equals_mixture_same_family_and_keeps_gradients():
    torch.manual_seed(0)
    logits = torch.randn(9, requires_grad=True)
    loc = torch.randn(9, 4, requires_grad=True)
    scale = (torch.rand(9, 4) * 0.3 + 0.02).requires_grad_()
    z = torch.randn(3, 5, 4) * 1.5
    ours = DiagonalNormalMixture(logits, loc, scale)
    reference = dist.MixtureSameFamily(dist.Categorical(logits=logits), dist.Normal(loc, scale).to_event(1))
    a, b = ours.log_prob(z), reference.log_prob(z)
    assert a.shape == (3, 5) and torch.allclose(a, b, atol=1e-4, rtol=1e-5)
    grads = torch.autograd.grad(a.sum(), (logits, loc, scale))
    expected = torch.autograd.grad(b.sum(), (logits, loc, scale))
    for g, e in zip(grads, expected):
        assert torch.allclose(g, e, atol=1e-3, rtol=1e-3)
    draws = ours.expand((6,)).sample((2000,))
    assert draws.shape == (2000, 6, 4)
    assert torch.allclose(draws.mean((0, 1)), reference.mean, atol=0.1)


class _LearnableLinear(ConditionalLinear):
    """``ConditionalLinear`` with a learnable shift of the model's mean and a learnable guide
    (exact posterior mean + ``shift``, exact deviations times ``exp(log_factor)``)."""

    def __init__(self, shift=0.0, log_factor=0.0):
        super().__init__()
        self.delta = torch.zeros(D, requires_grad=True)
        self.shift = torch.full((L,), float(shift), requires_grad=True)
        self.log_factor = torch.full((L,), float(log_factor), requires_grad=True)

    def mean(self, y):
        return super().mean(y) + (self.delta if hasattr(self, "delta") else 0.0)

    def simulate(self, n, seed=1):
        return tuple(t.detach() for t in super().simulate(n, seed))

    def learnable_guide(self, x, y):
        loc, sd = gaussian_posterior(self.W, SIGMA, x - self.mean(y).detach())
        with pyro.plate("points", x.shape[0]):
            pyro.sample("h", dist.Normal(loc + self.shift, sd * self.log_factor.exp()).to_event(1))


def _gradients(program, dreg, x, y, seed, particles=5):
    objective = ImportanceWeightedELBO(particles, plate="points", dreg=dreg)
    torch.manual_seed(seed)
    with pyro.validation_enabled(False):
        loss = objective.differentiable_loss(program.model, program.learnable_guide, x, y)
    grads = torch.autograd.grad(loss, [program.delta, program.shift, program.log_factor])
    return float(loss.detach()), grads[0], torch.cat(grads[1:])


def test_dreg_is_exactly_zero_for_the_guide_at_the_exact_posterior_and_leaves_the_model_gradient_alone():
    program = _LearnableLinear()
    x, y = program.simulate(30)
    for seed in range(3):
        loss, model_grad, guide_grad = _gradients(program, False, x, y, seed)
        loss_dreg, model_grad_dreg, guide_grad_dreg = _gradients(program, True, x, y, seed)
        assert loss_dreg == loss
        assert torch.allclose(model_grad_dreg, model_grad, rtol=1e-5, atol=1e-5)
        # The ordinary gradient is zero only on average here; DReG's is zero for every draw.
        assert guide_grad.abs().max() > 0.05
        assert guide_grad_dreg.abs().max() < 1e-3


def test_dreg_has_the_expectation_of_the_ordinary_gradient_with_less_variance():
    program = _LearnableLinear(shift=0.3, log_factor=math.log(1.3))
    x, y = program.simulate(30)
    draws = 300
    ordinary = torch.stack([_gradients(program, False, x, y, seed)[2] for seed in range(draws)])
    dreg = torch.stack([_gradients(program, True, x, y, 10_000 + seed)[2] for seed in range(draws)])
    se = (ordinary.var(0) / draws + dreg.var(0) / draws).sqrt()
    assert ((ordinary.mean(0) - dreg.mean(0)).abs() < 4.5 * se).all()
    assert dreg.var(0).sum() < 0.5 * ordinary.var(0).sum()


def test_dreg_refuses_guides_with_several_latent_sites():
    def model(x):
        with pyro.plate("data", len(x)):
            a = pyro.sample("a", dist.Normal(0.0, 1.0))
            b = pyro.sample("b", dist.Normal(a, 1.0))
            pyro.sample("x", dist.Normal(b, 1.0), obs=x)

    def guide(x):
        with pyro.plate("data", len(x)):
            a = pyro.sample("a", dist.Normal(x / 2, 1.0))
            pyro.sample("b", dist.Normal(a, 1.0))

    with pytest.raises(ValueError, match="one latent site"):
        ImportanceWeightedELBO(3, dreg=True).differentiable_loss(model, guide, torch.zeros(4))
    with pytest.raises(ValueError, match="dreg must be True or False"):
        ImportanceWeightedELBO(3, dreg="yes")

"""One preamble: every public tool binds its arguments through ``pyro_vae.program.bind``, so each
refuses the same bad program with the same guidance, before any work, and takes ``global_values``
alike.

Two programs that the tools must refuse: one whose networks take only ``(B, L)`` inputs (no
leading particle dimension), and one with a latent site outside the data plate. The second is
accepted with ``global_values`` and then agrees with the closed form.
"""

import pyro
import pyro.distributions as dist
import pytest
import torch
from torch import nn

import pyro_vae
from helpers.programs import gaussian_marginal, gaussian_posterior, orthogonal
from pyro_vae.program import bind

D, L, SIGMA = 4, 2, 0.5
W = orthogonal(D, L, [2.0, 1.0], seed=3)


class MatrixOnly(nn.Module):
    """A linear map that refuses anything but a matrix, as many convolutional networks do."""

    def __init__(self, weight):
        super().__init__()
        self.weight = nn.Parameter(weight.clone())

    def forward(self, inputs):
        if inputs.ndim != 2:
            raise RuntimeError(f"expected a (B, L) matrix, got shape {tuple(inputs.shape)}")
        return inputs @ self.weight.T


class MatrixOnlyProgram:
    """Probabilistic PCA whose decoder takes only ``(B, L)``."""

    def __init__(self):
        self.decoder = MatrixOnly(W)

    def model(self, x):
        pyro.module("decoder", self.decoder)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(torch.zeros(L), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(self.decoder(z), SIGMA).to_event(1), obs=x)

    def guide(self, x):
        loc, sd = gaussian_posterior(W, SIGMA, x)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(loc, sd).to_event(1))


class GlobalShift:
    """``c ~ N(0, I_D)`` outside the plate; ``z ~ N(0, I)``, ``x | z, c ~ N(W z + c, s^2 I)`` inside."""

    def model(self, x):
        c = pyro.sample("c", dist.Normal(torch.zeros(D), 1.0).to_event(1))
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(torch.zeros(L), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z @ W.T + c, SIGMA).to_event(1), obs=x)

    def guide(self, x):
        c = pyro.sample("c", dist.Normal(torch.zeros(D), 0.01).to_event(1))
        loc, sd = gaussian_posterior(W, SIGMA, x - c)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(loc, sd).to_event(1))


X = torch.randn(12, L, generator=torch.Generator().manual_seed(0)) @ W.T + SIGMA * torch.randn(
    12, D, generator=torch.Generator().manual_seed(1)
)

# Each public tool that reads a program on data, called the way a user would.
PER_POINT_TOOLS = {
    "log_likelihood": lambda m, g, **kw: pyro_vae.log_likelihood(m, X, guide=g, num_particles=10, **kw),
    "compare": lambda m, g, **kw: pyro_vae.compare({"a": (m, g), "b": (m, g)}, X, num_particles=10, **kw),
    "mean_elbo": lambda m, g, **kw: pyro_vae.mean_elbo(m, X, guide=g, **kw),
    "log_weights": lambda m, g, **kw: pyro_vae.evaluate.log_weights(m, X, 3, guide=g, **kw),
    "elbo_surgery": lambda m, g, **kw: pyro_vae.diagnostics.elbo_surgery(m, X, guide=g, **kw),
    "holes": lambda m, g, **kw: pyro_vae.diagnostics.holes(m, X, guide=g, num_samples=50, **kw),
    "active_units": lambda m, g, **kw: pyro_vae.diagnostics.active_units(m, X, guide=g, **kw),
    "amortization_gap": lambda m, g, **kw: pyro_vae.diagnostics.amortization_gap(
        m, X, guide=g, num_steps=2, num_particles=10, **kw
    ),
    "AggregatePosterior.from_data": lambda m, g, **kw: pyro_vae.AggregatePosterior.from_data(m, X, guide=g, **kw),
    "LatentMixture.fit": lambda m, g, **kw: pyro_vae.LatentMixture.fit(m, X, 2, guide=g, **kw),
    "reconstruct": lambda m, g, **kw: pyro_vae.reconstruct(m, X, guide=g, **kw),
}
DRAWING_TOOLS = {
    "posterior_predictive": lambda m, g: pyro_vae.posterior_predictive(m, X, 3, guide=g),
    "to_inference_data": lambda m, g: pyro_vae.to_inference_data(m, X, guide=g, num_samples=3),
}


@pytest.mark.parametrize("tool", sorted({**PER_POINT_TOOLS, **DRAWING_TOOLS}))
def test_a_network_that_takes_only_matrices_is_refused_with_the_same_advice(tool):
    program = MatrixOnlyProgram()
    call = {**PER_POINT_TOOLS, **DRAWING_TOOLS}[tool]
    with pytest.raises(ValueError, match=r"leading particle dimension.*FlattenLeading") as refused:
        call(program.model, program.guide)
    assert "expected a (B, L) matrix" in str(refused.value)


@pytest.mark.parametrize("tool", sorted(PER_POINT_TOOLS))
def test_a_global_latent_is_refused_by_name_and_accepted_with_global_values(tool):
    program = GlobalShift()
    call = PER_POINT_TOOLS[tool]
    with pytest.raises(ValueError, match=r"global latent site\(s\) \['c'\].*global_values='guide_median'"):
        call(program.model, program.guide)
    assert call(program.model, program.guide, global_values={"c": torch.zeros(D)}) is not None


@pytest.mark.parametrize("tool", sorted(DRAWING_TOOLS))
def test_tools_that_draw_the_global_latent_keep_it_random(tool):
    program = GlobalShift()
    assert DRAWING_TOOLS[tool](program.model, program.guide) is not None


def test_bind_fixes_the_global_latent_so_the_weights_match_the_closed_form():
    program = GlobalShift()
    shift = torch.full((D,), 0.2)
    bound = bind(program.model, X, guide=program.guide, global_values={"c": shift})
    assert bound.globals_used == {"c": "given value"} and bound.sites.local == ("z",)
    result = pyro_vae.log_likelihood(bound.program, X, num_particles=10)
    exact = gaussian_marginal(W, SIGMA, shift, X).double()
    assert torch.allclose(result.log_px, exact, atol=1e-4)  # the guide is the exact posterior given c


def test_bind_refuses_a_missing_guide_and_bad_data_before_any_work():
    program = GlobalShift()
    with pytest.raises(ValueError, match="pass guide="):
        bind(program.model, X, global_values="guide_median")
    with pytest.raises(ValueError, match="non-finite|finite"):
        bind(program.model, torch.full((3, D), float("nan")), guide=program.guide, global_values="guide_median")

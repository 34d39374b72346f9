"""Every public tool leaves what belongs to the user as it found it: Pyro's parameter store, torch's
random state and the caller's tensors; a second thread is refused with the documented message."""

from __future__ import annotations

import threading

import pyro
import pyro.distributions as dist
import pytest
import torch

import pyro_vae
from pyro_vae._util.isolation import isolated

D, L, N = 6, 2, 24


class Program:
    """A hand-written program with its own pyro.param and pyro.module sites."""

    def __init__(self):
        self.decoder = torch.nn.Linear(L, D)

    def model(self, x):
        pyro.module("decoder", self.decoder)
        scale = pyro.param("scale", torch.tensor(0.7), constraint=dist.constraints.positive)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(x.shape[0], L), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(self.decoder(z), scale).to_event(1), obs=x)

    def guide(self, x):
        loc = pyro.param("loc_weight", torch.zeros(D, L))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(x @ loc, 0.8).to_event(1))


def _tools(model, guide, x):
    kw = {} if guide is None else {"guide": guide}
    mask = None if x is None else torch.rand(x.shape, generator=torch.Generator().manual_seed(2)) > 0.3
    return {
        "log_likelihood": lambda: pyro_vae.log_likelihood(model, x, num_particles=10, **kw),
        "compare": lambda: pyro_vae.compare(
            {"a": pyro_vae.log_likelihood(model, x, num_particles=10, **kw), "b": (model, guide) if guide else model},
            x,
            num_particles=10,
        ),
        "mean_elbo": lambda: pyro_vae.mean_elbo(model, x, **kw),
        "prior_predictive": lambda: pyro_vae.prior_predictive(model, 4, x=None if guide is None else x[:1]),
        "posterior_predictive": lambda: pyro_vae.posterior_predictive(model, x, 3, **kw),
        "reconstruct": lambda: pyro_vae.reconstruct(model, x, **kw),
        "get_latent": lambda: pyro_vae.get_latent(model, x, **kw),
        "sample": lambda: pyro_vae.sample(model, 4, source="aggregate", x=x, **kw),
        "AggregatePosterior": lambda: pyro_vae.AggregatePosterior.from_data(model, x, **kw),
        "LatentMixture": lambda: pyro_vae.LatentMixture.fit(model, x, 2, **kw),
        "holes": lambda: pyro_vae.diagnostics.holes(model, x, num_samples=200, **kw),
        "elbo_surgery": lambda: pyro_vae.diagnostics.elbo_surgery(model, x, **kw),
        "active_units": lambda: pyro_vae.diagnostics.active_units(model, x, **kw),
        "pareto_k_report": lambda: pyro_vae.diagnostics.pareto_k_report(model, x, num_particles=10, **kw),
        "amortization_gap": lambda: pyro_vae.diagnostics.amortization_gap(model, x[:4], num_steps=5, **kw),
        "posterior_predictive_check": lambda: pyro_vae.posterior_predictive_check(model, x, num_samples=5, **kw),
        "to_inference_data": lambda: pyro_vae.to_inference_data(model, x[:5], num_samples=4, **kw),
        "impute": lambda: pyro_vae.impute(model, x, mask=mask, num_particles=10, **kw),
        "bdmc": lambda: pyro_vae.bdmc(model, 3, ais_steps=5, num_chains=2, **({"rows": x[:3]} | kw)),
    }


def _state():
    store = pyro.get_param_store()
    return (
        {name: value.detach().clone() for name, value in store.items()},
        torch.get_rng_state().clone(),
    )


def _same(before, after) -> bool:
    (params, rng), (params_after, rng_after) = before, after
    return (
        params.keys() == params_after.keys()
        and all(torch.equal(params[k], params_after[k]) for k in params)
        and torch.equal(rng, rng_after)
    )


def _vae(hidden_sizes=(8,)):
    torch.manual_seed(0)
    return pyro_vae.VAE(D, L, likelihood="normal", hidden_sizes=hidden_sizes)


@pytest.mark.parametrize("kind", ["vae", "linear-Gaussian vae", "program"])
@pytest.mark.parametrize("tool", sorted(_tools(None, None, None)))
def test_every_tool_leaves_the_store_the_rng_and_the_callers_tensors_alone(kind, tool):
    x = torch.randn(N, D, generator=torch.Generator().manual_seed(1))
    if kind != "program":  # a linear-Gaussian VAE's impute draws from its exact posterior
        model, guide = _vae(() if kind.startswith("linear") else (8,)), None
    else:
        program = Program()
        model, guide = program.model, program.guide
        pyro.param("user's own", torch.ones(3))  # the caller's store holds something of theirs
        for fn in (program.model, program.guide):  # and the program's parameters, as SVI registers them
            pyro.poutine.trace(fn).get_trace(x)
    kept = x.clone()
    before = _state()
    _tools(model, guide, x)[tool]()
    assert _same(before, _state()), f"{tool} changed the caller's Pyro parameter store or torch's RNG"
    assert torch.equal(x, kept)


def test_a_users_svi_loop_trains_a_fresh_vae_after_a_tool_ran():
    x = torch.randn(N, D, generator=torch.Generator().manual_seed(1))
    for tool in (
        lambda: pyro_vae.log_likelihood(_vae(), x, num_particles=10),
        lambda: pyro_vae.impute(_vae(), x, mask=torch.rand(x.shape) > 0.3, num_particles=10),
    ):
        tool()
        vae = pyro_vae.VAE(D, L, likelihood="normal", hidden_sizes=(8,))
        before = [p.detach().clone() for p in vae.parameters()]
        svi = pyro.infer.SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 1e-2}), pyro.infer.Trace_ELBO())
        for _ in range(3):
            svi.step(x)
        assert any(not torch.equal(a, b) for a, b in zip(before, vae.parameters()))
        pyro.clear_param_store()


@pytest.mark.parametrize("tool", ["log_likelihood", "get_latent", "to_inference_data", "posterior_predictive_check"])
def test_a_second_thread_is_refused_with_the_documented_message(tool):
    x = torch.randn(N, D, generator=torch.Generator().manual_seed(1))
    vae = _vae()
    inside, release = threading.Event(), threading.Event()

    def other_call():
        with isolated(None):  # a pyro_vae call in progress in another thread
            inside.set()
            release.wait(10)

    thread = threading.Thread(target=other_call)
    thread.start()
    try:
        assert inside.wait(10)
        with pytest.raises(RuntimeError, match="Another thread is running a pyro_vae tool"):
            _tools(vae, None, x)[tool]()
    finally:
        release.set()
        thread.join()
    _tools(vae, None, x)[tool]()  # and once the other call is done, it runs

"""How many times each tool binds its program and runs the model and the guide, in one call.

A hand-written Pyro program (a linear decoder and encoder, 40 rows of 5 features) is wrapped with
counters; every tool is called once and the counts printed as a Markdown table
(docs/architecture.md, "How often a tool runs the program"). Runs of the model and guide include
the structural ones of ``bind`` (site discovery, the support and particle checks) and those of the
computation itself.

Smoke run (tests/test_experiments.py runs it; it is the whole measurement, a few seconds):

    python experiments/benchmarks/trace_counts.py   # smoke run
"""

import collections
import sys
import warnings

import pyro
import pyro.distributions as dist
import torch

import pyro_vae
from pyro_vae.program import binding

warnings.filterwarnings("ignore")
D, L, N = 5, 2, 40
torch.manual_seed(0)
x = torch.randn(N, D)
enc = torch.nn.Linear(D, 2 * L)
dec = torch.nn.Linear(L, D)
calls = collections.Counter()


def model(x):
    calls["model"] += 1
    pyro.module("dec", dec)
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Normal(0.0, 1.0).expand([L]).to_event(1))
        pyro.sample("x", dist.Normal(dec(z), 1.0).to_event(1), obs=x)


def guide(x):
    calls["guide"] += 1
    pyro.module("enc", enc)
    with pyro.plate("data", x.shape[0]):
        h = enc(x)
        pyro.sample("z", dist.Normal(h[..., :L], torch.nn.functional.softplus(h[..., L:]) + 1e-3).to_event(1))


binds = collections.Counter()
orig = binding.bind


def counting_bind(*a, **k):
    binds["bind"] += 1
    return orig(*a, **k)


for name, mod in list(sys.modules.items()):
    if name.startswith("pyro_vae") and getattr(mod, "bind", None) is orig:
        setattr(mod, "bind", counting_bind)
tools = {
    "log_likelihood": lambda: pyro_vae.log_likelihood(model, x, guide=guide, num_particles=16),
    "get_latent": lambda: pyro_vae.get_latent(model, x, guide=guide),
    "reconstruct": lambda: pyro_vae.reconstruct(model, x, guide=guide),
    "impute": lambda: pyro_vae.impute(model, x, guide=guide, mask=torch.rand(N, D) > 0.2, num_particles=16),
    "posterior_predictive": lambda: pyro_vae.posterior_predictive(model, x, guide=guide, num_samples=4),
    "posterior_predictive_check": lambda: pyro_vae.posterior_predictive_check(model, x, guide=guide, num_samples=10),
    "to_inference_data": lambda: pyro_vae.to_inference_data(model, x, guide=guide, num_samples=4),
    "elbo_surgery": lambda: pyro_vae.diagnostics.elbo_surgery(model, x, guide=guide),
    "holes": lambda: pyro_vae.diagnostics.holes(model, x, guide=guide, num_samples=100),
    "active_units": lambda: pyro_vae.diagnostics.active_units(model, x, guide=guide),
    "mean_elbo": lambda: pyro_vae.mean_elbo(model, x, guide=guide),
    "sample(aggregate)": lambda: pyro_vae.sample(model, 8, source="aggregate", x=x, guide=guide),
}
print("| tool | binds | model runs | guide runs |")
print("|---|---|---|---|")
for name, tool in tools.items():
    calls.clear()
    binds.clear()
    tool()
    print(f"| `{name}` | {binds['bind']} | {calls['model']} | {calls['guide']} |")

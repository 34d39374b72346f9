"""Every tool binds its program once per call (``experiments/benchmarks/trace_counts.py`` prints
how often each then runs the model and the guide; docs/architecture.md keeps the table)."""

from __future__ import annotations

import sys

import pytest
import torch

import pyro_vae
from pyro_vae.program import binding

D, L, N = 5, 2, 30


@pytest.fixture
def binds(monkeypatch):
    count = {"bind": 0}
    original = binding.bind

    def counting(*args, **kwargs):
        count["bind"] += 1
        return original(*args, **kwargs)

    for module in list(sys.modules.values()):
        if getattr(module, "__name__", "").startswith("pyro_vae") and getattr(module, "bind", None) is original:
            monkeypatch.setattr(module, "bind", counting)
    return count


def _tools(vae, x):
    mask = torch.rand(N, D, generator=torch.Generator().manual_seed(1)) > 0.2
    return {
        "log_likelihood": lambda: pyro_vae.log_likelihood(vae, x, num_particles=12),
        "get_latent": lambda: pyro_vae.get_latent(vae, x),
        "reconstruct": lambda: pyro_vae.reconstruct(vae, x),
        "impute": lambda: pyro_vae.impute(vae, x, mask=mask, num_particles=8),
        "posterior_predictive": lambda: pyro_vae.posterior_predictive(vae, x, 3),
        "posterior_predictive_check": lambda: pyro_vae.posterior_predictive_check(
            vae,
            x,
            num_samples=40,
            max_memory_mb=1e-3,  # replicates drawn in several chunks
        ),
        "to_inference_data": lambda: pyro_vae.to_inference_data(vae, x, num_samples=3),
        "elbo_surgery": lambda: pyro_vae.diagnostics.elbo_surgery(vae, x),
        "holes": lambda: pyro_vae.diagnostics.holes(vae, x, num_samples=50),
        "active_units": lambda: pyro_vae.diagnostics.active_units(vae, x),
        "mean_elbo": lambda: pyro_vae.mean_elbo(vae, x),
    }


@pytest.mark.parametrize("tool", sorted(_tools(None, None)))
def test_a_tool_binds_its_program_once(tool, binds):
    torch.manual_seed(0)
    vae = pyro_vae.VAE(D, L, likelihood="normal", hidden_sizes=(8,))
    x = torch.randn(N, D)
    _tools(vae, x)[tool]()
    assert binds["bind"] == 1

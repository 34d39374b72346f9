"""One convention for every public tool, read from the signatures (``docs/api-conventions.md``).

A public tool is a function exported at the top level of ``pyro_vae`` or of one of its
sub-packages whose first parameter is a model (or models). The rules:

* ``num_particles`` is draws from ``q`` per point, ``num_samples`` outputs returned, ``num_chains``
  AIS or ArviZ chains; the retired names (``num_draws``, ``draws_per_point``, ...) appear nowhere;
* one memory argument, ``max_memory_mb``, with one default;
* ``mask=`` and ``covariates=`` on every tool that reads ``x``;
* ``seed`` defaults to 0;
* ``method=`` is an estimator;
* the top level exports functions, classes, registries and sub-packages, not single modules.

Exceptions are listed below with their reason, so that each one is a decision and not an accident.
"""

from __future__ import annotations

import inspect
import types

import pytest

import pyro_vae
from pyro_vae._util.memory import MAX_MEMORY_MB

SUBPACKAGES = ["data", "diagnostics", "evaluate", "io", "latent", "program", "train", "vae", "distributions"]
RETIRED = {
    "num_draws": "num_samples (outputs) or num_particles (draws per point)",
    "draws": "num_samples",
    "draws_per_point": "num_particles",
    "marginal_draws": "marginal_particles",
    "train_particles": "num_train_particles",
    "y": "covariates={'y': ...}",
}
#: Tools that read x but take no mask, and why.
NO_MASK = {
    "posterior_predictive_check": "its statistics summarise whole data sets; a masked entry has no observed statistic",
    "data_copying": "compares complete generated and held-out rows by distance",
    "bdmc": "simulates its own complete data from the model",
    "sample": "x= only locates the aggregate posterior's rows, read through get_latent",
    "amortization_gap": "fits per-point guides to complete rows",
    "add_latent": "reads an AnnData file, whose NaN are refused",
    "chunk_plan": "plans chunk sizes from the shapes of one row; nothing is scored",
    "decode": "x= gives the rows to generate on; none of its values is read",
    "prior_predictive": "x= gives the rows to generate on; none of its values is read",
}
#: Tools with another memory argument, and why.
OTHER_MEMORY = {
    "mean_elbo": "batch_size: one draw per point, chunked by rows (the validation inside fit)",
    "active_units": "batch_size: rows per chunk of closed-form means, L numbers each",
    "fit": "batch_size is the minibatch of the optimisation, not a memory bound",
}


def _tools():
    seen = {}
    for module in [pyro_vae, *(getattr(pyro_vae, name) for name in SUBPACKAGES)]:
        for name in getattr(module, "__all__", []):
            obj = getattr(module, name)
            if inspect.isfunction(obj) and obj.__name__ not in seen:
                params = list(inspect.signature(obj).parameters)
                if params and params[0] in ("model", "models"):
                    seen[obj.__name__] = obj
    return seen


TOOLS = _tools()


def test_the_tools_are_found():
    assert {"log_likelihood", "impute", "compare", "elbo_surgery", "holes", "reconstruct", "fit"} <= set(TOOLS)


@pytest.mark.parametrize("name", sorted(TOOLS))
def test_every_tool_keeps_the_convention(name):
    params = inspect.signature(TOOLS[name]).parameters
    retired = {p: RETIRED[p] for p in params if p in RETIRED}
    assert retired == {}, f"{name}: rename {retired}"
    if "x" in params:
        assert "covariates" in params, f"{name} reads x but takes no covariates="
        assert "mask" in params or name in NO_MASK, f"{name} reads x but takes no mask="
    if "max_memory_mb" in params:  # one default (chunk_plan takes the bound it plans for, without one)
        assert params["max_memory_mb"].default in (MAX_MEMORY_MB, inspect.Parameter.empty), name
    elif "batch_size" in params:
        assert name in OTHER_MEMORY, f"{name}: bound memory with max_memory_mb, not batch_size"
    if "seed" in params:
        assert params["seed"].default == 0, name
    if "num_chains" in params:
        assert name in ("bdmc", "to_inference_data", "log_likelihood"), f"{name}: num_chains is for chains only"
    if "method" in params:
        assert params["method"].default in ("importance",), f"{name}: method= names an estimator"


def test_classes_keep_the_convention_too():
    aggregate = inspect.signature(pyro_vae.AggregatePosterior).parameters
    assert "num_particles" in aggregate and aggregate["max_memory_mb"].default == MAX_MEMORY_MB
    # A distribution's sample() follows the global stream, as every torch distribution's does (Pyro
    # draws from it inside seeded blocks); seed= is an extra, off by default.
    assert inspect.signature(pyro_vae.AggregatePosterior.sample).parameters["seed"].default is None


def test_the_top_level_exports_no_single_modules():
    modules = [
        name
        for name in pyro_vae.__all__
        if isinstance(getattr(pyro_vae, name), types.ModuleType) and not hasattr(getattr(pyro_vae, name), "__path__")
    ]
    assert modules == []


def test_the_convention_can_fail():
    def tool(model, x, *, num_draws=3, max_memory_mb=1.0, seed=None):
        return None

    TOOLS["made_up"] = tool
    try:
        with pytest.raises(AssertionError, match="rename"):
            test_every_tool_keeps_the_convention("made_up")
    finally:
        del TOOLS["made_up"]


def test_fit_shows_its_training_options_in_its_signature_and_help():
    from dataclasses import fields

    from pyro_vae.train.settings import TrainSettings

    params = inspect.signature(pyro_vae.fit).parameters
    for option in fields(TrainSettings):
        assert params[option.name].default == option.default, option.name
        assert f"{option.name} (default {option.default!r})" in pyro_vae.fit.__doc__
    assert not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())

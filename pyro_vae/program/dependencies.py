"""Which latent sites a site's distribution depends on, in the model and in the guide.

A program with one latent layer has none of these dependencies; a hierarchy has them. In
``z2 -> z1 -> x`` with the guide ``x -> z1 -> z2``, the model's ``p(z1 | z2)`` depends on ``z2``
and the guide's ``q(z2 | z1, x)`` on ``z1``. A tool that needs the *marginal* density of one
site, ``p(z_k)`` or ``q(z_k | x)``, can read it from the site's ``fn`` only when the site has no
latent parents; otherwise the marginal is a Monte Carlo mixture over draws of the parents
(:mod:`pyro_vae.latent.marginals`).

The dependencies come from Pyro's provenance tracking (:func:`pyro.infer.inspect.get_dependencies`),
which follows values through the program's tensor operations. Where it cannot run (an operation
provenance tracking does not follow), every latent site is taken to depend on every other one:
the tools then use Monte Carlo marginals, which are right for independent sites too, only slower.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import pyro
import torch
from pyro import poutine
from pyro.infer.inspect import get_dependencies
from pyro.ops.provenance import get_provenance, track_provenance


def latent_parents(
    fn: Callable | None, args: tuple, kwargs: dict, names: Iterable[str], latents: Iterable[str]
) -> tuple[dict[str, tuple[str, ...]], bool]:
    """For each of the sites ``names`` of ``fn``, the ``latents`` its distribution depends on
    directly, and whether the dependencies could be read (``False``: all assumed, see the module)."""
    names, latents = tuple(names), tuple(latents)
    if fn is None:
        return {}, True
    try:
        with torch.random.fork_rng(devices=[]), torch.no_grad(), pyro.validation_enabled(False):
            graph = get_dependencies(fn, args, kwargs)["prior_dependencies"]
    except Exception:  # noqa: BLE001 -- any failure of provenance tracking means "unknown"
        return {name: tuple(other for other in latents if other != name) for name in names}, False
    return {
        name: tuple(parent for parent in graph.get(name, ()) if parent != name and parent in latents) for name in names
    }, True


def ancestors(parents: dict[str, tuple[str, ...]], site: str) -> set[str]:
    """Every site ``site`` depends on, directly or through other sites."""
    seen: set[str] = set()
    todo = list(parents.get(site, ()))
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(parents.get(name, ()))
    return seen


def observed_sources(
    fn: Callable, x: torch.Tensor, kwargs: dict, names: Iterable[str]
) -> dict[str, frozenset[str]] | None:
    """For each observed site in ``names``, the arguments of ``fn(x, **kwargs)`` its data are read
    from: ``"x"`` and/or the names of keyword arguments (``{"y": frozenset({"ys"})}`` for
    ``pyro.sample("y", ..., obs=ys)``). ``None`` where provenance tracking cannot follow the program.

    This is how the tools tell the site they call ``x`` (read from the data passed as ``x``, however
    reshaped) from observed sites whose values the caller gives as covariates (an observed label).
    """
    names = tuple(names)
    tracked = {k: track_provenance(v, frozenset({k})) if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}
    # "x" is a keyword name no program can take alongside its positional data, so the two never collide.
    try:
        with torch.random.fork_rng(devices=[]), torch.no_grad(), pyro.validation_enabled(False):
            trace = poutine.trace(fn).get_trace(track_provenance(x, frozenset({"x"})), **tracked)
        return {name: frozenset(get_provenance(trace.nodes[name]["value"])) for name in names}
    except Exception:  # noqa: BLE001 -- any failure of provenance tracking means "unknown"
        return None

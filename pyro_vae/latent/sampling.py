"""New samples from a trained program, with the latent source as an explicit distribution.

:func:`sample` draws ``z`` from a distribution over the latent code and decodes it through the
model (``x' ~ p(x|z)`` and the likelihood mean ``E[x|z]``). The source is any
:mod:`pyro.distributions` object with ``event_shape == (L,)`` -- see :mod:`pyro_vae.latent` -- or
one of the names in :data:`pyro_vae.latent.SOURCES`:

* ``"prior"`` -- the model's ``p(z)``, what it was trained to decode;
* ``"aggregate"`` -- the exact aggregate posterior ``q(z) = (1/N) sum_i q(z|x_i)`` of the data
  ``x`` (usually the training set), ``O(N L)`` memory;
* ``"mixture"`` -- the compact :class:`~pyro_vae.latent.mixture.LatentMixture` fitted to ``q(z)``
  and stored on the model (``vae.latent_mixture``), ``O(K L^2)`` memory;
* ``"subset"`` -- the aggregate posterior of a chosen subset: the rows of ``x`` whose label is
  ``label``, or simply all of a user-given batch ``x``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pyro
import torch

from .._util.checks import positive_int
from .._util.isolation import isolated, leaves_pyro_state_alone
from ..data.loading import Split
from ..program.binding import bind
from ..program.protocol import Data, Program, as_program
from .predictive import (
    MAX_VALUES,
    PredictiveSamples,
    check_output_size,
    collect_sites,
    generation_rows,
    shaped_like_site,
)
from .sources import SOURCES


@leaves_pyro_state_alone
@torch.no_grad()
def sample(
    model: Any,
    num_samples: int,
    *,
    source: str | torch.distributions.Distribution = "prior",
    x: Any = None,
    label: int | None = None,
    covariates: Mapping[str, Any] | None = None,
    guide: Callable | None = None,
    site: str | None = None,
    plate: str | None = None,
    seed: int = 0,
    max_values: int = MAX_VALUES,
    **generate_with: Any,
) -> PredictiveSamples:
    """Draw ``num_samples`` codes from ``source`` and decode them through the model.

    Args:
        model: a :class:`~pyro_vae.VAE` or a Pyro program (with ``guide=`` for data-based sources).
        num_samples: number of draws.
        source: a name in :data:`pyro_vae.latent.SOURCES`, or any distribution over ``z`` (an
            :class:`~pyro_vae.AggregatePosterior`, ``vae.latent_mixture.distribution()``, ...).
        x: the data whose aggregate posterior to use (``"aggregate"``, ``"subset"``): a tensor with
            points along the first dimension or a :class:`~pyro_vae.data.Split` (needed with
            ``label``). A split under dynamic binarisation is encoded with one fixed binarisation.
        label: with ``"subset"``, keep only the rows of the split ``x`` with this label.
        covariates: data-aligned keyword arguments of ``x`` (what the guide sees with it).
        site: the latent site the codes of a distribution ``source`` are for, when the program has
            several; with ``"prior"`` every site is drawn ancestrally and ``site`` names the one
            ``result.z`` stands for (``result.sites`` holds them all).
        seed: seeds every draw; the global RNG is not touched.
        max_values: refuse, before any work, results of more numbers than this.
        **generate_with: covariates the *model* sees while decoding, one row for every draw or
            ``num_samples`` rows: ``sample(cvae, 64, y=one_hot(7, 10))`` generates class 7.
            Without them the rows of ``x`` (and ``covariates``) are used in turn.

    Returns: :class:`~pyro_vae.PredictiveSamples` with ``z`` of shape ``(num_samples, L)`` and
    ``x``, ``mean`` of shape ``(num_samples, D)``.
    """
    positive_int(num_samples, "num_samples")
    program = as_program(model, guide, plate=plate)
    data, labels = _data(program, x, covariates)
    check_output_size(
        program,
        generation_rows(program, 1, None if data is None else data.x, _merge(data, generate_with)),
        num_samples,
        max_values,
    )
    if isinstance(source, str) and source == "prior":
        # The prior is sampled ancestrally through the model, whichever site is named: every latent
        # gets its own draw, and a site with latent parents gets its marginal p(z_k).
        rows = generation_rows(program, num_samples, None if data is None else data.x, _merge(data, generate_with))
        with isolated(seed), pyro.validation_enabled(False):
            sites = program.sites(rows)
            name = sites.latent(site, tool="sample") if site is not None else None
            trace = program.generate(rows)
        return collect_sites(program, sites, [trace], particles=False, data_axis=0, latent=name)
    if isinstance(source, str):
        if source not in SOURCES:
            raise ValueError(
                f"Unknown source {source!r}; choose one of {tuple(SOURCES)}, or pass a distribution over z."
            )
        rows = generation_rows(program, 1, None if data is None else data.x, _merge(data, generate_with))
        source = SOURCES[source](
            program,
            data,
            rows=rows,
            site=site,
            label=label,
            labels=labels,
            mixture=getattr(model, "latent_mixture", None),
        )
    elif not isinstance(source, torch.distributions.Distribution):
        raise TypeError(
            f"source must be a name in {tuple(SOURCES)} or a distribution over z, got {type(source).__name__}."
        )
    with isolated(seed):
        z = source.sample(torch.Size([num_samples]))
    return decode(
        program, z, x=None if data is None else data.x, covariates=_merge(data, generate_with), site=site, seed=seed
    )


@leaves_pyro_state_alone
@torch.no_grad()
def decode(
    model: Any,
    z: torch.Tensor,
    *,
    x: Any = None,
    covariates: Mapping[str, Any] | None = None,
    site: str | None = None,
    plate: str | None = None,
    seed: int = 0,
) -> PredictiveSamples:
    """``x' ~ p(x|z)`` and ``E[x|z]`` for codes ``z`` of shape ``(M, L)``, run on ``M`` rows."""
    program = as_program(model, plate=plate)
    rows = generation_rows(program, z.shape[0], x, covariates)
    with isolated(seed), pyro.validation_enabled(False):
        sites = program.sites(rows)
        name = sites.latent(site, tool="decode")
        sites.refuse_shared_ancestors(name, "Decoding codes of one site")
        if tuple(z.shape[1:]) != tuple(sites.event_shapes[name]):
            raise ValueError(
                f"The source draws codes of shape {tuple(z.shape[1:])}; the site {name!r} has event "
                f"shape {tuple(sites.event_shapes[name])}."
            )
        trace = program.generate(rows, condition={name: shaped_like_site(z, sites, len(rows))})
    return collect_sites(program, sites, [trace], particles=False, data_axis=0, latent=name)


def _data(program: Program, x: Any, covariates) -> tuple[Data | None, torch.Tensor | None]:
    if x is None:
        return None, None
    labels = None
    if isinstance(x, Split):
        labels = x.labels
        x = x.binarized(0) if x.dynamic_binarization else x.x
    # Decoding runs the model once on M rows (no particle dimension) and draws any global latent.
    bound = bind(program, x, covariates=covariates, needs_guide=False, particles=False, draw_globals=True, scores=False)
    return bound.data, labels


def _merge(data: Data | None, generate_with: dict) -> dict:
    """What the model sees while decoding: ``generate_with`` when given, else the data's covariates."""
    if generate_with or data is None:
        return dict(generate_with)
    return dict(data.covariates)

"""The named sources of new samples that :func:`pyro_vae.sample` accepts, each a function that
builds its distribution over ``z``: the choice is dispatched once, in :data:`SOURCES`."""

from __future__ import annotations

from collections.abc import Callable

import pyro.distributions as dist

from .aggregate import AggregatePosterior
from .priors import prior_of


def _prior_source(program, data, *, rows, site=None, **_):
    return prior_of(program, rows, site=site)


def _aggregate_source(program, data, *, site=None, label=None, labels=None, what="aggregate", **_):
    if data is None:
        raise ValueError(f"source={what!r} needs the data x whose aggregate posterior to sample.")
    if label is not None:
        if what != "subset":
            raise ValueError("label selects a subset; pass source='subset'.")
        if labels is None:
            raise ValueError("label needs x as a pyro_vae.data.Split, which carries the labels.")
        known = sorted(set(labels.tolist()))
        if label not in known:
            raise ValueError(f"No rows with label {label!r}; the labels present are {known}.")
        data = data.subset(labels == label)
    return AggregatePosterior.from_program(program, data, site=site)


def _subset_source(program, data, **kwargs):
    return _aggregate_source(program, data, what="subset", **kwargs)


def _mixture_source(program, data, *, mixture=None, **_):
    # The mixture is fitted after training and stored on the model (vae.latent_mixture).
    if mixture is None:
        raise ValueError(
            "This model has no fitted mixture; fit one first: vae.latent_mixture = "
            "pyro_vae.LatentMixture.fit(vae, train_x, num_components=10)."
        )
    return mixture.distribution()


#: Names accepted by :func:`pyro_vae.sample` as ``source``, each with the function that builds
#: its distribution over ``z``.
SOURCES: dict[str, Callable[..., dist.TorchDistribution]] = {
    "prior": _prior_source,
    "aggregate": _aggregate_source,
    "mixture": _mixture_source,
    "subset": _subset_source,
}

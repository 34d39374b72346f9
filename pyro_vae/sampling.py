"""New samples from a trained VAE, with the latent source as an explicit choice.

:func:`sample` draws ``z`` from one of

* ``"prior"`` -- ``p(z)``, what the model was trained to decode;
* ``"aggregate"`` -- the exact aggregate posterior ``q(z) = (1/N) sum_i q(z|x_i)`` of the data
  ``x`` (usually the training set), ``O(N L)`` memory;
* ``"mixture"`` -- the compact :class:`~pyro_vae.latent_mixture.LatentMixture` fitted to ``q(z)``
  and stored on the model (``vae.latent_mixture``), ``O(K L^2)`` memory;
* ``"subset"`` -- the aggregate posterior of a chosen subset: the rows of ``x`` whose label is
  ``label``, or simply all of a user-given batch ``x``;

then decodes it: ``x' ~ p(x|z)`` and the likelihood mean ``E[x|z]``.
"""

from __future__ import annotations

from typing import Any

import torch

from ._checks import positive_int
from ._isolation import isolated
from .data import Split
from .latent_mixture import LatentMixture
from .model import VAE
from .predictive import AggregatePosterior, PredictiveSamples, prior_predictive

SOURCES = ("prior", "aggregate", "mixture", "subset")


def sample(
    vae: VAE,
    num_samples: int,
    *,
    source: str | AggregatePosterior | LatentMixture = "prior",
    x: Any = None,
    label: int | None = None,
    seed: int = 0,
) -> PredictiveSamples:
    """Draw ``num_samples`` codes from ``source`` and decode them.

    Args:
        vae: a trained model.
        num_samples: number of draws.
        source: one of :data:`SOURCES`, or a ready :class:`~pyro_vae.AggregatePosterior` or
            :class:`~pyro_vae.latent_mixture.LatentMixture` (reused without re-encoding).
        x: the data whose aggregate posterior to use (``"aggregate"``, ``"subset"``): a tensor of
            shape ``(N, D)`` or a :class:`~pyro_vae.data.Split` (needed with ``label``). A split
            under dynamic binarisation is encoded with one fixed binarisation.
        label: with ``"subset"``, keep only the rows of the split ``x`` with this label.
        seed: seeds every draw; the global RNG is not touched.

    Returns: :class:`~pyro_vae.PredictiveSamples` with ``z`` of shape ``(num_samples, L)`` and
    ``x``, ``mean`` of shape ``(num_samples, D)``.
    """
    positive_int(num_samples, "num_samples")
    if isinstance(source, str) and source == "prior":
        return prior_predictive(vae, num_samples, seed=seed)
    z = latent_source(vae, source, x=x, label=label).sample(num_samples, seed=seed)
    return decode(vae, z, seed=seed)


def latent_source(
    vae: VAE, source: str | AggregatePosterior | LatentMixture, *, x: Any = None, label: int | None = None
) -> AggregatePosterior | LatentMixture:
    """The object :func:`sample` draws from for ``source`` other than ``"prior"``."""
    if isinstance(source, (AggregatePosterior, LatentMixture)):
        if source.latent_dim != vae.latent_dim:
            raise ValueError(f"The source is over {source.latent_dim} dimensions; this VAE has {vae.latent_dim}.")
        return source
    if source not in SOURCES:
        raise ValueError(f"Unknown source {source!r}; choose one of {SOURCES}, or pass an AggregatePosterior "
                         "or LatentMixture.")  # fmt: skip
    if source == "mixture":
        if vae.latent_mixture is None:
            raise ValueError("This VAE has no fitted mixture; fit one first: vae.latent_mixture = "
                             "pyro_vae.LatentMixture.fit(vae, train_x, num_components=10).")  # fmt: skip
        return vae.latent_mixture
    if x is None:
        raise ValueError(f"source={source!r} needs the data x whose aggregate posterior to sample.")
    if label is not None and source != "subset":
        raise ValueError("label selects a subset; pass source='subset'.")
    return AggregatePosterior.from_data(vae, _rows(x, label))


@torch.no_grad()
def decode(vae: VAE, z: torch.Tensor, *, seed: int = 0) -> PredictiveSamples:
    """``x' ~ p(x|z)`` and ``E[x|z]`` for codes ``z`` of shape ``(M, L)``."""
    raw = vae.decoder(z)
    with isolated(seed):
        draws = vae.likelihood(raw).sample()
    return PredictiveSamples(z=z, x=draws, mean=vae.likelihood.mean(raw))


def _rows(x: Any, label: int | None) -> torch.Tensor:
    if isinstance(x, Split):
        if label is not None:
            if x.labels is None:
                raise ValueError("This split has no labels to select a subset by.")
            known = sorted(set(x.labels.tolist()))
            if label not in known:
                raise ValueError(f"No rows with label {label!r}; the labels present are {known}.")
            x = x[x.labels == label]
        return x.binarized(0) if x.dynamic_binarization else x.x
    if label is not None:
        raise ValueError("label needs x as a pyro_vae.data.Split, which carries the labels.")
    return x

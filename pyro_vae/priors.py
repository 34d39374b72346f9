"""Priors ``p(z)``: a registry of small modules that return distributions over the latent code.

Each prior returns a distribution with ``event_shape == (latent_dim,)`` and empty batch shape;
inside ``pyro.plate("data", ...)`` Pyro broadcasts it over the data points. Learned priors keep
their parameters as ``nn.Parameter`` attributes and are registered with ``pyro.module`` by the
model, so SVI trains them together with the networks.

Adding one is a few lines::

    @register_prior("student_t")
    class StudentTPrior(Prior):
        def distribution(self):
            return dist.StudentT(3.0, self.zeros, self.ones).to_event(1)
"""

from __future__ import annotations

from typing import Any

import pyro.distributions as dist
import torch
from torch import nn

from ._registry import registrar

PRIORS: dict[str, type["Prior"]] = {}


register_prior = registrar(PRIORS, "prior")


def get_prior(spec: "str | Prior", latent_dim: int, **kwargs: Any) -> "Prior":
    """Return a prior from a registry name (with constructor ``kwargs``) or pass one through."""
    if isinstance(spec, Prior):
        if spec.latent_dim != latent_dim:
            raise ValueError(
                f"The prior has latent_dim={spec.latent_dim} but the VAE has latent_dim={latent_dim}."
            )
        return spec
    if not isinstance(spec, str) or spec not in PRIORS:
        raise ValueError(
            f"Unknown prior {spec!r}; choose one of {sorted(PRIORS)} or pass a pyro_vae.Prior instance."
        )
    return PRIORS[spec](latent_dim, **kwargs)


class Prior(nn.Module):
    """Base class for ``p(z)`` over ``latent_dim`` dimensions."""

    name: str = "custom"

    def __init__(self, latent_dim: int, **config: Any):
        super().__init__()
        if not (isinstance(latent_dim, int) and latent_dim > 0):
            raise ValueError(f"latent_dim must be a positive integer, got {latent_dim!r}.")
        self.latent_dim = latent_dim
        self.config = config
        self.register_buffer("zeros", torch.zeros(latent_dim), persistent=False)
        self.register_buffer("ones", torch.ones(latent_dim), persistent=False)

    def distribution(self) -> dist.TorchDistribution:  # pragma: no cover
        raise NotImplementedError

    def forward(self) -> dist.TorchDistribution:
        return self.distribution()


@register_prior("normal")
class StandardNormalPrior(Prior):
    """``p(z) = N(0, I)``."""

    def distribution(self):
        return dist.Normal(self.zeros, self.ones).to_event(1)

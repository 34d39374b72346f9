"""Families of the amortized posterior ``q(z|x)``: a registry, like likelihoods and priors.

The encoder maps ``x`` (and covariates) to ``(loc, scale)``; a guide family turns them into the
distribution of ``z``:

* ``"normal"`` -- ``N(loc, diag(scale^2))``, the usual diagonal Gaussian;
* ``"iaf"`` -- that Gaussian pushed through ``num_flows`` inverse autoregressive flows (Kingma et
  al. 2016, "Improved Variational Inference with Inverse Autoregressive Flow"), built from
  :func:`pyro.distributions.transforms.affine_autoregressive` with the numerically stable
  (sigmoid-gated) update, shared by every data point. Sampling and the density of its own draws
  are one pass each; the density of other codes (the aggregate posterior) inverts the flow.

Every tool reads ``q(z|x)`` from the guide's trace, so a flow guide is used for evaluation,
diagnostics and export as much as for training.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyro.distributions as dist
import pyro.distributions.transforms as T
import torch
from torch import nn

from .._util.checks import positive_int
from .._util.registry import registrar, with_defaults
from ..distributions.flows import reversing_stack
from .networks import mlp_parameter_count

GUIDES: dict[str, type[GuideFamily]] = {}

register_guide = registrar(GUIDES, "guide")


def get_guide(spec: str | GuideFamily, latent_dim: int, **kwargs: Any) -> GuideFamily:
    """Return a guide family from a registry name (with constructor ``kwargs``) or pass one through."""
    if isinstance(spec, GuideFamily):
        return spec
    if not isinstance(spec, str) or spec not in GUIDES:
        raise ValueError(f"Unknown guide {spec!r}; choose one of {sorted(GUIDES)} or pass a pyro_vae.GuideFamily.")
    try:
        return GUIDES[spec](latent_dim, **kwargs)
    except TypeError as error:
        raise ValueError(f"Bad arguments for the {spec!r} guide: {error}.") from None


class GuideFamily(nn.Module):
    """Base class: ``distribution(loc, scale)`` of ``z`` given the encoder's output, each ``(..., L)``.

    ``distribution`` (and ``forward``, which calls it) are the hooks a subclass overrides; the
    VAE's guide and its ELBO from the parts both call the module (:meth:`pyro_vae.VAE.posterior`)."""

    name: str = "custom"

    def __init__(self, latent_dim: int, **config: Any):
        super().__init__()
        self.latent_dim = positive_int(latent_dim, "latent_dim")
        self.config = config

    def distribution(self, loc: torch.Tensor, scale: torch.Tensor) -> dist.TorchDistribution:  # pragma: no cover
        raise NotImplementedError

    @classmethod
    def parameter_count(cls, latent_dim: int, **config: Any) -> int:
        """An upper bound on the numbers a guide family of this class holds beyond the encoder, from its
        configuration alone: a saved model's size check reads it. The base class holds none."""
        return 0

    def forward(self, loc: torch.Tensor, scale: torch.Tensor) -> dist.TorchDistribution:
        return self.distribution(loc, scale)


@register_guide("normal")
class NormalGuide(GuideFamily):
    """``q(z|x) = N(loc(x), diag(scale(x)^2))``."""

    def distribution(self, loc, scale):
        return dist.Normal(loc, scale).to_event(1)


@register_guide("iaf")
class IAFGuide(GuideFamily):
    """``z = f_K o ... o f_1(e)``, ``e ~ N(loc(x), diag(scale(x)^2))``, with stable affine IAF layers.

    Args:
        num_flows: number of autoregressive layers ``K``; the coordinates are reversed between layers.
        hidden_dims: hidden widths of each layer's autoregressive network (default ``[3 L + 1]``).
    """

    @classmethod
    def parameter_count(cls, latent_dim: int, **config: Any) -> int:
        """One autoregressive MLP ``L -> hidden -> 2 L`` per layer, and its masks (of the weights' shapes)."""
        config = with_defaults(cls, config)
        hidden = config["hidden_dims"] if config["hidden_dims"] is not None else [3 * latent_dim + 1]
        return 2 * config["num_flows"] * mlp_parameter_count([latent_dim, *hidden, 2 * latent_dim])

    def __init__(self, latent_dim: int, num_flows: int = 2, hidden_dims: Sequence[int] | None = None):
        hidden = [int(h) for h in hidden_dims] if hidden_dims is not None else [3 * latent_dim + 1]
        super().__init__(latent_dim, num_flows=positive_int(num_flows, "num_flows"), hidden_dims=hidden)
        if latent_dim < 2:
            raise ValueError(
                "The IAF guide needs latent_dim >= 2: an autoregressive layer on one coordinate is affine."
            )
        self.flows = nn.ModuleList(
            T.affine_autoregressive(latent_dim, hidden_dims=hidden, stable=True) for _ in range(num_flows)
        )
        self._transforms = reversing_stack(list(self.flows), latent_dim)

    def distribution(self, loc, scale):
        return dist.TransformedDistribution(dist.Normal(loc, scale).to_event(1), self._transforms)

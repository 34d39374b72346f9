"""A VAE with two stochastic layers: the hierarchical VAE (HVAE) of Tomczak & Welling (2018).

.. math::

    p(x, z_1, z_2) = p(z_2)\\, p(z_1 \\mid z_2)\\, p(x \\mid z_1, z_2), \\qquad
    q(z_1, z_2 \\mid x) = q(z_2 \\mid x)\\, q(z_1 \\mid x, z_2),

the architecture of "VAE with a VampPrior" (Tomczak & Welling 2018, section 3.3 and appendix) and
of the HVAE rows of the Exemplar VAE's table (Norouzi et al. 2020). Burda et al. (2016) trained
two stochastic layers as a chain ``x -> z1 -> z2``; this is the variant whose top layer ``z2``
carries the learned prior (``prior="vamp"``: ``p(z2) = (1/K) sum_k q(z2 | u_k)``).

Sites: ``"z2"`` (top, its prior the VAE's ``prior``; its guide the VAE's ``guide`` family) and
``"z1"`` (bottom), both inside the data plate, and the observed ``"x"``. Every network is an MLP of
the VAE's ``hidden_sizes`` and ``activation``:

* ``encoder``: ``x -> q(z2 | x)`` (as in :class:`~pyro_vae.VAE`, so the VampPrior reuses it);
* ``bottom_encoder``: ``(x, z2) -> q(z1 | x, z2)``, one MLP on the concatenation;
* ``bottom_prior``: ``z2 -> p(z1 | z2)``, a diagonal Gaussian;
* ``decoder``: ``(z1, z2) -> p(x | z1, z2)``.

The tools read the two layers from traces like any hierarchical program: ``p(z1)`` and
``q(z2|x)``... are marginals by Monte Carlo where a tool needs one (:mod:`pyro_vae.latent.marginals`),
and ``site=`` chooses the layer.
"""

from __future__ import annotations

from typing import Any, cast

import pyro
import pyro.distributions as dist
import torch

from .._util.checks import positive_int
from .model import VAE, kl_scale
from .networks import MLPDecoder, MLPEncoder, flatten_leading


class HierarchicalVAE(VAE):
    """A VAE with a top latent ``z2`` of ``latent_dim`` and a bottom latent ``z1`` of ``bottom_dim``.

    Takes every argument of :class:`~pyro_vae.VAE` (the prior and guide family apply to ``z2``) and
    ``bottom_dim``. Conditional models (``covariate_dim``) and user networks are not offered here.
    """

    extra_options = ("bottom_dim",)

    def __init__(self, input_dim: int, latent_dim: int = 40, *, bottom_dim: int = 40, **kwargs: Any):
        for name in ("covariate_dim", "encoder", "decoder", "missing"):
            if kwargs.get(name):
                raise ValueError(f"HierarchicalVAE does not take {name}=; use a VAE, or write the program by hand.")
        kwargs.pop("encoder", None), kwargs.pop("decoder", None)
        super().__init__(input_dim, latent_dim, **kwargs)
        self.bottom_dim = positive_int(bottom_dim, "bottom_dim")
        hidden = cast(list, self._architecture["hidden_sizes"])
        activation = cast(str, self._architecture["activation"])
        self.bottom_encoder = MLPEncoder(self.input_dim + self.latent_dim, self.bottom_dim, hidden, activation)
        self.bottom_prior = MLPEncoder(self.latent_dim, self.bottom_dim, hidden, activation)
        output_dim = self.input_dim * self.likelihood.params_per_feature
        self.decoder = MLPDecoder(self.bottom_dim + self.latent_dim, output_dim, hidden, activation)

    def model(
        self,
        x: torch.Tensor | None = None,
        y: torch.Tensor | None = None,
        size_factor: torch.Tensor | None = None,
        *,
        indices: torch.Tensor | None = None,
        num_data: int | None = None,
        kl_weight: float = 1.0,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``z2 ~ p(z2)``, ``z1 ~ p(z1|z2)``, ``x ~ p(x|z1, z2)``; arguments as in :meth:`VAE.model`."""
        _no_mask(mask)
        pyro.module("decoder", self.decoder)
        pyro.module("bottom_prior", self.bottom_prior)
        pyro.module("likelihood", self.likelihood)
        pyro.module("prior", self.prior)
        self._covariates(y, None)
        size = self._size_factors(x, size_factor)
        with self._data_plate(x, indices, num_data):
            with kl_scale(kl_weight):
                top = pyro.sample("z2", self.prior())
                loc, scale = flatten_leading(self.bottom_prior)(top)
                bottom = pyro.sample("z1", dist.Normal(loc, scale).to_event(1))
            raw = self.decode(torch.cat([bottom, top], dim=-1))
            pyro.sample("x", self.observation(raw, size), obs=x)
        return raw

    def guide(
        self,
        x: torch.Tensor,
        y: torch.Tensor | None = None,
        size_factor: torch.Tensor | None = None,
        *,
        indices: torch.Tensor | None = None,
        num_data: int | None = None,
        kl_weight: float = 1.0,
        mask: torch.Tensor | None = None,
    ) -> None:
        """``z2 ~ q(z2|x)`` of the guide family, then ``z1 ~ q(z1|x, z2)``."""
        _no_mask(mask)
        pyro.module("encoder", self.encoder)
        pyro.module("bottom_encoder", self.bottom_encoder)
        pyro.module("guide_family", self.guide_family)
        self._covariates(y, None)
        with self._data_plate(x, indices, num_data):
            loc, scale = self.encode(x)
            with kl_scale(kl_weight):
                top = pyro.sample("z2", self.guide_family(loc, scale))
                inputs = self.scaled_inputs(x).expand(*top.shape[:-1], -1)
                loc, scale = flatten_leading(self.bottom_encoder)(torch.cat([inputs, top], dim=-1))
                pyro.sample("z1", dist.Normal(loc, scale).to_event(1))


def _no_mask(mask) -> None:
    if mask is not None:
        raise ValueError("HierarchicalVAE does not model missing entries; use VAE(..., missing=True) for mask=.")

"""A mixture of diagonal Gaussians whose density costs two matrix products.

``MixtureSameFamily(Categorical, Normal(loc, scale).to_event(1))`` evaluates ``log p(z)`` for ``M``
codes by broadcasting to an ``(M, K, L)`` tensor and a dozen elementwise operations over it
(and as many again in the backward pass). For the VampPrior's ``K = 500`` components that
dominates a training step. Expanding the square,

.. math::

    \\sum_l \\frac{(z_l - \\mu_{kl})^2}{\\sigma_{kl}^2}
      = (z \\odot z) \\cdot \\sigma_k^{-2} - 2\\, z \\cdot (\\mu_k \\odot \\sigma_k^{-2})
        + \\mu_k \\cdot (\\mu_k \\odot \\sigma_k^{-2}),

turns the work into two ``(M, L) x (L, K)`` products. They run in float64, so the cancellation
between the terms stays far below float32 resolution, and the result is returned in the dtype of
``z``. Gradients flow to ``z`` and to every parameter.
"""

from __future__ import annotations

import math

import pyro.distributions as dist
import torch
from torch.distributions import constraints


class DiagonalNormalMixture(dist.TorchDistribution):
    """``p(z) = sum_k softmax(logits)_k N(z; loc_k, diag(scale_k^2))`` over ``z`` in ``R^L``.

    Args:
        logits: ``(K,)`` unnormalised log mixing weights.
        loc, scale: ``(K, L)`` component means and standard deviations.

    ``event_shape == (L,)``; ``log_prob`` takes ``(..., L)`` and returns ``(...)``. ``expand`` adds
    batch dimensions (as Pyro's plates do) without copying the components.
    """

    arg_constraints = {"logits": constraints.real_vector, "loc": constraints.real, "scale": constraints.positive}
    support = constraints.real_vector
    has_rsample = False

    def __init__(
        self, logits: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor, batch_shape=torch.Size(), validate_args=None
    ):
        if loc.ndim != 2 or scale.shape != loc.shape or logits.shape != loc.shape[:1]:
            raise ValueError(
                f"logits (K,), loc and scale (K, L) expected, got {tuple(logits.shape)}, "
                f"{tuple(loc.shape)}, {tuple(scale.shape)}."
            )
        self.logits, self.loc, self.scale = logits, loc, scale
        super().__init__(torch.Size(batch_shape), loc.shape[-1:], validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        return DiagonalNormalMixture(self.logits, self.loc, self.scale, batch_shape)

    @property
    def mean(self) -> torch.Tensor:
        return (self.logits.softmax(-1)[:, None] * self.loc).sum(0).expand(self.batch_shape + self.event_shape)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        lead = value.shape[:-1]
        z = value.reshape(-1, value.shape[-1]).double()
        log_components = component_log_densities(z, quadratic_terms(self.loc, self.scale))  # (M, K)
        out = torch.logsumexp(self.logits.double().log_softmax(-1) + log_components, dim=-1)
        return out.to(value.dtype).reshape(lead)

    @torch.no_grad()
    def sample(self, sample_shape=torch.Size()) -> torch.Tensor:
        shape = torch.Size(sample_shape) + self.batch_shape
        component = torch.distributions.Categorical(logits=self.logits).sample(shape)
        return self.loc[component] + self.scale[component] * torch.randn(
            *shape, self.loc.shape[-1], dtype=self.loc.dtype, device=self.loc.device
        )


def quadratic_terms(loc: torch.Tensor, scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The parts of ``K`` diagonal Gaussians' log-densities that do not depend on the point, in float64.

    For component ``k`` with mean ``mu_k`` and standard deviations ``s_k`` (each ``(K, L)``),

    .. math::

        -2 \\log N(z; \\mu_k, s_k^2) = z^2 \\cdot s_k^{-2} - 2 z \\cdot (\\mu_k s_k^{-2})
        + \\textstyle\\sum_l \\mu_{kl}^2 / s_{kl}^2 + 2 \\sum_l \\log s_{kl} + L \\log 2\\pi.

    Returns ``(1/s^2, mu/s^2, constant)`` of shapes ``(K, L)``, ``(K, L)`` and ``(K,)``.
    """
    loc, scale = loc.double(), scale.double()
    precision = scale.pow(-2)
    weighted_loc = loc * precision
    constant = (loc * weighted_loc).sum(-1) + 2 * scale.log().sum(-1) + loc.shape[-1] * math.log(2 * math.pi)
    return precision, weighted_loc, constant


def component_log_densities(z: torch.Tensor, terms: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """``log N(z_m; mu_k, s_k^2)`` for codes ``z`` ``(M, L)`` (float64) and every component: ``(M, K)``.

    Two matrix products, so memory is ``O(M K)`` rather than ``O(M K L)``; computed in place.
    """
    precision, weighted_loc, constant = terms
    quad = torch.addmm(constant, z * z, precision.T)
    quad.addmm_(z, weighted_loc.T, alpha=-2.0)
    return quad.mul_(-0.5)

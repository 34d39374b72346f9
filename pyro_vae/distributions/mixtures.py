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
        precision = self.scale.double().pow(-2)
        weighted_loc = self.loc.double() * precision
        constant = (
            (self.loc.double() * weighted_loc).sum(-1)
            + 2 * self.scale.double().log().sum(-1)
            + z.shape[-1] * math.log(2 * math.pi)
        )
        quad = torch.addmm(constant, z * z, precision.T) - 2.0 * z @ weighted_loc.T  # (M, K)
        log_weights = self.logits.double().log_softmax(-1)
        out = torch.logsumexp(log_weights - 0.5 * quad, dim=-1)
        return out.to(value.dtype).reshape(lead)

    @torch.no_grad()
    def sample(self, sample_shape=torch.Size()) -> torch.Tensor:
        shape = torch.Size(sample_shape) + self.batch_shape
        component = torch.distributions.Categorical(logits=self.logits).sample(shape)
        return self.loc[component] + self.scale[component] * torch.randn(
            *shape, self.loc.shape[-1], dtype=self.loc.dtype, device=self.loc.device
        )

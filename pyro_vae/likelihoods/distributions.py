"""Two distributions :mod:`pyro.distributions` lacks: a dequantised density and the discretised logistic."""

from __future__ import annotations

import math

import pyro.distributions as dist
import torch
from torch.distributions import constraints
from torch.nn import functional as F

# Dequantisation noise is kept this far inside (0, 1): a density supported on the open interval
# (the Beta) would be infinite or zero at a bin's edge, and torch.rand can return exactly 0.
_EDGE = 1e-6


def dequantize(levels: torch.Tensor, noise: torch.Tensor, num_levels: int) -> torch.Tensor:
    """``(k + u) / L``, kept strictly inside ``(0, 1)`` in the values' own precision.

    In float32, ``255 + u`` rounds to ``256`` once ``u > 1 - 2^-17``, and ``(k + u) / L`` is then
    exactly 1, where a Beta density is zero or infinite. The point is therefore clamped to
    ``[_EDGE / L, 1 - eps]`` with ``eps`` the dtype's machine epsilon: it moves ``x`` by at most
    ``eps``, and only for the rare draws that would otherwise round onto an edge.
    """
    x = (levels + noise) / num_levels
    return x.clamp(_EDGE / num_levels, 1 - torch.finfo(x.dtype).eps)


def level_mean(unit_mean: torch.Tensor, num_levels: int) -> torch.Tensor:
    """``L E[x] - 1/2`` clipped to ``[0, L-1]``: the mean level of ``floor(L x)`` to within half a
    level when ``x`` lies in ``[0, 1]``."""
    return (num_levels * unit_mean - 0.5).clamp(0, num_levels - 1)


class Dequantized(dist.TorchDistribution):
    """Integer levels ``k = floor(L x)`` of ``x ~ density`` on ``[0, 1]``, scored by uniform dequantisation.

    ``log_prob(k)`` draws ``u ~ U(0, 1)`` per value and returns
    ``density.log_prob((k + u) / L) - n log L``, with ``n`` the number of values per event: an
    unbiased one-draw estimate of a lower bound on ``log P(k)`` (see
    :class:`~pyro_vae.likelihoods.DensityLikelihood`).
    """

    arg_constraints: dict = {}
    has_rsample = False

    def __init__(self, density: dist.TorchDistribution, num_levels: int, validate_args=None):
        self.density = density
        self.num_levels = int(num_levels)
        super().__init__(density.batch_shape, density.event_shape, validate_args=False)

    @constraints.dependent_property(is_discrete=True, event_dim=0)
    def support(self):
        return constraints.independent(constraints.integer_interval(0, self.num_levels - 1), len(self.event_shape))

    def expand(self, batch_shape, _instance=None):
        return Dequantized(self.density.expand(torch.Size(batch_shape)), self.num_levels)

    def log_prob(self, value):
        shape = torch.broadcast_shapes(value.shape, self.batch_shape + self.event_shape)
        noise = torch.rand(shape, dtype=value.dtype, device=value.device) * (1 - 2 * _EDGE) + _EDGE
        values_per_event = math.prod(self.event_shape)
        x = dequantize(value, noise, self.num_levels)
        return self.density.log_prob(x) - values_per_event * math.log(self.num_levels)

    def sample(self, sample_shape=torch.Size()):
        with torch.no_grad():
            x = self.density.sample(sample_shape)
            return (x * self.num_levels).floor().clamp(0, self.num_levels - 1)

    @property
    def mean(self):
        return level_mean(self.density.mean, self.num_levels)


class DiscretizedLogistic(dist.TorchDistribution):
    """A (mixture of) logistic distribution(s) on ``[0, 1]`` binned into levels ``0..L-1``.

    Level ``k`` is the bin ``[k/L, (k+1)/L)``; the first and last bins extend to ``-inf`` and
    ``+inf``, so the masses sum to one (Salimans et al. 2017, PixelCNN++). For one component,

    .. math::

        P(k) = \\sigma\\Big(\\frac{(k+1)/L - \\mu}{s}\\Big) - \\sigma\\Big(\\frac{k/L - \\mu}{s}\\Big),

    computed in log space as ``log σ(a) + log σ(-b) + log(1 - exp(b - a))`` (since
    ``σ(a) - σ(b) = σ(a) σ(-b) (1 - e^{b-a})``), which stays accurate for narrow and wide
    logistics alike.

    Args:
        loc, scale: shape ``batch_shape + (K,)``: per-component location (on ``[0, 1]``) and scale.
        num_levels: ``L``.
        logits: mixture weights' logits of the same shape, or ``None`` for ``K = 1``.
    """

    arg_constraints = {"loc": constraints.real, "scale": constraints.positive}
    has_rsample = False

    def __init__(self, loc, scale, num_levels: int, logits=None, validate_args=None):
        if logits is None:
            loc, scale = torch.broadcast_tensors(loc, scale)
        else:
            loc, scale, logits = torch.broadcast_tensors(loc, scale, logits)
        self.loc, self.scale, self.logits = loc, scale, logits
        self.num_levels = int(num_levels)
        super().__init__(loc.shape[:-1], torch.Size(), validate_args=False)

    @constraints.dependent_property(is_discrete=True, event_dim=0)
    def support(self):
        return constraints.integer_interval(0, self.num_levels - 1)

    def expand(self, batch_shape, _instance=None):
        shape = torch.Size(batch_shape) + self.loc.shape[-1:]
        logits = None if self.logits is None else self.logits.expand(shape)
        return DiscretizedLogistic(self.loc.expand(shape), self.scale.expand(shape), self.num_levels, logits)

    def _log_weights(self):
        return None if self.logits is None else torch.log_softmax(self.logits, dim=-1)

    def log_prob(self, value):
        k = value.unsqueeze(-1)
        levels = self.num_levels
        upper = ((k + 1) / levels - self.loc) / self.scale
        lower = (k / levels - self.loc) / self.scale
        # lower - upper = -1 / (L s) < 0, so expm1 is negative and its log is finite.
        inner = F.logsigmoid(upper) + F.logsigmoid(-lower) + torch.log(-torch.expm1(lower - upper))
        log_mass = torch.where(k <= 0, F.logsigmoid(upper), torch.where(k >= levels - 1, F.logsigmoid(-lower), inner))
        weights = self._log_weights()
        if weights is None:
            return log_mass.squeeze(-1)
        return torch.logsumexp(log_mass + weights, dim=-1)

    def cdf_at(self, x: torch.Tensor) -> torch.Tensor:
        """``P(X <= x)`` of the continuous mixture at points ``x`` of shape ``batch_shape``."""
        cdf = torch.sigmoid((x.unsqueeze(-1) - self.loc) / self.scale)
        weights = self._log_weights()
        return cdf.squeeze(-1) if weights is None else (cdf * weights.exp()).sum(-1)

    def sample(self, sample_shape=torch.Size()):
        with torch.no_grad():
            shape = torch.Size(sample_shape) + self.loc.shape
            u = torch.rand(shape, dtype=self.loc.dtype, device=self.loc.device).clamp(_EDGE, 1 - _EDGE)
            x = self.loc + self.scale * (torch.log(u) - torch.log1p(-u))  # (..., K)
            if self.logits is None:
                x = x.squeeze(-1)
            else:
                component = dist.Categorical(logits=self.logits).sample(sample_shape)
                x = x.gather(-1, component.unsqueeze(-1)).squeeze(-1)
            return (x * self.num_levels).floor().clamp(0, self.num_levels - 1)

    @property
    def mean(self):
        # E[k] = sum_{j=1}^{L-1} P(k >= j) = sum_j (1 - F(j / L)), exact; looped to bound memory.
        total = torch.zeros(self.batch_shape, dtype=self.loc.dtype, device=self.loc.device)
        for j in range(1, self.num_levels):
            total = total + 1 - self.cdf_at(torch.full_like(total, j / self.num_levels))
        return total


class Standardized(dist.TorchDistribution):
    """``x = loc + scale * x'`` with ``x' ~ base``: a likelihood fitted to standardised data, stated
    in the data's own units.

    .. math::

        \\log p(x) = \\log p_{\\text{base}}\\big((x - \\mu) / s\\big) - \\sum_d \\log s_d,

    the change of variables of an elementwise affine map, so log-likelihoods and comparisons stay in
    the units of ``x``. ``loc`` and ``scale`` have shape ``(D,)``; ``base`` has event shape ``(D,)``.
    """

    arg_constraints: dict = {}
    support = constraints.independent(constraints.real, 1)

    def __init__(
        self,
        base: dist.TorchDistribution,
        loc: torch.Tensor,
        scale: torch.Tensor,
        validate_args=None,
        *,
        observed: torch.Tensor | None = None,
    ):
        self.base, self.loc, self.scale, self.observed = base, loc, scale, observed
        super().__init__(base.batch_shape, base.event_shape, validate_args=False)

    def mask_features(self, mask: torch.Tensor, masked_base: dist.TorchDistribution) -> Standardized:
        """The same distribution scoring only the entries where ``mask`` is True: ``masked_base`` is
        the base masked so, and the change of variables counts those entries' scales only."""
        return Standardized(masked_base, self.loc, self.scale, observed=mask)

    @property
    def has_rsample(self):
        return self.base.has_rsample

    def log_prob(self, value):
        log_scale = self.scale.log() if self.observed is None else self.scale.log() * self.observed
        return self.base.log_prob((value - self.loc) / self.scale) - log_scale.sum(-1)

    def sample(self, sample_shape=torch.Size()):
        return self.loc + self.scale * self.base.sample(sample_shape)

    def rsample(self, sample_shape=torch.Size()):
        return self.loc + self.scale * self.base.rsample(sample_shape)

    @property
    def mean(self):
        return self.loc + self.scale * self.base.mean

    @property
    def variance(self):
        return self.scale.pow(2) * self.base.variance

    def expand(self, batch_shape, _instance=None):
        return Standardized(self.base.expand(batch_shape), self.loc, self.scale, observed=self.observed)

"""Likelihoods for binary pixels and for values on a continuous scale.

Every density here also models integer levels when given ``num_levels`` (uniform
dequantisation, see :class:`~pyro_vae.likelihoods.DensityLikelihood`).
"""

from __future__ import annotations

import pyro.distributions as dist
import torch
from torch.distributions import constraints

from .base import DensityLikelihood, Likelihood, open_unit_interval, register_likelihood


@register_likelihood("bernoulli")
class BernoulliLikelihood(Likelihood):
    """``x_d ~ Bernoulli(sigmoid(raw_d))`` for binary data (a mass function)."""

    support = constraints.boolean
    is_discrete = True
    max_level = 1.0
    support_hint = (
        "Binarise the data first, e.g. pyro_vae.data.load(..., binarize='fixed'), or use the "
        "'continuous_bernoulli' likelihood for values in [0, 1]."
    )

    def distribution(self, raw):
        return dist.Bernoulli(logits=raw, validate_args=False).to_event(1)

    def mean(self, raw):
        return torch.sigmoid(raw)

    def initial_values(self, x):
        return [torch.logit(x.mean(0).clamp(1e-3, 1 - 1e-3))], {}


@register_likelihood("continuous_bernoulli")
class ContinuousBernoulliLikelihood(DensityLikelihood):
    """Continuous Bernoulli density on ``[0, 1]`` (Loaiza-Ganem & Cunningham, 2019), the
    normalised version of the Bernoulli cross-entropy that is often misused on grey levels."""

    density_support = constraints.unit_interval
    density_hint = "Scale the data to [0, 1] first."

    def __init__(self, num_levels: int | None = None):
        super().__init__(num_levels=num_levels)

    def density(self, raw):
        # Clamp keeps the normaliser's Taylor branch numerically safe for extreme logits.
        return dist.ContinuousBernoulli(logits=raw.clamp(-30.0, 30.0), validate_args=False).to_event(1)


class _LocationScale(DensityLikelihood):
    """``x_d ~ family(loc = raw_d, scale)`` with a :class:`~pyro_vae.likelihoods.Positive` scale.

    ``scale`` is a positive number (fixed), ``"global"`` (one learned scale, the default),
    ``"feature"`` (one per feature) or ``"decoder"`` (predicted per point and feature);
    learned scales are ``min_scale + softplus(.)`` and start at ``init_scale``.
    """

    family: type = dist.Normal

    def __init__(
        self,
        scale: float | str = "global",
        min_scale: float = 1e-3,
        init_scale: float = 0.1,
        num_levels: int | None = None,
    ):
        super().__init__(num_levels=num_levels, scale=scale, min_scale=min_scale, init_scale=init_scale)
        self.scale = self.positive("scale", scale, floor=min_scale, init=init_scale)

    def density(self, raw):
        loc, scale = self.split(raw)
        return self.family(loc, scale.expand_as(loc), validate_args=False).to_event(1)

    def density_mean(self, raw):
        return self.split(raw)[0]

    def initial_values(self, x):
        if self.num_levels is not None:  # levels are modelled on [0, 1]: no moment match in x's units
            return super().initial_values(x)
        spread = x.std(0, correction=0).clamp(min=2 * self.scale.floor if not self.scale.is_fixed else 1e-6)
        return [x.mean(0)], {"scale": spread}


@register_likelihood("normal")
class NormalLikelihood(_LocationScale):
    """``x_d ~ Normal(raw_d, scale)``; see :class:`_LocationScale` for ``scale``."""

    family = dist.Normal


@register_likelihood("laplace")
class LaplaceLikelihood(_LocationScale):
    """``x_d ~ Laplace(raw_d, scale)``: heavier tails than the normal, median regression."""

    family = dist.Laplace


@register_likelihood("student_t")
class StudentTLikelihood(_LocationScale):
    """``x_d ~ StudentT(df, raw_d, scale)``, robust to outlying values.

    ``df`` takes the same forms as ``scale`` (fixed number, ``"global"``, ``"feature"``,
    ``"decoder"``), learned as ``min_df + softplus(.)`` from ``init_df``.
    """

    def __init__(
        self,
        scale: float | str = "global",
        min_scale: float = 1e-3,
        init_scale: float = 0.1,
        df: float | str = "global",
        min_df: float = 1.0,
        init_df: float = 5.0,
        num_levels: int | None = None,
    ):
        super().__init__(scale, min_scale, init_scale, num_levels)
        self.config.update(df=df, min_df=min_df, init_df=init_df)
        self.df = self.positive("df", df, floor=min_df, init=init_df)

    def density(self, raw):
        loc, scale, df = self.split(raw)
        return dist.StudentT(df.expand_as(loc), loc, scale.expand_as(loc), validate_args=False).to_event(1)


@register_likelihood("beta")
class BetaLikelihood(DensityLikelihood):
    """``x_d ~ Beta(m_d k, (1 - m_d) k)`` with mean ``m_d = sigmoid(raw_d)`` and precision ``k``.

    The mean-precision form (Ferrari & Cribari-Neto 2004) makes the precision a scale-type
    parameter: ``concentration`` is fixed, ``"global"``, ``"feature"`` or ``"decoder"``, learned as
    ``min_concentration + softplus(.)``. The density lives on the open interval ``(0, 1)``;
    grey levels that reach 0 or 1 need ``num_levels`` (dequantisation puts them inside).
    """

    density_support = open_unit_interval
    density_hint = "The Beta density needs values strictly between 0 and 1."

    def __init__(
        self,
        concentration: float | str = "global",
        min_concentration: float = 0.01,
        init_concentration: float = 10.0,
        num_levels: int | None = None,
    ):
        super().__init__(
            num_levels=num_levels,
            concentration=concentration,
            min_concentration=min_concentration,
            init_concentration=init_concentration,
        )
        self.concentration = self.positive(
            "concentration", concentration, floor=min_concentration, init=init_concentration
        )

    def density(self, raw):
        logits, concentration = self.split(raw)
        mean = torch.sigmoid(logits).clamp(1e-6, 1 - 1e-6)
        return dist.Beta(mean * concentration, (1 - mean) * concentration, validate_args=False).to_event(1)

    def density_mean(self, raw):
        return torch.sigmoid(self.split(raw)[0])

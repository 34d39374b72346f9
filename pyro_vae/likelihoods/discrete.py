"""Mass functions for counts and for grey levels.

* counts with a known maximum: ``binomial``;
* unbounded counts: ``poisson``, ``negative_binomial``, ``zero_inflated_negative_binomial``;
* ``L`` ordered levels (8-bit pixels: ``L = 256``): ``categorical`` (no order assumed) and
  ``discretized_logistic`` (a logistic, or a mixture of them, binned into the levels).

Count means use a softplus link, ``mean = softplus(raw)``, which grows linearly rather than
exponentially and so keeps early training steps tame.
"""

from __future__ import annotations

import pyro.distributions as dist
import torch
from torch.distributions import constraints
from torch.nn import functional as F

from .._util.checks import positive_int
from .base import Likelihood, register_likelihood
from .distributions import DiscretizedLogistic

_MIN_RATE = 1e-6
_COUNT_HINT = "Pass counts (non-negative whole numbers), e.g. pyro_vae.data.load(..., values='levels')."


def _inverse_rate(mean: torch.Tensor) -> torch.Tensor:
    """The raw output whose :func:`_rate` is ``mean`` (at least 1e-3)."""
    mean = mean.clamp(min=1e-3)
    return mean + torch.log(-torch.expm1(-mean))


def _rate(raw: torch.Tensor) -> torch.Tensor:
    return F.softplus(raw) + _MIN_RATE


class _CountMeans:
    """The mean of a count likelihood: ``softplus(raw)``, or with ``size_factors=True`` the point's
    size factor times a composition, ``l_i * softmax(raw_i)_d`` (library-size offsets, as in scVI,
    Lopez et al. 2018): the decoder then describes proportions, and sequencing depth or exposure is
    given, not learned."""

    size_factors: bool = False
    name: str
    #: The encoder reads log(1 + x), as scVI's does (Lopez et al. 2018).
    encoder_transform = "log1p"
    #: Narrower than the library's 400, wider than scVI's 128: on the simulated cells of
    #: docs/results.md ("Which count model?") 256 ranked the generating family first on panels of
    #: 100, 200 and 500 genes, where 128 failed on 500 genes and 400 on 200.
    default_hidden_sizes: tuple[int, ...] = (256,)

    def _count_mean(self, raw_mean: torch.Tensor, size: torch.Tensor | None) -> torch.Tensor:
        if not self.size_factors:
            if size is not None:
                raise ValueError(
                    f"The {self.name!r} likelihood was built without size_factors=True; it takes no size factors."
                )
            return _rate(raw_mean)
        if size is None:
            raise ValueError(
                f"The {self.name!r} likelihood uses size factors: give each point's size factor "
                "(its library size), e.g. covariates={'size_factor': counts.sum(-1)}."
            )
        return size.unsqueeze(-1) * torch.softmax(raw_mean, dim=-1) + _MIN_RATE

    def _initial_mean_raw(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(0)
        if self.size_factors:  # logits of the average composition
            return (mean / mean.sum().clamp(min=1e-12)).clamp(min=1e-8).log()
        return _inverse_rate(mean)


@register_likelihood("binomial")
class BinomialLikelihood(Likelihood):
    """``x_d ~ Binomial(total_count, sigmoid(raw_d))``: counts out of a known number of trials.

    The embedded digits are the standard example: each pixel counts how many of 16 cells of a
    4x4 block were inked, so ``total_count=16``.
    """

    is_discrete = True
    support_hint = _COUNT_HINT

    def __init__(self, total_count: int = 16):
        super().__init__(total_count=total_count)
        self.total_count = positive_int(total_count, "total_count")
        self.max_level = float(self.total_count)

    @property
    def support(self):
        return constraints.integer_interval(0, self.total_count)

    def distribution(self, raw):
        return dist.Binomial(total_count=self.total_count, logits=raw, validate_args=False).to_event(1)

    def mean(self, raw):
        return self.total_count * torch.sigmoid(raw)

    def initial_values(self, x):
        return [torch.logit((x.mean(0) / self.total_count).clamp(1e-3, 1 - 1e-3))], {}


@register_likelihood("poisson")
class PoissonLikelihood(_CountMeans, Likelihood):
    """``x_d ~ Poisson(softplus(raw_d))``: counts whose variance equals their mean."""

    support = constraints.nonnegative_integer
    is_discrete = True
    support_hint = _COUNT_HINT

    def __init__(self, size_factors: bool = False):
        super().__init__(**({"size_factors": True} if size_factors else {}))
        self.size_factors = _flag(size_factors, "size_factors")

    def distribution(self, raw, size=None):
        return dist.Poisson(self._count_mean(raw, size), validate_args=False).to_event(1)

    def mean(self, raw, size=None):
        return self._count_mean(raw, size)

    def initial_values(self, x):
        return [self._initial_mean_raw(x)], {}


@register_likelihood("negative_binomial")
class NegativeBinomialLikelihood(_CountMeans, Likelihood):
    """Over-dispersed counts: mean ``m = softplus(raw_d)``, variance ``m + m^2 / r``.

    The concentration ``r`` (inverse dispersion; large ``r`` approaches the Poisson) is fixed,
    ``"global"``, ``"feature"`` (the default, one per feature as in scVI, Lopez et al. 2018)
    or ``"decoder"``; learned as ``min_concentration + softplus(.)``.
    """

    support = constraints.nonnegative_integer
    is_discrete = True
    support_hint = _COUNT_HINT

    def __init__(
        self,
        concentration: float | str = "feature",
        min_concentration: float = 1e-3,
        init_concentration: float = 1.0,
        size_factors: bool = False,
    ):
        super().__init__(
            concentration=concentration,
            min_concentration=min_concentration,
            init_concentration=init_concentration,
            **({"size_factors": True} if size_factors else {}),
        )
        self.size_factors = _flag(size_factors, "size_factors")
        self.concentration = self.positive(
            "concentration", concentration, floor=min_concentration, init=init_concentration
        )

    def _counts(self, mean_raw, concentration, size=None):
        mean = self._count_mean(mean_raw, size)
        concentration = concentration.expand_as(mean)
        # torch's NegativeBinomial has mean r * exp(logits).
        return dist.NegativeBinomial(concentration, logits=mean.log() - concentration.log(), validate_args=False)

    def distribution(self, raw, size=None):
        mean_raw, concentration = self.split(raw)
        return self._counts(mean_raw, concentration, size).to_event(1)

    def mean(self, raw, size=None):
        return self._count_mean(self.split(raw)[0], size)

    def initial_values(self, x):
        return [self._initial_mean_raw(x)] + [None] * (self.base_params - 1), {"concentration": self._moments(x)}

    def _moments(self, x: torch.Tensor) -> torch.Tensor:
        """Method-of-moments concentrations, one per feature, in ``[1e-2, 1e3]``.

        Without size factors, variance ``m + m^2 / r`` gives ``r = m^2 / (v - m)``. With them the
        counts per unit of size ``u_i = x_i / l_i`` (``l_i`` the row total, the default size factor)
        have mean ``p`` and variance ``p E[1/l] + p^2 / r``: the spread of library sizes is not read
        as over-dispersion, which would start ``r`` far too low.
        """
        if self.size_factors:
            size = x.sum(-1, keepdim=True).clamp(min=1.0)
            units = x / size
            mean, variance = units.mean(0), units.var(0, correction=0)
            poisson = mean * size.reciprocal().mean()
        else:
            mean, variance = x.mean(0), x.var(0, correction=0)
            poisson = mean
        excess = variance - poisson
        concentration = torch.where(excess > 0, mean.pow(2) / excess.clamp(min=1e-30), torch.full_like(mean, 1e3))
        return concentration.clamp(1e-2, 1e3)


@register_likelihood("zero_inflated_negative_binomial")
class ZeroInflatedNegativeBinomialLikelihood(NegativeBinomialLikelihood):
    """A negative binomial with extra zeros: with probability ``g_d = sigmoid(gate_d)`` the count
    is 0, otherwise it is drawn from the negative binomial above. The decoder predicts the mean
    and the gate (two outputs per feature) besides any decoder-predicted concentration."""

    base_params = 2

    def distribution(self, raw, size=None):
        mean_raw, gate_logits, concentration = self.split(raw)
        counts = self._counts(mean_raw, concentration, size)
        return dist.ZeroInflatedNegativeBinomial(
            counts.total_count, logits=counts.logits, gate_logits=gate_logits, validate_args=False
        ).to_event(1)

    def mean(self, raw, size=None):
        mean_raw, gate_logits, _ = self.split(raw)
        return torch.sigmoid(-gate_logits) * self._count_mean(mean_raw, size)

    def initial_values(self, x):
        """The negative binomial's start, with the gate at the zeros it leaves unexplained.

        ``g_d = (z_d - p0_d) / (1 - p0_d)`` in ``[0.01, 0.5]``, where ``z_d`` is the observed share of
        zeros and ``p0_d`` the zero mass of the moment-matched negative binomial, averaged over the
        points' size factors; the count mean is divided by ``1 - g_d``, so that the mixture's mean
        starts at the data's (with size factors, whose compositions sum to one, in proportion to it). Counts without extra zeros start near the plain negative binomial
        rather than at a gate of one half.
        """
        (mean_raw, _), positives = super().initial_values(x)
        concentration = positives["concentration"]
        mean = x.mean(0)
        if self.size_factors:
            size = x.sum(-1, keepdim=True)
            point_means = size * mean / mean.sum().clamp(min=1e-12)
        else:
            point_means = mean.expand_as(x)
        nb_zeros = (concentration / (concentration + point_means)).pow(concentration).mean(0)
        observed_zeros = (x == 0).float().mean(0)
        gate = ((observed_zeros - nb_zeros) / (1 - nb_zeros).clamp(min=1e-6)).clamp(0.01, 0.5)
        if self.size_factors:
            mean_raw = mean_raw - torch.log1p(-gate)
        else:
            mean_raw = _inverse_rate(mean / (1 - gate))
        return [mean_raw, torch.logit(gate)], positives


def _flag(value, name: str) -> bool:
    if value is not True and value is not False:
        raise ValueError(f"{name} must be True or False, got {value!r}.")
    return value


class _Levels(Likelihood):
    """Shared by the mass functions on levels ``0..num_levels-1``."""

    is_discrete = True
    support_hint = "Pass integer levels, e.g. pyro_vae.data.load('fashion-mnist', values='levels')."

    def _set_levels(self, num_levels: int) -> None:
        self.num_levels = positive_int(num_levels, "num_levels")
        if self.num_levels < 2:
            raise ValueError(f"num_levels must be at least 2, got {num_levels}.")
        self.max_level = float(self.num_levels - 1)

    @property
    def support(self):
        return constraints.integer_interval(0, self.num_levels - 1)


@register_likelihood("categorical")
class CategoricalLikelihood(_Levels):
    """``x_d ~ Categorical(softmax(raw_d))`` over ``num_levels`` levels, with no order assumed.

    The most flexible mass function on levels, and the most expensive: the decoder needs
    ``num_levels`` outputs per feature (200,704 for 28x28 images with 256 levels).
    """

    def __init__(self, num_levels: int = 256):
        super().__init__(num_levels=num_levels)
        self._set_levels(num_levels)
        self.base_params = self.num_levels

    def _logits(self, raw):
        self.check_width(raw)
        # The same layout as split(): level j's logits are the j-th block of D outputs.
        return raw.unflatten(-1, (self.num_levels, -1)).transpose(-1, -2)  # (..., D, L)

    def distribution(self, raw):
        return LevelCategorical(logits=self._logits(raw), validate_args=False).to_event(1)


@register_likelihood("discretized_logistic")
class DiscretizedLogisticLikelihood(_Levels):
    """A logistic on ``[0, 1]``, or a mixture of ``num_components`` of them, binned into
    ``num_levels`` levels (Salimans et al. 2017); see
    :class:`~pyro_vae.likelihoods.distributions.DiscretizedLogistic`.

    The decoder predicts each component's location (through a sigmoid) and, with more than one
    component, its mixture logit. ``scale`` is ``"decoder"`` (the default), ``"feature"``,
    ``"global"`` or fixed, learned as ``min_scale + softplus(.)``.
    """

    def __init__(
        self,
        num_levels: int = 256,
        num_components: int = 1,
        scale: float | str = "decoder",
        min_scale: float = 1e-3,
        init_scale: float = 0.1,
    ):
        super().__init__(
            num_levels=num_levels,
            num_components=num_components,
            scale=scale,
            min_scale=min_scale,
            init_scale=init_scale,
        )
        self._set_levels(num_levels)
        self.num_components = positive_int(num_components, "num_components")
        self.base_params = self.num_components * (2 if self.num_components > 1 else 1)
        self.scale = self.positive("scale", scale, floor=min_scale, init=init_scale, copies=self.num_components)

    def _distribution(self, raw) -> DiscretizedLogistic:
        *parts, scale = self.split(raw)
        k = self.num_components
        loc = torch.sigmoid(torch.stack(parts[:k], dim=-1))
        logits = torch.stack(parts[k:], dim=-1) if k > 1 else None
        if k == 1 and scale.ndim:
            scale = scale.unsqueeze(-1)
        return DiscretizedLogistic(loc, scale.expand_as(loc), self.num_levels, logits)

    def distribution(self, raw):
        return self._distribution(raw).to_event(1)

    def mean(self, raw):
        return self._distribution(raw).mean


class LevelCategorical(dist.Categorical):
    """A categorical over the levels ``0..L-1`` whose ``mean`` is the mean level ``sum_k k p_k``
    (torch's categorical has none), so ``site["fn"].mean`` is the picture for every likelihood."""

    @property
    def mean(self):
        levels = torch.arange(self.probs.shape[-1], dtype=self.probs.dtype, device=self.probs.device)
        return self.probs @ levels

    @property
    def variance(self):
        levels = torch.arange(self.probs.shape[-1], dtype=self.probs.dtype, device=self.probs.device)
        return self.probs @ levels**2 - self.mean**2

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(LevelCategorical, _instance)
        return super().expand(batch_shape, _instance=new)

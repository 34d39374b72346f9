"""Observation models ``p(x|z)``: a registry of small objects that return distributions.

The likelihood is part of the *model*, evaluated exactly: the decoder maps ``z`` to raw
parameters and the likelihood turns them into a :mod:`pyro.distributions` object whose
``log_prob`` is the exact ``log p(x|z)``. Only the posterior ``p(z|x)`` is approximated.

=================================== ======= ===================== =============================
name                                measure support               positive parameters
=================================== ======= ===================== =============================
``bernoulli``                       mass    {0, 1}                --
``binomial`` (``total_count``)      mass    0..total_count        --
``poisson``                         mass    0, 1, 2, ...          --
``negative_binomial``               mass    0, 1, 2, ...          ``concentration``
``zero_inflated_negative_binomial`` mass    0, 1, 2, ...          ``concentration``
``categorical`` (``num_levels``)    mass    0..L-1                --
``discretized_logistic``            mass    0..L-1                ``scale``
``continuous_bernoulli``            density [0, 1]                --
``normal``                          density real                  ``scale``
``laplace``                         density real                  ``scale``
``student_t``                       density real                  ``scale``, ``df``
``beta``                            density (0, 1)                ``concentration``
=================================== ======= ===================== =============================

Every density becomes a mass function on levels ``0..L-1`` with ``num_levels=L`` (uniform
dequantisation), which makes it comparable with the mass functions on the same data. Positive
parameters are fixed numbers, ``"global"``, ``"feature"`` or ``"decoder"``
(:class:`~pyro_vae.likelihoods.base.Positive`).

Adding one is a few lines::

    @register_likelihood("gumbel")
    class GumbelLikelihood(DensityLikelihood):
        def __init__(self, scale="global", num_levels=None):
            super().__init__(num_levels=num_levels, scale=scale)
            self.scale = self.positive("scale", scale, floor=1e-3, init=0.1)

        def density(self, raw):
            loc, scale = self.split(raw)
            return dist.Gumbel(loc, scale.expand_as(loc)).to_event(1)
"""

from .base import (
    LIKELIHOODS,
    POSITIVE_MODES,
    DensityLikelihood,
    Likelihood,
    Positive,
    describe_support,
    get_likelihood,
    register_likelihood,
)
from .continuous import (
    BernoulliLikelihood,
    BetaLikelihood,
    ContinuousBernoulliLikelihood,
    LaplaceLikelihood,
    NormalLikelihood,
    StudentTLikelihood,
)
from .discrete import (
    BinomialLikelihood,
    CategoricalLikelihood,
    DiscretizedLogisticLikelihood,
    NegativeBinomialLikelihood,
    PoissonLikelihood,
    ZeroInflatedNegativeBinomialLikelihood,
)
from .distributions import Dequantized, DiscretizedLogistic

__all__ = [
    "LIKELIHOODS",
    "POSITIVE_MODES",
    "BernoulliLikelihood",
    "BetaLikelihood",
    "BinomialLikelihood",
    "CategoricalLikelihood",
    "ContinuousBernoulliLikelihood",
    "DensityLikelihood",
    "Dequantized",
    "DiscretizedLogistic",
    "DiscretizedLogisticLikelihood",
    "LaplaceLikelihood",
    "Likelihood",
    "NegativeBinomialLikelihood",
    "NormalLikelihood",
    "PoissonLikelihood",
    "Positive",
    "StudentTLikelihood",
    "ZeroInflatedNegativeBinomialLikelihood",
    "describe_support",
    "get_likelihood",
    "register_likelihood",
]

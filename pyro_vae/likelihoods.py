"""Observation models ``p(x|z)``: a registry of small objects that return distributions.

The likelihood is part of the *model*, evaluated exactly: the decoder maps ``z`` to raw
parameters and the likelihood turns them into a :mod:`pyro.distributions` object whose
``log_prob`` is the exact ``log p(x|z)``. Only the posterior ``p(z|x)`` is approximated.

Each likelihood declares

* ``support`` -- a :mod:`torch.distributions.constraints` constraint the data must satisfy;
* ``is_discrete`` -- ``True`` for a probability mass function, ``False`` for a density (the two
  are not comparable on the same data without dequantisation);
* ``params_per_feature`` -- how many raw decoder outputs each data feature needs.

Adding one is a few lines::

    @register_likelihood("laplace")
    class LaplaceLikelihood(Likelihood):
        support = constraints.real
        def distribution(self, raw):
            return dist.Laplace(raw, self.scale).to_event(1)
"""

from __future__ import annotations

import math
from typing import Any

import pyro.distributions as dist
import torch
from torch import nn

from ._registry import registrar
from torch.distributions import constraints
from torch.nn import functional as F

LIKELIHOODS: dict[str, type["Likelihood"]] = {}


register_likelihood = registrar(LIKELIHOODS, "likelihood")


def get_likelihood(spec: "str | Likelihood", **kwargs: Any) -> "Likelihood":
    """Return a likelihood from a registry name (with constructor ``kwargs``) or pass one through."""
    if isinstance(spec, Likelihood):
        if kwargs:
            raise ValueError("Keyword arguments apply only when the likelihood is given by name.")
        return spec
    if not isinstance(spec, str) or spec not in LIKELIHOODS:
        raise ValueError(
            f"Unknown likelihood {spec!r}; choose one of {sorted(LIKELIHOODS)} "
            "or pass a pyro_vae.Likelihood instance."
        )
    return LIKELIHOODS[spec](**kwargs)


class Likelihood(nn.Module):
    """Base class: maps raw decoder output of shape ``(..., D * params_per_feature)`` to a
    distribution with ``event_shape == (D,)``.

    Subclasses implement :meth:`distribution` and set the class attributes below. Learned
    parameters (a global scale, say) are ordinary ``nn.Parameter`` attributes: the model registers
    the likelihood with ``pyro.module`` so SVI trains them.
    """

    name: str = "custom"
    support: constraints.Constraint = constraints.real
    is_discrete: bool = False
    params_per_feature: int = 1

    def __init__(self, **config: Any):
        super().__init__()
        # JSON-serialisable constructor arguments, saved with the model.
        self.config = config

    def distribution(self, raw: torch.Tensor) -> dist.TorchDistribution:  # pragma: no cover
        raise NotImplementedError

    def forward(self, raw: torch.Tensor) -> dist.TorchDistribution:
        return self.distribution(raw)

    def mean(self, raw: torch.Tensor) -> torch.Tensor:
        """``E[x|z]`` of shape ``(..., D)``: the picture people want, rather than a noisy sample."""
        return self.distribution(raw).mean

    def validate(self, x: torch.Tensor, what: str = "data") -> None:
        """Raise ``ValueError`` unless every value of ``x`` lies in :attr:`support`."""
        ok = self.support.check(x)
        if not bool(ok.all()):
            bad = x[~ok]
            raise ValueError(
                f"{what} has {bad.numel()} value(s) outside the support of the {self.name!r} "
                f"likelihood ({_describe(self.support)}); for example {bad[0].item():g}. "
                + self.support_hint
            )

    support_hint: str = ""


def _describe(support: constraints.Constraint) -> str:
    if support is constraints.boolean:
        return "values 0 or 1"
    if isinstance(support, constraints.interval) or support is constraints.unit_interval:
        return f"values in [{support.lower_bound}, {support.upper_bound}]"
    return str(support)


@register_likelihood("bernoulli")
class BernoulliLikelihood(Likelihood):
    """``x_d ~ Bernoulli(sigmoid(raw_d))`` for binary data (a mass function)."""

    support = constraints.boolean
    is_discrete = True
    support_hint = (
        "Binarise the data first, e.g. pyro_vae.data.load(..., binarize='fixed'), or use the "
        "'continuous_bernoulli' likelihood for values in [0, 1]."
    )

    def distribution(self, raw):
        return dist.Bernoulli(logits=raw, validate_args=False).to_event(1)

    def mean(self, raw):
        return torch.sigmoid(raw)


@register_likelihood("continuous_bernoulli")
class ContinuousBernoulliLikelihood(Likelihood):
    """Continuous Bernoulli density on ``[0, 1]`` (Loaiza-Ganem & Cunningham, 2019), the
    normalised version of the Bernoulli cross-entropy that is often misused on grey levels."""

    support = constraints.unit_interval
    support_hint = "Scale the data to [0, 1] first."

    def distribution(self, raw):
        # Clamp keeps the normaliser's Taylor branch numerically safe for extreme logits.
        return dist.ContinuousBernoulli(logits=raw.clamp(-30.0, 30.0), validate_args=False).to_event(1)


@register_likelihood("normal")
class NormalLikelihood(Likelihood):
    """``x_d ~ Normal(raw_d, scale)``.

    ``scale`` is either a positive float (fixed) or ``"learned"``: one global scale trained with
    the networks, parameterised as ``min_scale + softplus(s)`` so it cannot collapse to zero.
    """

    support = constraints.real

    def __init__(self, scale: float | str = "learned", min_scale: float = 1e-3, init_scale: float = 0.1):
        super().__init__(scale=scale, min_scale=min_scale, init_scale=init_scale)
        self.min_scale = float(min_scale)
        if scale == "learned":
            if not init_scale > min_scale:
                raise ValueError(f"init_scale ({init_scale}) must exceed min_scale ({min_scale}).")
            # Inverse softplus, so the initial scale is init_scale.
            start = math.log(math.expm1(init_scale - min_scale))
            self.raw_scale = nn.Parameter(torch.tensor(start))
            self.fixed_scale = None
        elif isinstance(scale, (int, float)) and not isinstance(scale, bool) and scale > 0:
            self.fixed_scale = float(scale)
        else:
            raise ValueError(f"scale must be a positive number or 'learned', got {scale!r}.")

    @property
    def scale(self) -> torch.Tensor | float:
        if self.fixed_scale is not None:
            return self.fixed_scale
        return self.min_scale + F.softplus(self.raw_scale)

    def distribution(self, raw):
        scale = self.scale
        if isinstance(scale, torch.Tensor):
            scale = scale.expand_as(raw)
        else:
            scale = torch.full_like(raw, scale)
        return dist.Normal(raw, scale, validate_args=False).to_event(1)

    def mean(self, raw):
        return raw

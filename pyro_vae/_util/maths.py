"""Small numerical pieces used in several places, written once in their stable form."""

from __future__ import annotations

import math
from typing import overload

import torch

#: ``log(2 pi) / 2``, the constant of a standard normal's log-density per dimension.
HALF_LOG_TWO_PI = 0.5 * math.log(2 * math.pi)


@overload
def inverse_softplus(value: float) -> float: ...
@overload
def inverse_softplus(value: torch.Tensor) -> torch.Tensor: ...
def inverse_softplus(value):
    """``x`` with ``softplus(x) = value`` for ``value > 0``: ``value + log(-expm1(-value))``.

    This form is exact where ``log(expm1(value))`` overflows (``value`` above about 710 in float64)
    and loses no digits for small values.
    """
    if isinstance(value, torch.Tensor):
        return value + torch.log(-torch.expm1(-value))
    return value + math.log(-math.expm1(-value))


def log_mean_exp(values: torch.Tensor, dim: int) -> torch.Tensor:
    """``log((1/S) sum_s exp(values_s))`` along ``dim`` of size ``S``: the log of an average of weights
    given their logs (importance sampling's ``log p-hat``)."""
    return torch.logsumexp(values, dim=dim) - math.log(values.shape[dim])

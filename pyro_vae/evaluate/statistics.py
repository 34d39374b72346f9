"""Standard errors, in one place so every result states them the same way.

Two kinds of error appear in pyro_vae's results:

* **over data points** -- the spread of a per-point quantity across the ``N`` points evaluated,
  which says how much a total or mean would change on other data from the same distribution;
* **Monte Carlo** -- the spread of an average of ``n`` independent random draws, which says how
  much the same computation would change with another seed.

Both use the population variance of the values (``correction=0``) for totals over data points,
as ``arviz.loo`` does, and the sample variance (``correction=1``) for Monte Carlo means.
"""

from __future__ import annotations

import math

import torch


def sum_se(values: torch.Tensor) -> float:
    """Standard error over data points of ``sum_i v_i``: ``sqrt(N var_i v_i)``; NaN for one point."""
    n = values.shape[0]
    return float(math.sqrt(n * values.double().var(correction=0))) if n > 1 else math.nan


def mean_se(values: torch.Tensor) -> float:
    """Standard error over data points of ``mean_i v_i``: :func:`sum_se` divided by ``N``."""
    return sum_se(values) / values.shape[0]


def monte_carlo_se(draws: torch.Tensor) -> float:
    """Monte Carlo standard error of the mean of independent draws: ``std / sqrt(n)``; NaN for one draw."""
    draws = draws.reshape(-1).double()
    return float(draws.std(correction=1) / math.sqrt(draws.numel())) if draws.numel() > 1 else math.nan


def proportion_se(share: float, n: int) -> float:
    """Binomial standard error of a share estimated from ``n`` independent draws."""
    return math.sqrt(share * (1 - share) / n)

"""Posterior-predictive checks: do data drawn from the fitted model look like the data?

A log-likelihood says which model fits better, not what a model gets wrong. A check compares a
statistic ``T`` of the data -- each feature's share of zeros, mean or variance, the distribution of
the rows' totals, how strongly features correlate -- with the same statistic of ``S`` replicated
data sets ``x^rep_s``, each drawn for every point from the amortized posterior predictive
``z ~ q(z|x_i)``, ``x^rep_i ~ p(x|z)`` (:func:`pyro_vae.posterior_predictive`). Its
posterior-predictive p-value (Gelman, Meng & Stern 1996)

.. math::

    p_T = \\frac{1}{S} \\sum_s \\Big( \\mathbf{1}[T(x^{rep}_s) > T(x)]
          + \\tfrac{1}{2} \\mathbf{1}[T(x^{rep}_s) = T(x)] \\Big)

is near 0 or 1 when the model cannot reproduce ``T`` (ties count half: counts give ties). Each
entry of a per-feature statistic has its own p-value; a check reports the share of entries outside
``[(1 - level) / 2, (1 + level) / 2]``. The coverage of the central ``level`` predictive interval
of every observed value (from the ``S`` replicates of its entry) says whether the predictive
spread is right: near ``level`` for a calibrated model, at least ``level`` for discrete data.

Built-in statistics (:data:`STATISTICS`) take a data set ``(N, D)`` and return ``()`` or ``(K,)``;
a user statistic is any function of that form. ArviZ users get the same replicated draws from
:func:`pyro_vae.to_inference_data` (its ``posterior_predictive`` group) for ``arviz.plot_ppc``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from .._util.checks import positive_int
from .._util.isolation import leaves_pyro_state_alone
from .._util.memory import MAX_MEMORY_MB
from ..latent.predictive import observed_data, posterior_predictive_of
from ..program.binding import bind

Statistic = Callable[[torch.Tensor], torch.Tensor]


def zeros(x: torch.Tensor) -> torch.Tensor:
    """Each feature's share of zeros, ``(D,)``."""
    return (x == 0).double().mean(0)


def mean(x: torch.Tensor) -> torch.Tensor:
    """Each feature's mean, ``(D,)``."""
    return x.double().mean(0)


def variance(x: torch.Tensor) -> torch.Tensor:
    """Each feature's variance, ``(D,)``."""
    return x.double().var(0, correction=0)


def row_totals(x: torch.Tensor) -> torch.Tensor:
    """The 10%, 50% and 90% quantiles of the rows' totals (library sizes of counts), ``(3,)``."""
    return torch.quantile(x.double().sum(-1), torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64))


def correlation(x: torch.Tensor) -> torch.Tensor:
    """The mean absolute correlation between two different features, ``()``; constant features count 0."""
    values = x.double()
    centred = values - values.mean(0)
    spread = centred.pow(2).sum(0).sqrt()
    scaled = centred / torch.where(spread > 0, spread, torch.ones_like(spread))
    corr = scaled.T @ scaled
    d = corr.shape[0]
    if d < 2:
        return torch.zeros((), dtype=torch.float64)
    return (corr.abs().sum() - corr.diagonal().abs().sum()) / (d * (d - 1))


#: The built-in statistics by name.
STATISTICS: dict[str, Statistic] = {
    "zeros": zeros,
    "mean": mean,
    "variance": variance,
    "row_totals": row_totals,
    "correlation": correlation,
}


def default_statistics(x: torch.Tensor) -> list[str]:
    """Counts (whole numbers >= 0, not only 0 and 1) get the share of zeros and the row totals as
    well; every data set gets each feature's mean and variance and the correlation between features."""
    whole = bool((x == x.round()).all()) and bool((x >= 0).all())
    counts = whole and bool((x > 1).any())
    return (["zeros", "row_totals"] if counts else []) + ["mean", "variance", "correlation"]


@dataclass(frozen=True)
class StatisticCheck:
    """One statistic, observed and replicated.

    Attributes:
        observed: ``T(x)``, shape ``(K,)`` (``K = 1`` for a scalar statistic).
        replicated: ``T(x^rep_s)`` of every replicate, ``(S, K)``.
        p_values: the posterior-predictive p-value of each entry, ``(K,)``.
        level: the central probability outside which a p-value counts as extreme.
    """

    observed: torch.Tensor
    replicated: torch.Tensor
    p_values: torch.Tensor
    level: float

    @property
    def share_extreme(self) -> float:
        """Share of entries whose p-value lies outside ``[(1 - level) / 2, (1 + level) / 2]``, among
        the entries that have one (NaN where none has: the statistic gave NaN)."""
        known = self.p_values[~torch.isnan(self.p_values)]
        if not known.numel():
            return math.nan
        tail = (1 - self.level) / 2
        return float(((known < tail) | (known > 1 - tail)).double().mean())

    @property
    def undefined(self) -> int:
        """Entries without a p-value: the statistic was NaN on the data or on a replicate."""
        return int(torch.isnan(self.p_values).sum())

    def __repr__(self) -> str:
        return (
            f"StatisticCheck({self.observed.numel()} entries, {100 * self.share_extreme:.1f}% with extreme p-values, "
            f"{self.undefined} undefined (NaN))"
        )

    def summary(self) -> dict[str, Any]:
        return {
            "entries": int(self.observed.numel()),
            "share_extreme": self.share_extreme,
            "undefined_entries": self.undefined,
            "median_p_value": float(self.p_values.nanmedian()) if self.undefined < self.p_values.numel() else math.nan,
            "observed_mean": float(self.observed.mean()),
            "replicated_mean": float(self.replicated.mean()),
        }


@dataclass(frozen=True)
class PredictiveCheck:
    """The result of :func:`posterior_predictive_check`.

    Attributes:
        statistics: name -> :class:`StatisticCheck`.
        coverage: share of observed values inside their central ``level`` predictive interval.
            A statistic that gives NaN on the data or on a replicate has NaN p-values for those
            entries (:attr:`StatisticCheck.undefined`); shares of extreme p-values count the others.
        level: the interval's central probability (and the p-values' threshold).
        num_samples: replicated data sets ``S``.
        site: the observed site checked.
    """

    statistics: dict[str, StatisticCheck] = field(default_factory=dict)
    coverage: float = math.nan
    level: float = 0.95
    num_samples: int = 0
    site: str = "x"

    def __repr__(self) -> str:
        shares = ", ".join(f"{name} {100 * check.share_extreme:.0f}%" for name, check in self.statistics.items())
        return (
            f"PredictiveCheck({self.site!r}, {self.num_samples} replicates: coverage of the {100 * self.level:.0f}% "
            f"intervals {100 * self.coverage:.1f}%; entries with extreme p-values: {shares})"
        )

    def summary(self) -> dict[str, Any]:
        """A JSON-ready dict: each statistic's share of extreme p-values, and the coverage."""
        return {
            "num_samples": self.num_samples,
            "level": self.level,
            "coverage": self.coverage,
            "site": self.site,
            "statistics": {name: check.summary() for name, check in self.statistics.items()},
        }

    def table(self):
        """A :class:`pandas.DataFrame`, one row per statistic."""
        import pandas as pd

        return pd.DataFrame({name: check.summary() for name, check in self.statistics.items()}).T


@leaves_pyro_state_alone
def posterior_predictive_check(
    model: Any,
    x: Any,
    *,
    guide: Callable | None = None,
    covariates: Mapping[str, Any] | None = None,
    plate: str | None = None,
    statistics: Sequence[str | Statistic] | Mapping[str, Statistic] | None = None,
    num_samples: int = 200,
    level: float = 0.95,
    seed: int = 0,
    max_memory_mb: float = MAX_MEMORY_MB,
    site: str | None = None,
) -> PredictiveCheck:
    """Posterior-predictive checks of a program on data ``x`` (module docstring).

    Args:
        model, guide, covariates, plate: the program and its data-aligned arguments, as for
            :func:`pyro_vae.posterior_predictive`.
        x: the data ``(N, D)`` the replicates are drawn for (training or held-out points).
        statistics: names from :data:`STATISTICS`, functions ``T(x) -> () or (K,)`` (named by
            ``__name__``), or a mapping name -> function; by default :func:`default_statistics`.
        num_samples: replicated data sets ``S``.
        level: central probability of the predictive intervals and of the p-values' range.
        seed: seeds the draws.
        max_memory_mb: bound on the replicates held at once (they are drawn in chunks).
        site: the observed site checked; by default the site the tools call ``x``
            (:attr:`~pyro_vae.program.sites.Sites.x_site`). Its replicates are compared with that
            site's own data (a CVAE's ``y``, not the input ``x`` it is conditioned on).

    Returns: a :class:`PredictiveCheck`.
    """
    draws = positive_int(num_samples, "num_samples")
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0 < level < 1:
        raise ValueError(f"level must be a probability strictly between 0 and 1, got {level!r}.")
    bound = bind(model, x, guide=guide, covariates=covariates, plate=plate, draw_globals=True)
    data, sites = bound.data, bound.sites
    name = _checked_site(sites, site)
    observed = observed_data(bound.program, data, name).reshape(len(data), -1)
    chosen = _statistics(statistics, observed)
    values = {key: _as_row(fn(observed.clone()), key) for key, fn in chosen.items()}  # a copy: T may write
    replicated: dict[str, list[torch.Tensor]] = {key: [] for key in chosen}
    below = torch.zeros(observed.shape, dtype=torch.int32)  # replicates < x, entry by entry
    at_or_below = torch.zeros(observed.shape, dtype=torch.int32)
    per_chunk = max(1, min(draws, int(max_memory_mb * 2**20 / 4 // max(1, observed.numel()))))
    for chunk, start in enumerate(range(0, draws, per_chunk)):
        count = min(per_chunk, draws - start)
        samples = posterior_predictive_of(bound, count, seed=seed + chunk, max_values=2**62)
        for rep in samples.sites[name].reshape(count, len(data), -1).to(observed.dtype):
            for key, fn in chosen.items():
                replicated[key].append(_as_row(fn(rep.clone()), key))
            below += (rep < observed).int()
            at_or_below += (rep <= observed).int()
        del samples
    checks = {}
    for key in chosen:
        reps = torch.stack(replicated[key]).cpu()  # (S, K)
        obs = values[key].cpu()
        p = ((reps > obs).double() + 0.5 * (reps == obs).double()).mean(0)
        # A NaN, observed or in any replicate, leaves the entry without a p-value rather than read as extreme.
        p = torch.where(torch.isnan(obs) | torch.isnan(reps).any(0), torch.full_like(p, math.nan), p)
        checks[key] = StatisticCheck(obs, reps, p, float(level))
    # x lies in [rep_(lo), rep_(hi)] (order statistics, 1-based) iff #{rep <= x} >= lo and #{rep < x} < hi.
    lo = max(1, math.ceil(draws * (1 - level) / 2))
    hi = min(draws, math.ceil(draws * (1 + level) / 2))
    covered = (at_or_below >= lo) & (below < hi)
    return PredictiveCheck(checks, float(covered.double().mean()), float(level), draws, site=name)


def _checked_site(sites, site: str | None) -> str:
    """The observed site to check: ``site``, or the site the tools call ``x`` when it is the only one
    generated (a sequence model with a site per step names the one it wants)."""
    if site is not None:
        if site not in sites.observed:
            raise ValueError(
                f"{site!r} is not an observed site of this program; its observed sites are {list(sites.observed)}."
            )
        return site
    if len(sites.generated) != 1:
        raise ValueError(
            f"posterior_predictive_check compares one observed site with its replicates; this program's data "
            f"fill {list(sites.generated)}: pass site= to choose one."
        )
    return sites.x_site


def _statistics(spec, x: torch.Tensor) -> dict[str, Statistic]:
    if spec is None:
        spec = default_statistics(x)
    if isinstance(spec, Mapping):
        items = list(spec.items())
    elif isinstance(spec, (str, bytes)) or not isinstance(spec, Sequence):
        raise TypeError("statistics must be a list of names or functions, or a mapping name -> function.")
    else:
        items = [(s, STATISTICS.get(s)) if isinstance(s, str) else (getattr(s, "__name__", repr(s)), s) for s in spec]
    names = [str(name) for name, _ in items]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise ValueError(
            f"Two statistics share the name(s) {twice} (lambdas are all named '<lambda>'); pass a mapping "
            "name -> function, e.g. statistics={'max': lambda x: x.max(0).values, 'min': lambda x: x.min(0).values}."
        )
    chosen = {}
    for name, fn in items:
        if fn is None:
            raise ValueError(f"Unknown statistic {name!r}; choose from {sorted(STATISTICS)} or pass a function.")
        if not callable(fn):
            raise TypeError(f"The statistic {name!r} must be a function of the data (N, D).")
        chosen[str(name)] = fn
    if not chosen:
        raise ValueError("Give at least one statistic.")
    return chosen


def _as_row(value: Any, name: str) -> torch.Tensor:
    if torch.is_complex(torch.as_tensor(value)):
        raise ValueError(f"The statistic {name!r} returned complex numbers; a statistic must be real.")
    tensor = torch.as_tensor(value, dtype=torch.float64)
    if tensor.ndim > 1:
        raise ValueError(f"The statistic {name!r} must return a number or a vector, got shape {tuple(tensor.shape)}.")
    return tensor.reshape(-1)

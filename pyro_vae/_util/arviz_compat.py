"""The one place pyro_vae meets ArviZ, for both supported lines of it.

ArviZ 0.x (``arviz`` 0.17 to 0.23, the line on Python 3.10 and 3.11) is one package built around
``InferenceData``. ArviZ 1.x (``arviz`` >= 1.1, < 2, Python >= 3.12) is a meta-package over
``arviz-base`` (data, ``xarray.DataTree``), ``arviz-stats`` (PSIS, ``loo``, ``compare``) and
``arviz-plots``. What moved between the two, and what pyro_vae uses of each:

==========================  ==================================  ==========================================
use                         ArviZ 0.x                           ArviZ 1.x
==========================  ==================================  ==========================================
Pareto ``k`` of weights     ``az.psislw(log_w)``                ``array_stats.psislw(-log_w)`` (it takes
                                                                log-likelihoods and negates them)
ELPD container              ``ELPDData(data=[...], index=...)`` ``ELPDData(elpd=..., se=..., ...)``
``compare``                 ``elpd_loo``; ``elpd_diff >= 0``    ``elpd``; ``elpd_diff <= 0``; rounds
                            (best minus model); ``warning``     by default; ``diag_elpd`` for warnings
export container            ``InferenceData``                   ``xarray.DataTree`` (same groups, names)
one group from arrays       ``dict_to_dataset(library=,         ``dict_to_dataset(inference_library=,
                            default_dims=)``                    sample_dims=)``
==========================  ==================================  ==========================================

Everything above goes through the functions of this module, which hand back one layout whatever
ArviZ is installed; nothing else in pyro_vae imports ArviZ. An ArviZ outside the supported ranges
is refused by :func:`arviz` (called before any work by every ArviZ-facing tool) with a message
naming the versions that work.
"""

from __future__ import annotations

import functools
import importlib.metadata
import math
import re
import sys
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

__all__ = [
    "SUPPORTED_ARVIZ",
    "ElpdEstimate",
    "arviz",
    "arviz_line",
    "compare_elpd",
    "pareto_k",
    "write_dataset",
    "write_inference_data",
]

#: The ArviZ versions pyro_vae works with, by Python version (what ``setup.cfg`` installs).
SUPPORTED_ARVIZ = "arviz >= 0.17, < 0.24 on Python 3.10 and 3.11; arviz >= 1.1, < 2 on Python 3.12 and newer"

#: Columns of :func:`compare_elpd`'s table, in order.
COMPARE_COLUMNS = ("rank", "elpd", "se", "elpd_diff", "dse", "weight")


def _installed_version() -> str | None:
    try:
        return importlib.metadata.version("arviz")
    except importlib.metadata.PackageNotFoundError:
        return None


def _release(version: str) -> tuple[int, int]:
    match = re.match(r"(\d+)\.(\d+)", version)
    if match is None:
        raise ImportError(f"Cannot read the installed ArviZ version {version!r}. pyro_vae supports {SUPPORTED_ARVIZ}.")
    return int(match.group(1)), int(match.group(2))


def arviz_line() -> int:
    """``0`` for ArviZ 0.17-0.23, ``1`` for ArviZ 1.1-1.x; any other installed version (or none) is an
    :class:`ImportError` that names the supported versions and how to get one."""
    version = _installed_version()
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    if version is None:
        raise ImportError(
            f"ArviZ is not installed; pyro_vae's ArviZ-facing tools need it. Supported: {SUPPORTED_ARVIZ}. "
            "`pip install pyro_vae` installs the right one for this Python."
        )
    major, minor = _release(version)
    if major == 0 and 17 <= minor <= 23:
        return 0
    if major == 1 and minor >= 1:
        return 1
    raise ImportError(
        f"ArviZ {version} is installed (Python {python}), which pyro_vae does not support. Supported: "
        f"{SUPPORTED_ARVIZ}. Reinstall with `pip install --force-reinstall pyro_vae`, which picks the right "
        "line for this Python, or install one of these versions by hand."
    )


@functools.cache
def arviz() -> ModuleType:
    """The ``arviz`` module, after checking its version (:func:`arviz_line`); without ArviZ 0.x's
    import-time notice about its coming refactor."""
    arviz_line()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        import arviz as az
    return az


def load_pareto() -> None:
    """Import what :func:`pareto_k` fits with (ArviZ 0.x, or arviz-stats for 1.x) now, after the
    version check: a tool that fits many chunks loads it before it measures its own memory."""
    if arviz_line() == 0:
        arviz()
    else:
        import arviz_stats.base  # noqa: F401


def pareto_k(log_weights: np.ndarray) -> np.ndarray:
    """Pareto shape ``k`` of the PSIS fit to each row of ``(N, S)`` log importance weights, shape ``(N,)``
    (Vehtari et al. 2024, JMLR 25:72), with relative efficiency 1 (independent draws)."""
    values = np.array(log_weights, dtype=np.float64, copy=True)
    if arviz_line() == 0:
        _, k = arviz().psislw(values, reff=1.0)
        return np.asarray(k, dtype=np.float64).reshape(values.shape[0])
    from arviz_stats.base import array_stats

    # Both lines fit the largest ceil(min(S/5, 3 sqrt(S))) weights; ArviZ 0.x reports k = inf when
    # that is 4 or fewer (S < 25), ArviZ 1.x raises. The result follows 0.x: no fit, no trust.
    if math.ceil(min(0.2 * values.shape[1], 3 * math.sqrt(values.shape[1]))) < 5:
        return np.full(values.shape[0], np.inf)

    def fit(rows: np.ndarray) -> np.ndarray:
        # ArviZ 1.x's psislw takes log-likelihood values and smooths their negation.
        return np.asarray(array_stats.psislw(-rows, r_eff=1.0, axis=-1)[1], dtype=np.float64).reshape(len(rows))

    try:
        k = fit(values)
    except ValueError:
        # ArviZ 1.x refuses a tail of equal weights (0.x fits it); row by row, such a row is bounded
        # at the top, the best case, reported as k = -inf like a row of equal weights.
        out = np.empty(values.shape[0])
        for i, row in enumerate(values):
            try:
                out[i] = fit(row[None])[0]
            except ValueError:
                out[i] = -np.inf
        k = out
    # ArviZ 1.x's tail has a fixed size, so weights tied with its threshold (weights taking few
    # distinct values, as from a sampled discrete latent) make the fit NaN where 0.x, which takes
    # only weights above the threshold, fits fewer. A failed fit gives no assurance: k = inf.
    return np.where(np.isnan(k), np.inf, k)


@dataclass(frozen=True)
class ElpdEstimate:
    """One model's held-out ELPD for :func:`compare_elpd`: the total, its standard error, the per-point
    values ``(N,)`` (any per-point shift common to all models is allowed), the particles behind them,
    and whether the estimate carries a warning."""

    total: float
    se: float
    pointwise: np.ndarray
    num_particles: int
    warning: bool


def compare_elpd(estimates: Mapping[str, ElpdEstimate], *, method: str) -> Any:
    """Rank models with ArviZ's ``compare``; a :class:`pandas.DataFrame` best first, with the columns
    :data:`COMPARE_COLUMNS` whatever ArviZ line is installed:

    * ``rank`` (0 is best), ``elpd`` and ``se`` (ArviZ's, from ``se`` of each estimate, or the
      bootstrap's under ``method="BB-pseudo-BMA"``),
    * ``elpd_diff``: the best model's ``elpd`` minus this one's (``>= 0``; ArviZ 1.x reports the
      negation) and ``dse``, its paired standard error,
    * ``weight``: the model weight of ``method``, unrounded.
    """
    import pandas as pd
    import xarray as xr

    az = arviz()
    if arviz_line() == 0:
        elpds = {
            name: az.ELPDData(
                data=[
                    e.total,
                    e.se,
                    np.nan,
                    e.num_particles,
                    len(e.pointwise),
                    e.warning,
                    xr.DataArray(e.pointwise, dims=["obs"], name="loo_i"),
                    "log",
                ],
                index=["elpd_loo", "se", "p_loo", "n_samples", "n_data_points", "warning", "loo_i", "scale"],
            )  # fmt: skip
            for name, e in estimates.items()
        }
        with warnings.catch_warnings():
            # ArviZ 0.x sorts with pandas' deprecated inplace=True; nothing for our users to act on.
            warnings.filterwarnings("ignore", message=".*inplace keyword.*")
            ranked = az.compare(elpds, ic="loo", method=method, scale="log")
        elpd, diff_sign = ranked["elpd_loo"], 1.0
    else:
        from arviz_stats.utils import ELPDData

        elpds = {
            name: ELPDData(
                elpd=float(e.total),
                se=float(e.se),
                p=np.nan,
                n_samples=int(e.num_particles),
                n_data_points=len(e.pointwise),
                scale="log",
                warning=bool(e.warning),
                good_k=0.7,
                elpd_i=xr.DataArray(e.pointwise, dims=["obs"], name="elpd_i"),
            )  # fmt: skip
            for name, e in estimates.items()
        }
        ranked = az.compare(elpds, method=method, round_to="none")
        elpd, diff_sign = ranked["elpd"], -1.0
    table = pd.DataFrame(index=ranked.index)
    table["rank"] = ranked["rank"].astype(int)
    table["elpd"] = elpd.astype(float)
    table["se"] = ranked["se"].astype(float)
    table["elpd_diff"] = diff_sign * ranked["elpd_diff"].astype(float) + 0.0  # + 0.0: no -0.0 for the best
    table["dse"] = ranked["dse"].astype(float)
    table["weight"] = ranked["weight"].astype(float)
    return table


def write_dataset(
    values: dict[str, Any], *, coords: dict[str, Any], dims: dict[str, list[str]], attrs: dict[str, str],
    sample_dims: Sequence[str],
) -> Any:  # fmt: skip
    """One export group (an :class:`xarray.Dataset`) from NumPy arrays whose leading axes are
    ``sample_dims`` (``("chain", "draw")``, ``("sample",)``, or ``()`` for data)."""
    import pyro

    if arviz_line() == 0:
        # ArviZ 0.x finds leading dimensions other than (chain, draw) only when dims and coords name them.
        named = {k: [*sample_dims, *v] for k, v in dims.items()}
        first = next(iter(values.values()), None)
        if first is not None:
            coords = {**{d: np.arange(n) for d, n in zip(sample_dims, np.shape(first))}, **coords}
        return arviz().dict_to_dataset(
            values, attrs=attrs, library=pyro, coords=coords, dims=named, default_dims=list(sample_dims)
        )
    from arviz_base import dict_to_dataset

    return dict_to_dataset(
        values, attrs=attrs, inference_library=pyro, coords=coords, dims=dims, sample_dims=list(sample_dims)
    )


def write_inference_data(groups: dict[str, Any]) -> Any:
    """ArviZ's container of the groups: :class:`arviz.InferenceData` on ArviZ 0.x, an
    :class:`xarray.DataTree` with one child per group on 1.x. Refuses to hand back one that silently
    lost a group."""
    if arviz_line() == 0:
        data = arviz().InferenceData(**groups)
        kept = set(data.groups())
    else:
        import xarray as xr

        data = xr.DataTree.from_dict(dict(groups))
        kept = set(data.children)
    missing = sorted(set(groups) - kept)
    if missing:
        raise RuntimeError(f"ArviZ dropped the group(s) {missing} of this export; please report this as a bug.")
    return data

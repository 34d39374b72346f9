"""Rank models by held-out ``log p(x)``, in the layout of ``arviz.compare``.

For models ``m`` evaluated on the same ``N`` held-out points, the score is the expected log
predictive density on new data, estimated by

.. math::

    \\widehat{\\mathrm{elpd}}_m = \\sum_{i=1}^N \\widehat{\\log p_m}(x_i), \\qquad
    \\mathrm{se}_m = \\sqrt{N \\operatorname{var}_i \\widehat{\\log p_m}(x_i)},

and a difference to the best model ``b`` gets its standard error from the *paired* per-point
differences, ``dse = sqrt(N var_i (log p_b(x_i) - log p_m(x_i)))`` (Vehtari, Gelman & Gabry 2017,
section 5.2), which is much smaller than ``sqrt(se_b^2 + se_m^2)`` when both models find the same
points hard. The ranking, differences and stacking weights come from ``arviz.compare`` itself,
fed with the per-point importance-weighted estimates in place of leave-one-out values: on held-out
data no leave-one-out correction is needed.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from .._util.arviz_compat import ElpdEstimate, arviz_line, compare_elpd
from .._util.isolation import leaves_pyro_state_alone
from .._util.memory import MAX_MEMORY_MB
from .._util.user_warnings import warn_user
from ..program.protocol import Data, Program, as_program
from .baselines import closed_form_baselines, losing_to
from .estimate import describe_observed, log_likelihood
from .result import LogLikelihood, describe_slack

#: Columns of the table returned by :func:`compare`.
COLUMNS = (
    "rank",
    "elpd",
    "se",
    "elpd_diff",
    "dse",
    "weight",
    "nll",
    "bits_per_dim",
    "mc_se",
    "share_k_above_0.7",
    "warning",
    "estimator",
    "slack",
    "unresolved",
)

#: What to do when a difference is within the estimators' slack.
SLACK_ADVICE = (
    "Re-estimate with annealed importance sampling (log_likelihood(..., method='ais'), then pass the results to "
    "compare), with more particles, or with a richer guide (guide='iaf'); for count models also check that "
    "dispersion parameters are free per feature (likelihood_kwargs={'concentration': 'feature'})."
)


@leaves_pyro_state_alone
def compare(
    models: Mapping[str, Any],
    x: Any = None,
    *,
    covariates: Mapping[str, Any] | None = None,
    mask: Any = None,
    num_particles: int | None = None,
    max_memory_mb: float = MAX_MEMORY_MB,
    seed: int = 0,
    weighting: str = "stacking",
    baselines_from: Any = None,
    baseline_latent_dim: int | None = None,
    **program_kwargs: Any,
) -> pd.DataFrame:
    """Rank models by summed held-out ``log p(x)``, best first.

    Args:
        models: model name -> a trained :class:`~pyro_vae.VAE`, a ``(model, guide)`` pair of Pyro
            programs, a :class:`~pyro_vae.program.Program`, or a
            :class:`~pyro_vae.evaluate.LogLikelihood` already computed on the same data.
        x: the held-out data (points along the first dimension); needed when any entry is a model.
        covariates: data-aligned keyword arguments of the programs (the same for every model).
        mask, num_particles, max_memory_mb, seed, program_kwargs: passed to
            :func:`~pyro_vae.log_likelihood` (``method=`` the estimator, ``global_values=``,
            ``plate=``); each model gets the same seed and the same mask.
        weighting: how ``arviz.compare`` weighs the models (its ``method``): ``"stacking"``,
            ``"BB-pseudo-BMA"`` or ``"pseudo-BMA"``.
        baselines_from: training data of real-valued models (densities): adds the closed-form
            baselines of :mod:`pyro_vae.evaluate.baselines` fitted on them -- a diagonal Gaussian and PPCA with
            ``baseline_latent_dim`` components (default: the first model's latent size) -- as rows,
            and warns (``RuntimeWarning``, and ``table.attrs["warnings"]``) for every model that is
            significantly worse than one of them.

    Returns: a :class:`pandas.DataFrame` indexed by model name with columns

    * ``rank`` (0 is best), ``elpd`` = ``sum_i log p(x_i)`` and its standard error ``se``;
    * ``elpd_diff``, the best model's ``elpd`` minus this one's, and ``dse``, its paired standard error;
    * ``weight``, the model weight from ``arviz.compare`` (stacking by default);
    * ``nll``, the negative log-likelihood per point (``-elpd / N``), and ``bits_per_dim``,
      ``nll / (D ln 2)`` (``NaN`` when ``D`` is unknown);
    * ``mc_se``, the Monte Carlo error of ``elpd`` from the finite number of particles;
    * ``share_k_above_0.7`` and ``warning``: the share of points whose importance weights have
      Pareto ``k > 0.7`` (an unreliable estimate), and whether any point does;
    * ``estimator``: how the row's ``log p(x)`` was estimated (importance sampling or AIS);
    * ``slack``: the estimator's possible shortfall of ``elpd`` in nats
      (:attr:`~pyro_vae.evaluate.LogLikelihood.slack`): both estimators are lower bounds, exact
      only when their weights are of equal size;
    * ``unresolved``: the row's own slack (and the Monte Carlo noise of both rows) could lift it
      above the best model, so the ranking may be an artefact of its estimator; the best model's
      slack cannot overturn it (both estimates are lower bounds). Such rows are also reported with
      a ``RuntimeWarning`` that says what to do, and listed in ``table.attrs["unresolved"]``.

    ``table.attrs`` records ``num_points``, ``num_particles`` and, per model, the estimator and any
    global latents it was conditioned on.

    Raises:
        ValueError: when fewer than two models are given (one with ``baselines_from``), when the data sets differ in size, or
        when a model whose likelihood is a probability mass function is ranked against one whose
        likelihood is a density: their ``log p(x)`` are in different units (log-probabilities
        against log-densities) and their difference says nothing about which model is better.
        A density with ``num_levels`` (uniform dequantisation) is a mass function on the levels
        and compares with the others; see ``docs/likelihoods.md``. Results over different
        numbers of values per point are refused too.
    """
    if not isinstance(models, Mapping) or len(models) < (1 if baselines_from is not None else 2):
        raise ValueError(
            "compare needs a mapping of at least two model names to models (one is enough with baselines_from=, "
            "which adds the closed-form baselines to rank against)."
        )
    arviz_line()  # the ranking is ArviZ's: an unsupported version is refused before any evaluation
    entries = {name: _entry(name, model, program_kwargs.get("plate")) for name, model in models.items()}
    if any(isinstance(e, Program) for e in entries.values()) and x is None:
        raise ValueError("Pass the held-out data x: at least one model has not been evaluated yet.")
    _refuse_mixed_units({name: _units(entry, x, covariates) for name, entry in entries.items()})
    results = {
        name: entry
        if isinstance(entry, LogLikelihood)
        else log_likelihood(
            entry,
            x,
            covariates=covariates,
            mask=mask,
            num_particles=num_particles,
            max_memory_mb=max_memory_mb,
            seed=seed,
            **program_kwargs,
        )
        for name, entry in entries.items()
    }
    sizes = {name: r.num_points for name, r in results.items()}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"Every model must be evaluated on the same data points; got sizes {sizes}.")
    notes = {}
    if baselines_from is not None and mask is not None:
        raise ValueError("The closed-form baselines score complete rows; compare masked data without baselines_from=.")
    if baselines_from is not None:
        found = _baselines(results, entries, baselines_from, x, covariates, baseline_latent_dim)
        notes = {name: losing_to(r, found) for name, r in results.items()}
        notes = {name: text for name, text in notes.items() if text}
        for name, texts in notes.items():
            for text in texts:
                warn_user(f"{name}: {text}", RuntimeWarning)
        results = {**results, **found}
    table = _table(results, weighting)
    table.attrs["warnings"] = notes
    _flag_slack(table)
    return table


def _flag_slack(table: pd.DataFrame) -> None:
    """Mark rows that their own estimator's slack could lift above the best model.

    Both estimates are lower bounds, so the best model's true ``elpd`` is at least its estimate
    (up to Monte Carlo noise): its own shortfall can only widen the true gap. A ranking is
    overturned only if the lower-ranked row's true value exceeds the best's, which needs its
    shortfall to exceed the difference: ``elpd_diff < slack + 2 sqrt(mc_se_best^2 + mc_se^2)``
    (docs/comparison.md).
    """
    best = table.index[table["rank"] == 0][0]
    slack = table["slack"]
    noise = 2 * np.sqrt(table["mc_se"] ** 2 + table.loc[best, "mc_se"] ** 2)
    unresolved = (table["elpd_diff"] < slack + noise) & (table.index != best)
    table["unresolved"] = unresolved.astype(bool)
    table.attrs["unresolved"] = list(table.index[unresolved])

    def share(name) -> str:
        value = table.loc[name, "share_k_above_0.7"]
        return "k unknown" if np.isnan(value) else f"Pareto k > 0.7 for {100 * value:.0f}% of points"

    for name in table.attrs["unresolved"]:
        row = table.loc[name]
        warn_user(
            f"{best} ranks above {name} by {row['elpd_diff']:.1f} nats (dse {row['dse']:.1f}), but {name}'s estimate "
            f"may fall short of the truth by up to {describe_slack(row['slack'])}, {share(name)}, enough to overturn "
            f"it: the ranking is not resolved. {SLACK_ADVICE}",
            RuntimeWarning,
        )


def _baselines(results, entries, train, x, covariates, latent_dim) -> dict[str, LogLikelihood]:
    if any(r.is_discrete for r in results.values()):
        raise ValueError(
            "The closed-form baselines are densities of real-valued data; they do not compare with "
            "mass functions (pass baselines_from only for density likelihoods)."
        )
    if x is None:
        raise ValueError("Baselines need the held-out data x they are evaluated on.")
    if latent_dim is None:
        program = next((e for e in entries.values() if isinstance(e, Program)), None)
        if program is None:
            raise ValueError(
                "Pass baseline_latent_dim: no model here says how many latent dimensions PPCA should have."
            )
        sites = program.sites(_one_row(program, x, covariates))
        latent_dim = int(math.prod(sites.event_shapes[sites.local[0]]))
    return closed_form_baselines(train, x, latent_dim)


def _entry(name: str, model: Any, plate: str | None) -> Program | LogLikelihood:
    if isinstance(model, LogLikelihood):
        return model
    if isinstance(model, tuple) and len(model) == 2 and all(callable(m) for m in model):
        return as_program(*model, plate=plate)
    if isinstance(model, Program) or hasattr(model, "as_program"):
        return as_program(model, plate=plate)
    raise TypeError(
        f"Model {name!r} is a {type(model).__name__}; pass a VAE or a LogLikelihood, a (model, guide) pair "
        "or a Program."
    )


def _one_row(program: Program, x: Any, covariates) -> Data:
    """A row to read a program's sites from before any evaluation. A program that can make its own
    rows (a VAE) is described by its own row, so that a model of another data size is refused for
    that reason rather than for the shape of x; the covariates given (a conditional VAE's ``y``, which
    its own row cannot know) come with it."""
    if not program.can_generate:
        return program.data(x, covariates)
    row = program.template(1)
    given = {name: torch.as_tensor(value)[:1] for name, value in (covariates or {}).items()}
    return Data(row.x, {**row.covariates, **given})


def _units(entry: Program | LogLikelihood, x: Any, covariates) -> tuple[bool, str, int | None]:
    """``(is_discrete, description, values per point)`` of a model, read before any evaluation."""
    if isinstance(entry, LogLikelihood):
        return entry.is_discrete, entry.likelihood, entry.num_features
    data = _one_row(entry, x, covariates)
    sites = entry.sites(data)
    features = sum(int(math.prod(sites.event_shapes[k])) for k in sites.observed)
    return all(sites.discrete.values()), describe_observed(entry, data, sites), features


def plot_comparison(table: pd.DataFrame, path: str | os.PathLike, *, title: str | None = None) -> Path:
    """Draw a :func:`compare` table like ``arviz.plot_compare`` and save it as a PNG.

    Each model gets a row: its ``elpd`` with a ``+-se`` bar (filled dot) and, below every model
    but the best, its difference to the best with the paired ``+-dse`` bar (open triangle). A
    dashed line marks the best model's ``elpd``.
    """
    # The caller's matplotlib backend is left alone: saving a figure needs no display.
    import matplotlib.pyplot as plt

    if not set(COLUMNS) <= set(table.columns):
        raise ValueError("plot_comparison draws the table returned by pyro_vae.compare.")
    table = table.sort_values("rank")
    names = list(table.index)
    best = table["elpd"].iloc[0]
    fig, ax = plt.subplots(figsize=(7, 1.4 + 0.7 * len(names)), constrained_layout=True)
    rows = np.arange(len(names))[::-1].astype(float)
    ax.errorbar(table["elpd"], rows, xerr=table["se"], fmt="o", color="C0", capsize=3, label="elpd ± se")
    others = table.iloc[1:]
    if len(others):
        ax.errorbar(
            best - others["elpd_diff"],
            rows[1:] - 0.3,
            xerr=others["dse"],
            fmt="^",
            mfc="white",
            color="C1",
            capsize=3,
            label="difference to best ± dse",
        )
    ax.axvline(best, color="grey", ls="--", lw=1)
    ax.set_yticks(rows, names)
    ax.set_xlabel(f"held-out sum of log p(x) over {table.attrs.get('num_points', '?')} points (higher is better)")
    ax.set_title(title or "Model comparison")
    fig.legend(loc="outside lower center", ncols=2, fontsize="small", frameon=False)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _refuse_mixed_units(units: Mapping[str, tuple[bool, str, int | None]]) -> None:
    sizes = {name: features for name, (_, _, features) in units.items() if features}
    if len(set(sizes.values())) > 1:
        raise ValueError(f"The models describe data with different numbers of values per point: {sizes}.")
    kinds = {name: (discrete, lik) for name, (discrete, lik, _) in units.items()}
    mass = [f"{n} ({lik})" for n, (discrete, lik) in kinds.items() if discrete]
    density = [f"{n} ({lik})" for n, (discrete, lik) in kinds.items() if not discrete]
    if mass and density:
        raise ValueError(
            "Cannot rank these models on one scale: "
            f"{', '.join(mass)} assign probabilities (a mass function) while {', '.join(density)} "
            "assign densities. A log-probability is at most 0, whereas a log-density depends on the "
            "units of x and can be any size, so their difference says nothing about which model is "
            "better. Compare within one kind, or, for integer data such as 8-bit pixels, build the "
            "density model with num_levels=L (e.g. likelihood_kwargs={'num_levels': 256}): uniform "
            "dequantisation makes it a mass function over the same levels."
        )


def _table(results: Mapping[str, LogLikelihood], method: str) -> pd.DataFrame:
    log_px = np.stack([r.log_px.numpy() for r in results.values()])  # (M, N)
    # Stacking exponentiates the per-point values; a per-point shift common to all models changes
    # no weight and no difference, and keeps exp() finite.
    shifted = log_px - log_px.max(axis=0, keepdims=True)
    estimates = {
        name: ElpdEstimate(result.total, result.se, values, result.num_particles, _warning(result))
        for (name, result), values in zip(results.items(), shifted)
    }
    table = compare_elpd(estimates, method=method)
    table["nll"] = [-results[n].mean for n in table.index]
    table["bits_per_dim"] = [results[n].bits_per_dim if results[n].num_features else np.nan for n in table.index]
    table["mc_se"] = [results[n].total_mc_se for n in table.index]
    table["share_k_above_0.7"] = [
        results[n].share_k_above(0.7) if results[n].pareto_k is not None else np.nan for n in table.index
    ]
    table["warning"] = [_warning(results[n]) for n in table.index]
    table["estimator"] = [results[n].estimator for n in table.index]
    table["slack"] = [results[n].slack for n in table.index]
    table.attrs.update(
        num_points=next(iter(results.values())).num_points,
        num_particles={n: r.num_particles for n, r in results.items()},
        estimator={n: r.estimator for n, r in results.items()},
        conditioned_on={n: r.conditioned_on for n, r in results.items() if r.conditioned_on},
        method=method,
    )
    return table


def _warning(result: LogLikelihood) -> bool:
    return bool(result.pareto_k is not None and (result.pareto_k > 0.7).any())

"""Closed-form baselines for held-out ``log p(x)`` of real-valued data: what a VAE must beat.

* :func:`diagonal_gaussian` -- independent Gaussians per feature, fitted by maximum likelihood;
* :func:`ppca` -- probabilistic PCA with ``L`` components (Tipping & Bishop 1999), the linear
  VAE's exact optimum, fitted by maximum likelihood in closed form;
* :func:`factor_analysis` -- factor analysis with ``L`` factors, ``x ~ N(m, W W^T + diag(psi))``:
  PPCA with a noise variance per feature, the fair linear baseline for tables in raw units whose
  columns differ in noise. Fitted by maximum likelihood (scikit-learn's ``FactorAnalysis``);
  its held-out density is exact.

All are fitted on training data and evaluated exactly on held-out data, and return a
:class:`~pyro_vae.evaluate.LogLikelihood` (``estimator="closed form"``, no Monte Carlo error), so
they go straight into :func:`pyro_vae.compare`. They are densities in the units of ``x``: compare
them with density likelihoods (``normal``, ``laplace``, ...) on the same data, not with mass
functions. :func:`losing_to` says which baselines a model is significantly worse than.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from .._util.checks import as_tensor, positive_int
from ..distributions.linear_gaussian import VARIANCE_FLOOR, ppca_solution
from .result import LogLikelihood
from .statistics import mean_se


def diagonal_gaussian(train: Any, test: Any) -> LogLikelihood:
    """``x_d ~ N(m_d, v_d)`` independently, ``m`` and ``v`` the training mean and variance."""
    train, test = _pair(train, test)
    mean, variance = train.mean(0), train.var(0, correction=0)
    variance = variance.clamp(min=VARIANCE_FLOOR * float(variance.mean()) + 1e-300)
    log_px = torch.distributions.Normal(mean, variance.sqrt()).log_prob(test).sum(-1)
    return _result(log_px, "baseline: diagonal Gaussian", test.shape[1])


def ppca(train: Any, test: Any, latent_dim: int) -> LogLikelihood:
    """Probabilistic PCA with ``latent_dim`` components: ``x ~ N(m, W W^T + s^2 I)`` at its maximum
    likelihood on ``train`` (``W = U_L (Lambda_L - s^2)^{1/2}``, ``s^2`` the mean discarded eigenvalue)."""
    train, test = _pair(train, test)
    latent = positive_int(latent_dim, "latent_dim")
    d = train.shape[1]
    if latent >= d:
        raise ValueError(f"PPCA needs latent_dim < D = {d}, got {latent}.")
    mean, weights, noise = ppca_solution(train, latent)
    covariance = weights @ weights.T + noise * torch.eye(d, dtype=train.dtype)
    log_px = torch.distributions.MultivariateNormal(mean, covariance_matrix=covariance).log_prob(test)
    return _result(log_px, f"baseline: PPCA (L={latent})", d)


def factor_analysis(train: Any, test: Any, latent_dim: int, *, seed: int = 0) -> LogLikelihood:
    """Factor analysis with ``latent_dim`` factors, ``x ~ N(m, W W^T + diag(psi))``, at the maximum
    likelihood scikit-learn's ``FactorAnalysis`` finds on ``train`` (randomised SVD seeded by ``seed``);
    ``log p(x)`` of ``test`` under that Gaussian, exactly."""
    from sklearn.decomposition import FactorAnalysis

    train, test = _pair(train, test)
    latent = positive_int(latent_dim, "latent_dim")
    d = train.shape[1]
    if latent >= d:
        raise ValueError(f"Factor analysis needs latent_dim < D = {d}, got {latent}.")
    fitted = FactorAnalysis(n_components=latent, random_state=seed).fit(train.numpy())
    covariance = torch.as_tensor(fitted.get_covariance(), dtype=torch.float64)
    mean = torch.as_tensor(fitted.mean_, dtype=torch.float64)
    log_px = torch.distributions.MultivariateNormal(mean, covariance_matrix=covariance).log_prob(test)
    return _result(log_px, f"baseline: factor analysis (L={latent})", d)


def closed_form_baselines(train: Any, test: Any, latent_dim: int) -> dict[str, LogLikelihood]:
    """The baselines a model of ``latent_dim`` latent dimensions is compared with, by name: the diagonal
    Gaussian, and PPCA and factor analysis with ``latent_dim`` components where ``latent_dim < D``."""
    found = {"baseline: diagonal Gaussian": diagonal_gaussian(train, test)}
    if positive_int(latent_dim, "latent_dim") < as_tensor(test, "test").shape[-1]:
        found[f"baseline: PPCA (L={latent_dim})"] = ppca(train, test, latent_dim)
        found[f"baseline: factor analysis (L={latent_dim})"] = factor_analysis(train, test, latent_dim)
    return found


def losing_to(result: LogLikelihood, baselines: dict[str, LogLikelihood], *, threshold: float = 2.0) -> list[str]:
    """Warnings, one per baseline whose held-out ``log p(x)`` beats ``result``'s by more than
    ``threshold`` paired standard errors, saying by how much and what to try."""
    warnings = []
    for name, baseline in baselines.items():
        diff = (baseline.log_px - result.log_px).double()
        se = mean_se(diff) if len(diff) > 1 else math.inf
        if float(diff.mean()) > threshold * se:
            warnings.append(
                f"The model's held-out log p(x) is {float(diff.mean()):.2f} ± {se:.2f} nats per point below the "
                f"{name.removeprefix('baseline: ')}: it has not learned what a closed-form model of the same data "
                "does. Train longer, raise lr, standardise the data (VAE(..., standardize=True)) or check the "
                "likelihood's scale."
            )
    return warnings


def _pair(train: Any, test: Any) -> tuple[torch.Tensor, torch.Tensor]:
    train, test = as_tensor(train, "train", torch.float64), as_tensor(test, "test", torch.float64)
    for name, values in (("train", train), ("test", test)):
        if values.ndim != 2 or len(values) < 2 or not bool(torch.isfinite(values).all()):
            raise ValueError(f"{name} must be finite data of shape (N, D) with N >= 2, got {tuple(values.shape)}.")
    if train.shape[1] != test.shape[1]:
        raise ValueError(f"train has {train.shape[1]} features per point, test {test.shape[1]}.")
    return train, test


def _result(log_px: torch.Tensor, name: str, features: int) -> LogLikelihood:
    log_px = log_px.double()
    return LogLikelihood(
        log_px=log_px,
        elbo=log_px,
        mc_se=torch.zeros_like(log_px),
        pareto_k=None,
        log_weights=None,
        num_particles=0,
        likelihood=name,
        is_discrete=False,
        num_features=features,
        estimator="closed form",
    )

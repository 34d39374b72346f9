"""Probabilistic PCA in closed form (Tipping & Bishop 1999): the linear-Gaussian model
``x = W z + mu + eps``, ``z ~ N(0, I)``, ``eps ~ N(0, s^2 I)``, whose marginal is
``N(mu, W W^T + s^2 I)``. Its maximum-likelihood fit starts the built-in decoder and is the
closed-form baseline of :mod:`pyro_vae.evaluate.baselines`."""

from __future__ import annotations

import torch

VARIANCE_FLOOR = 1e-6


def ppca_solution(
    x: torch.Tensor, latent_dim: int, *, noise: float | None = None, min_noise: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Maximum-likelihood PPCA of ``x`` (``(N, D)``, float64): mean ``(D,)``, ``W`` ``(D, latent_dim)``
    with orthogonal columns ``U (Lambda - s^2)^{1/2}``, and ``s^2``, the mean discarded eigenvalue
    (or the given ``noise``; at least ``min_noise``). Columns beyond ``D`` are zero."""
    n, d = x.shape
    latent = min(latent_dim, d)
    mean = x.mean(0)
    eigenvalues, eigenvectors = torch.linalg.eigh((x - mean).T @ (x - mean) / n)
    eigenvalues, eigenvectors = eigenvalues.flip(0).clamp(min=0), eigenvectors.flip(1)
    if noise is None:
        noise = float(eigenvalues[latent:].mean()) if latent < d else float(eigenvalues[-1]) * 1e-2
        noise = max(noise, VARIANCE_FLOOR * float(eigenvalues.mean()) + 1e-300, min_noise)
    weights = torch.zeros(d, latent_dim, dtype=x.dtype)
    weights[:, :latent] = eigenvectors[:, :latent] * (eigenvalues[:latent] - noise).clamp(min=0).sqrt()
    return mean, weights, noise


def ppca_missing(
    x: torch.Tensor,
    mask: torch.Tensor,
    latent_dim: int,
    *,
    noise: float | None = None,
    min_noise: float = 0.0,
    iterations: int = 500,
    tolerance: float = 1e-9,
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Maximum-likelihood PPCA of ``x`` (``(N, D)``, float64) reading only the entries where ``mask``
    is True, by expectation maximisation (Ilin & Raiko 2010, "Practical approaches to principal
    component analysis in the presence of missing values", section 3.2).

    E step, for each row with observed features ``O``: ``M = I + W_O^T W_O / s^2``,
    ``E[z] = M^{-1} W_O^T (x_O - mu_O) / s^2``, ``Cov[z] = M^{-1}``. M step, for each feature ``d``
    over the rows that observe it, with ``z~ = (z, 1)``: ``(W_d, mu_d) = (sum x_d E[z~])^T
    (sum E[z~ z~^T])^{-1}``, and ``s^2`` the mean over observed entries of
    ``(x_d - W_d E[z] - mu_d)^2 + W_d Cov[z] W_d^T``. Starts from :func:`ppca_solution` of the
    filled-in data; stops when the log-likelihood of the observed entries gains less than
    ``tolerance`` per entry. Returns what :func:`ppca_solution` returns (``W`` rotated to
    orthogonal columns, which leaves the model unchanged); with ``mask`` all True, its solution.
    """
    n, d = x.shape
    m = mask.to(x.dtype)
    counts = m.sum(0)
    if not bool((counts > 0).all()):
        raise ValueError("Every feature needs an observed entry for PPCA with missing values.")
    filled = torch.where(mask, x, (x * m).sum(0) / counts)
    mean, weights, start_noise = ppca_solution(filled, latent_dim, noise=noise, min_noise=min_noise)
    s2 = start_noise
    previous = -float("inf")
    for _ in range(iterations):
        loc, cov = latent_posterior(x, mask, mean, weights, s2)
        # M step: each feature's row of W and its mean, from the rows that observe it.
        second = cov + loc[:, :, None] * loc[:, None, :]  # E[z z^T], (N, L, L)
        tilde = torch.cat([loc, torch.ones(n, 1, dtype=x.dtype)], 1)  # E[z~], (N, L+1)
        outer = torch.zeros(n, latent_dim + 1, latent_dim + 1, dtype=x.dtype)
        outer[:, :latent_dim, :latent_dim] = second
        outer[:, :latent_dim, latent_dim] = loc
        outer[:, latent_dim, :latent_dim] = loc
        outer[:, latent_dim, latent_dim] = 1.0
        lhs = torch.einsum("nd,nkl->dkl", m, outer)  # (D, L+1, L+1)
        rhs = torch.einsum("nd,nd,nk->dk", m, torch.where(mask, x, 0.0), tilde)  # (D, L+1)
        solved = torch.linalg.solve(lhs, rhs)  # (D, L+1)
        weights, mean = solved[:, :latent_dim], solved[:, latent_dim]
        if noise is None:
            residual = torch.where(mask, x - loc @ weights.T - mean, 0.0)
            spread = torch.einsum("dk,nkl,dl,nd->", weights, cov, weights, m)
            s2 = max(float((residual.pow(2).sum() + spread) / m.sum()), min_noise, VARIANCE_FLOOR * float(filled.var()))
        current = float(observed_log_likelihood(x, mask, mean, weights, s2).sum()) / float(m.sum())
        if current - previous < tolerance:
            break
        previous = current
    # Rotate W to orthogonal columns (the model is invariant to rotations of z).
    u, singular, _ = torch.linalg.svd(weights, full_matrices=False)
    return mean, u * singular, s2


def observed_log_likelihood(
    x: torch.Tensor, mask: torch.Tensor, mean: torch.Tensor, weights: torch.Tensor, noise: float | torch.Tensor
) -> torch.Tensor:
    """``log p(x_O)`` of each row under PPCA ``(mean, W, s^2)``, marginalising its missing entries:
    ``N(x_O; mu_O, W_O W_O^T + Psi_O)`` with ``Psi = s^2 I`` for a scalar ``noise`` or ``diag(noise)``
    for a ``(D,)`` one (factor analysis), by the matrix determinant lemma in the latent space, shape
    ``(N,)``. Missing entries of ``x`` may hold anything, NaN included."""
    noise = torch.as_tensor(noise, dtype=x.dtype)
    seen = mask.to(x.dtype)
    m = seen / noise  # (N, D): 1 / psi_d where observed
    latent = weights.shape[1]
    centred = torch.where(mask, x - mean, 0.0)
    precision = torch.eye(latent, dtype=x.dtype) + torch.einsum("nd,dk,dl->nkl", m, weights, weights)
    projected = (centred * m) @ weights  # W_O^T Psi_O^{-1} (x_O - mu_O)
    solved = torch.linalg.solve(precision, projected[..., None])[..., 0]
    quadratic = (centred.pow(2) * m).sum(1) - (projected * solved).sum(1)
    log_det = torch.linalg.slogdet(precision)[1] + (seen * torch.log(noise)).sum(1)
    return -0.5 * (seen.sum(1) * torch.log(torch.tensor(2 * torch.pi, dtype=x.dtype)) + log_det + quadratic)


def latent_posterior(
    x: torch.Tensor, mask: torch.Tensor, mean: torch.Tensor, weights: torch.Tensor, noise: float | torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``E[z | x_O]`` ``(N, L)`` and ``Cov[z | x_O]`` ``(N, L, L)`` of each row given its observed
    entries ``O``: ``M = I + W_O^T Psi_O^{-1} W_O``, ``E[z] = M^{-1} W_O^T Psi_O^{-1} (x_O - mu_O)``,
    ``Cov = M^{-1}``, where ``Psi = s^2 I`` for a scalar ``noise`` (PPCA) or ``diag(noise)`` for a
    ``(D,)`` one (factor analysis). Missing entries of ``x`` may hold anything, NaN included."""
    m = mask.to(x.dtype) / torch.as_tensor(noise, dtype=x.dtype)  # (N, D): 1 / psi_d where observed
    centred = torch.where(mask, x - mean, 0.0)  # missing entries contribute nothing
    eye = torch.eye(weights.shape[1], dtype=x.dtype)
    cov = torch.linalg.inv(eye + torch.einsum("nd,dk,dl->nkl", m, weights, weights))
    return torch.einsum("nkl,nl->nk", cov, (centred * m) @ weights), cov


def conditional_mean(
    x: torch.Tensor, mask: torch.Tensor, mean: torch.Tensor, weights: torch.Tensor, noise: float | torch.Tensor
) -> torch.Tensor:
    """``x`` with each missing entry replaced by ``E[x_mis | x_obs] = mu_mis + W_mis E[z | x_O]``: the
    best imputation under PPCA ``(mean, W, s^2)`` in squared error (the oracle, for true parameters)."""
    loc, _ = latent_posterior(x, mask, mean, weights, noise)
    return torch.where(mask, x, mean + loc @ weights.T)

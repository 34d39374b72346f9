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

"""Distributions the library builds on: mixtures of diagonal Gaussians and the closed-form linear-Gaussian
model (probabilistic PCA)."""

from .linear_gaussian import ppca_solution
from .mixtures import DiagonalNormalMixture

__all__ = [
    "DiagonalNormalMixture",
    "ppca_solution",
]

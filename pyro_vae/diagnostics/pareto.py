"""Pareto ``k`` of every point's importance weights (PSIS, Vehtari et al. 2024), in numbers and words:
:func:`pareto_k_report` and its :class:`ParetoReport`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from .._util.isolation import leaves_pyro_state_alone
from .._util.memory import MAX_MEMORY_MB
from ..evaluate.estimate import log_likelihood
from ..evaluate.result import LogLikelihood


@dataclass(frozen=True)
class ParetoReport:
    """Pareto ``k`` of each point's importance weights ``p(x, z_s) / q(z_s|x)``, ``z_s ~ q(z|x)``.

    Attributes:
        k: shape ``(N,)``; ``-inf`` where the weights are constant (an exact guide).
        num_particles: importance samples per point.
    """

    k: torch.Tensor
    num_particles: int

    def __repr__(self) -> str:
        shares = ", ".join(f"{key} {100 * value:.1f}%" for key, value in self.shares.items())
        return f"ParetoReport({self.k.numel()} points, {self.num_particles} particles: {shares})"

    def share_above(self, threshold: float) -> float:
        return float((self.k > threshold).double().mean())

    @property
    def shares(self) -> dict[str, float]:
        """Shares of points with ``k < 0.5``, ``0.5 <= k <= 0.7`` and ``k > 0.7``."""
        good = float((self.k < 0.5).double().mean())
        bad = self.share_above(0.7)
        return {"k<0.5": good, "0.5<=k<=0.7": 1.0 - good - bad, "k>0.7": bad}

    def interpretation(self) -> str:
        """What the shares mean for the importance-weighted estimates, in words."""
        s = self.shares
        text = (
            f"{100 * s['k<0.5']:.1f}% of points have k < 0.5: q(z|x) covers p(z|x) well and the "
            f"importance-weighted log p(x) converges quickly. {100 * s['0.5<=k<=0.7']:.1f}% have "
            "0.5 <= k <= 0.7: the weights have infinite variance, so estimates converge slowly but are "
            f"still usable. {100 * s['k>0.7']:.1f}% have k > 0.7: q(z|x) misses mass of p(z|x) (it is "
            "too narrow or misplaced), a few weights dominate, and the estimate of log p(x) for those "
            f"points is unreliable and probably too low at {self.num_particles} particles."
        )
        return text

    def summary(self) -> dict[str, object]:
        finite = self.k[torch.isfinite(self.k)]
        return {
            "num_particles": self.num_particles,
            **{f"share_{key}": value for key, value in self.shares.items()},
            "median_k": float(finite.median()) if finite.numel() else None,
            "interpretation": self.interpretation(),
        }


@leaves_pyro_state_alone
def pareto_k_report(
    model: Any,
    x: Any = None,
    *,
    covariates: Any = None,
    mask: Any = None,
    num_particles: int = 1000,
    seed: int = 0,
    max_memory_mb: float = MAX_MEMORY_MB,
    **program_kwargs: Any,
) -> ParetoReport:
    """Pareto ``k`` of the importance weights of every row of ``x``, from ArviZ's PSIS.

    Pass a trained program (a VAE, or a model with ``guide=``, ``covariates=`` ... as for
    :func:`~pyro_vae.log_likelihood`) with data, or the
    :class:`~pyro_vae.evaluate.LogLikelihood` returned by :func:`~pyro_vae.log_likelihood` (which
    computes ``k`` by default) to reuse its weights. See :meth:`ParetoReport.interpretation` for
    how to read ``k`` (Vehtari et al. 2024).
    """
    if isinstance(model, LogLikelihood):
        if model.pareto_k is None:
            raise ValueError("This LogLikelihood was computed with psis=False; it holds no Pareto k.")
        return ParetoReport(k=model.pareto_k, num_particles=model.num_particles)
    if x is None:
        raise ValueError("Pass the data x to evaluate the model on.")
    result = log_likelihood(
        model,
        x,
        covariates=covariates,
        mask=mask,
        num_particles=num_particles,
        seed=seed,
        max_memory_mb=max_memory_mb,
        **program_kwargs,
    )
    return ParetoReport(k=result.pareto_k, num_particles=num_particles)

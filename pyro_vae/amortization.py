"""The amortization gap: how far the encoder's ``q(z|x)`` is from the best Gaussian for each point.

Cremer, Li & Duvenaud (2018, "Inference Suboptimality in Variational Autoencoders") split the gap
between ``log p(x)`` and the encoder's ELBO into

.. math::

    \\log p(x) - \\mathcal{L}[q_\\phi]
    = \\underbrace{\\log p(x) - \\mathcal{L}[q^*]}_{\\text{approximation gap}}
    + \\underbrace{\\mathcal{L}[q^*] - \\mathcal{L}[q_\\phi]}_{\\text{amortization gap}},

where ``q*`` is the best diagonal Gaussian for that one point. :func:`amortization_gap` finds
``q*`` by SVI on free per-point parameters that start at the encoder's output (the decoder stays
fixed), then evaluates both ELBOs and the importance-weighted ``log p(x)`` with the same particles.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import pyro
import pyro.distributions as dist
import torch
from pyro.infer import Trace_ELBO
from torch import nn
from torch.nn import functional as F

from ._checks import positive_int
from ._isolation import isolated
from .evaluate import log_likelihood
from .model import VAE


@dataclass(frozen=True)
class AmortizationGap:
    """Per-point results of :func:`amortization_gap`, each of shape ``(N,)`` in nats.

    Attributes:
        encoder_elbo: ELBO of the encoder's ``q(z|x)``.
        refined_elbo: ELBO of the refined per-point Gaussian.
        log_px: importance-weighted ``log p(x)`` with the refined Gaussian as proposal.
        encoder_log_px: the same estimate with the encoder's ``q(z|x)`` as proposal; the
            refined proposal usually gives the higher (tighter) one.
        loc, scale: the refined Gaussians, shape ``(N, L)``.
        trace: average refined ELBO every ``num_steps // 10`` steps, to judge convergence.
    """

    encoder_elbo: torch.Tensor
    refined_elbo: torch.Tensor
    log_px: torch.Tensor
    encoder_log_px: torch.Tensor
    loc: torch.Tensor
    scale: torch.Tensor
    num_steps: int
    num_particles: int
    trace: list[float] = field(default_factory=list)

    @property
    def amortization(self) -> torch.Tensor:
        """``refined_elbo - encoder_elbo`` per point."""
        return self.refined_elbo - self.encoder_elbo

    @property
    def approximation(self) -> torch.Tensor:
        """``log_px - refined_elbo`` per point."""
        return self.log_px - self.refined_elbo

    def summary(self) -> dict[str, float | int | list[float]]:
        """Means over points, with standard errors over points (``*_se``)."""
        out: dict[str, float | int | list[float]] = {"num_points": int(self.log_px.numel())}
        for name, values in (
            ("encoder_elbo", self.encoder_elbo),
            ("refined_elbo", self.refined_elbo),
            ("log_px", self.log_px),
            ("encoder_log_px", self.encoder_log_px),
            ("amortization_gap", self.amortization),
            ("approximation_gap", self.approximation),
        ):
            out[name] = float(values.mean())
            out[f"{name}_se"] = float(values.std(correction=1) / math.sqrt(values.numel())) if values.numel() > 1 else math.nan
        out.update(num_steps=self.num_steps, num_particles=self.num_particles, trace=self.trace)
        return out


def amortization_gap(
    vae: VAE,
    x: torch.Tensor,
    *,
    num_steps: int = 500,
    lr: float = 1e-2,
    train_particles: int = 8,
    num_particles: int = 1000,
    batch_size: int = 256,
    seed: int = 0,
    max_memory_mb: float = 64.0,
) -> AmortizationGap:
    """Refine ``q(z|x_i)`` for every row of ``x`` and measure the encoder's gap.

    Args:
        vae: a trained model; it is not modified.
        x: data of shape ``(N, D)``.
        num_steps: Adam steps of SVI per batch of points.
        lr: initial Adam learning rate for the per-point means and scales; it decays
            exponentially to ``lr / 10`` over the steps.
        train_particles: vectorised particles per point and step of the SVI objective.
        num_particles: particles for evaluating both ELBOs and ``log p(x)``.
        batch_size: points refined together (their parameters are independent, so batching only
            changes speed and memory).
        seed: seeds SVI and evaluation.

    Returns: an :class:`AmortizationGap`.
    """
    x = vae.check_data(x)
    for value, name in ((num_steps, "num_steps"), (train_particles, "train_particles"), (batch_size, "batch_size")):
        positive_int(value, name)
    if not lr > 0:
        raise ValueError(f"lr must be positive, got {lr!r}.")
    with torch.no_grad():
        loc, scale = vae.encode(x)
    traces, parts = [], []
    with _frozen(vae):
        for start in range(0, len(x), batch_size):
            rows = slice(start, start + batch_size)
            # Fresh parameters and optimiser per batch, so Adam's momentum never moves rows
            # refined in an earlier batch.
            part = _LocalGaussians(loc[rows], scale[rows])
            traces.append(_refine(vae, part, x[rows], num_steps, lr, train_particles, seed + start))
            parts.append(part)
    local = _LocalGaussians(torch.cat([p.loc.detach() for p in parts]), torch.cat([p.scale.detach() for p in parts]))
    encoder = log_likelihood(vae, x, num_particles=num_particles, seed=seed, psis=False, max_memory_mb=max_memory_mb)
    refined = log_likelihood(
        vae, x, num_particles=num_particles, seed=seed, psis=False, max_memory_mb=max_memory_mb, guide=local.guide
    )
    weights = torch.tensor([min(batch_size, len(x) - s) for s in range(0, len(x), batch_size)], dtype=torch.float64)
    trace = (torch.tensor(traces, dtype=torch.float64).T @ weights / weights.sum()).tolist() if traces else []
    return AmortizationGap(
        encoder_elbo=encoder.elbo,
        refined_elbo=refined.elbo,
        log_px=refined.log_px,
        encoder_log_px=encoder.log_px,
        loc=local.loc.detach().clone(),
        scale=local.scale.detach().clone(),
        num_steps=num_steps,
        num_particles=num_particles,
        trace=trace,
    )


class _LocalGaussians(nn.Module):
    """Free diagonal Gaussians, one per data point, initialised at the encoder's output."""

    def __init__(self, loc: torch.Tensor, scale: torch.Tensor):
        super().__init__()
        self.loc = nn.Parameter(loc.detach().clone())
        # Inverse softplus, so the initial scale equals the encoder's.
        self.raw_scale = nn.Parameter(scale.detach() + torch.log(-torch.expm1(-scale.detach())))

    @property
    def scale(self) -> torch.Tensor:
        return F.softplus(self.raw_scale) + 1e-6

    def guide(self, x: torch.Tensor, *, indices: torch.Tensor | None = None, **_) -> None:
        rows = indices if indices is not None else torch.arange(x.shape[0])
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(self.loc[rows], self.scale[rows]).to_event(1))


def _refine(vae, local, batch, num_steps, lr, particles, seed) -> list[float]:
    """Adam on the batch's Gaussians; returns the average ELBO every ``num_steps // 10`` steps."""
    objective = Trace_ELBO(num_particles=particles, vectorize_particles=True, max_plate_nesting=1)
    optimiser = torch.optim.Adam(local.parameters(), lr=lr)
    # The step size decays to 10% of lr, so the final iterate rests near the optimum instead of
    # jittering around it with the Monte Carlo noise of the gradients.
    schedule = torch.optim.lr_scheduler.ExponentialLR(optimiser, gamma=0.1 ** (1 / num_steps))
    every = max(1, num_steps // 10)
    trace = []
    with isolated(seed), warnings.catch_warnings():
        # The frozen decoder's parameters are deliberately left out of the parameter store.
        warnings.filterwarnings("ignore", message=".*was not registered in the param store.*")
        for step in range(num_steps):
            loss = objective.differentiable_loss(vae.model, local.guide, batch)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            if (step + 1) % every == 0:
                trace.append(-loss.item() / len(batch))
    return trace


class _frozen:
    """Turn off gradients of the VAE's parameters for the duration of a block."""

    def __init__(self, module: nn.Module):
        self.params = [p for p in module.parameters() if p.requires_grad]

    def __enter__(self):
        for p in self.params:
            p.requires_grad_(False)

    def __exit__(self, *exc):
        for p in self.params:
            p.requires_grad_(True)
        return False

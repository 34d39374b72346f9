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

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pyro
import pyro.distributions as dist
import torch
from torch import nn
from torch.nn import functional as F

from .._util.checks import positive_int, positive_number
from .._util.isolation import isolated, leaves_pyro_state_alone
from .._util.memory import MAX_MEMORY_MB
from ..evaluate.estimate import log_likelihood
from ..evaluate.statistics import mean_se
from ..latent.aggregate import AggregatePosterior
from ..latent.predictive import shaped_like_site
from ..objectives import make_objective
from ..program.binding import bind
from ..program.protocol import Data, Program
from ..program.sites import site_values


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

    def __repr__(self) -> str:
        return (
            f"AmortizationGap({self.log_px.numel()} points, {self.num_steps} steps: amortization gap "
            f"{float(self.amortization.mean()):.3f} ± {mean_se(self.amortization):.3f} nats, approximation gap "
            f"{float(self.approximation.mean()):.3f} ± {mean_se(self.approximation):.3f} nats)"
        )

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
            out[f"{name}_se"] = mean_se(values)
        out.update(num_steps=self.num_steps, num_particles=self.num_particles, trace=self.trace)
        return out


@leaves_pyro_state_alone
def amortization_gap(
    model: Any,
    x: Any,
    *,
    guide: Callable | None = None,
    covariates: Mapping[str, Any] | None = None,
    site: str | None = None,
    plate: str | None = None,
    num_steps: int = 500,
    lr: float = 1e-2,
    num_train_particles: int = 8,
    num_particles: int = 1000,
    batch_size: int = 256,
    seed: int = 0,
    max_memory_mb: float = MAX_MEMORY_MB,
    global_values: Any = None,
) -> AmortizationGap:
    """Refine ``q(z|x_i)`` for every row of ``x`` and measure the encoder's gap.

    Args:
        model: a trained program (a VAE, or a model with ``guide=``); it is not modified.
        x: data with the points along the first dimension.
        covariates: data-aligned keyword arguments of model and guide.
        site: the local latent to refine (the only one by default).
        num_steps: Adam steps of SVI per batch of points.
        lr: initial Adam learning rate for the per-point means and scales; it decays
            exponentially to ``lr / 10`` over the steps.
        num_train_particles: vectorised particles per point and step of the SVI objective.
        num_particles: particles for evaluating both ELBOs and ``log p(x)``.
        batch_size: points refined together (their parameters are independent, so batching only
            changes speed and memory).
        seed: seeds SVI and evaluation.

    The refined ``q*`` stays in the guide's own family, as in Cremer et al.: its per-point
    (amortized) parameters are freed and the rest is kept. For a diagonal-Gaussian guide that is a
    free Gaussian per point; for a Gaussian pushed through transforms shared by every point (the
    ``"iaf"`` guide), a free base Gaussian per point pushed through the same, fixed transforms. Both
    start at the encoder's own values. Any other guide is refined as a free diagonal Gaussian
    started at the mean and spread of its draws (then the gap also contains a change of family,
    and can be negative).

    Returns: an :class:`AmortizationGap`.

    Length: checks every argument, then fits the per-point guides and scores both guides on the same draws.
    """
    positive_number(max_memory_mb, "max_memory_mb")
    for value, name in (
        (num_steps, "num_steps"),
        (num_train_particles, "num_train_particles"),
        (batch_size, "batch_size"),
    ):
        positive_int(value, name)
    positive_number(lr, "lr")
    bound = bind(model, x, guide=guide, covariates=covariates, plate=plate, global_values=global_values)
    program, data, sites = bound.program, bound.data, bound.sites
    name = sites.latent(site)
    if len(sites.local) != 1:
        raise ValueError(f"The amortization gap refines one local latent; this program has {list(sites.local)}.")
    loc, scale, transforms = _starting_gaussians(program, data, name, seed)
    frozen = _parameters(program, data) + [p for t in transforms if isinstance(t, nn.Module) for p in t.parameters()]
    traces, parts = [], []
    with _frozen(frozen):
        for start in range(0, len(data), batch_size):
            rows = torch.arange(start, min(start + batch_size, len(data)))
            # Fresh parameters and optimiser per batch, so Adam's momentum never moves rows
            # refined in an earlier batch.
            part = _LocalGaussians(loc[rows], scale[rows], name, program.plate, sites, transforms)
            traces.append(_refine(program, part, data, rows, num_steps, lr, num_train_particles, seed + start, sites))
            parts.append(part)
    local = _LocalGaussians(
        torch.cat([p.loc.detach() for p in parts]),
        torch.cat([p.scale.detach() for p in parts]),
        name,
        program.plate,
        sites,
        transforms,
    )
    common: dict[str, Any] = dict(
        covariates=data.covariates, num_particles=num_particles, seed=seed, psis=False, max_memory_mb=max_memory_mb
    )
    encoder = log_likelihood(program, data.x, **common)
    with _frozen(frozen):
        refined = log_likelihood(program.replace(guide=local.guide), data.x, **common)
    weights = torch.tensor(
        [len(range(s, min(s + batch_size, len(data)))) for s in range(0, len(data), batch_size)], dtype=torch.float64
    )
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


@torch.no_grad()
def _starting_gaussians(program: Program, data: Data, site: str, seed: int):
    """The guide's own per-point base ``(loc, scale)`` and shared transforms, or the mean and spread
    of 64 of its draws (and no transforms) for a guide of another family."""
    try:
        aggregate = AggregatePosterior.from_program(program, data, site=site)
        return aggregate.loc, aggregate.scale, list(aggregate.transforms)
    except ValueError:
        pass
    with isolated(seed), pyro.validation_enabled(False):
        sites = program.sites(data)
        guide_trace, _ = program.traces(data, 64, indices=torch.arange(len(data)), num_data=len(data), sites=sites)
        draws = site_values(guide_trace.nodes[site], sites, program.plate)
    return draws.mean(0), draws.std(0).clamp(min=1e-4), []


def _parameters(program: Program, data: Data) -> list[torch.Tensor]:
    """The parameters the model touches (its ``pyro.module``/``pyro.param`` sites), to freeze."""
    with torch.random.fork_rng(devices=[]), pyro.validation_enabled(False), torch.no_grad():
        _, model_trace = program.traces(data.rows(slice(0, 1)), None, indices=torch.arange(1), num_data=len(data))
    found = [site["value"] for site in model_trace.nodes.values() if site["type"] == "param"]
    owner = getattr(program.model, "__self__", None)
    if isinstance(owner, nn.Module):
        found += list(owner.parameters())
    return [p for p in found if isinstance(p, torch.Tensor) and p.requires_grad]


class _LocalGaussians(nn.Module):
    """Free diagonal Gaussians, one per data point, initialised at ``(loc, scale)`` and pushed through
    fixed shared ``transforms`` (none for a Gaussian guide): a guide."""

    def __init__(
        self, loc: torch.Tensor, scale: torch.Tensor, site: str = "z", plate: str = "data", sites=None, transforms=()
    ):
        super().__init__()
        self.transforms = list(transforms)
        self.loc = nn.Parameter(loc.detach().clone())
        # Inverse softplus, so the initial scale equals the given one.
        self.raw_scale = nn.Parameter(scale.detach() + torch.log(-torch.expm1(-scale.detach())))
        self.site, self.plate, self.sites = site, plate, sites

    @property
    def scale(self) -> torch.Tensor:
        return F.softplus(self.raw_scale) + 1e-6

    def guide(self, x: torch.Tensor, *, indices: torch.Tensor | None = None, **_) -> None:
        rows = indices if indices is not None else torch.arange(x.shape[0])
        dim = self.sites.data_dim if self.sites is not None else -1
        with pyro.plate(self.plate, x.shape[0], dim=dim):
            loc, scale = self.loc[rows], self.scale[rows]
            if self.sites is not None:
                loc, scale = (
                    shaped_like_site(loc, self.sites, len(rows)),
                    shaped_like_site(scale, self.sites, len(rows)),
                )
            base = dist.Normal(loc, scale).to_event(1)
            pyro.sample(self.site, dist.TransformedDistribution(base, self.transforms) if self.transforms else base)


def _refine(program, local, data, rows, num_steps, lr, particles, seed, sites) -> list[float]:
    """Adam on the batch's Gaussians; returns the average ELBO every ``num_steps // 10`` steps."""
    # The objective fit trains a program with, from the one place objectives are defined.
    objective = make_objective("trace", particles, max_plate_nesting=sites.nesting)
    optimiser = torch.optim.Adam(local.parameters(), lr=lr)
    # The step size decays to 10% of lr, so the final iterate rests near the optimum instead of
    # jittering around it with the Monte Carlo noise of the gradients.
    schedule = torch.optim.lr_scheduler.ExponentialLR(optimiser, gamma=0.1 ** (1 / num_steps))
    every = max(1, num_steps // 10)
    batch = data.rows(rows)
    model_kwargs = program.arguments(program.model, batch, rows, len(rows))
    guide_kwargs = {**batch.covariates, "indices": torch.arange(len(rows))}
    trace = []
    with isolated(seed), warnings.catch_warnings():
        # The frozen model's parameters are deliberately left out of the parameter store.
        warnings.filterwarnings("ignore", message=".*was not registered in the param store.*")
        for step in range(num_steps):
            loss = objective.differentiable_loss(
                _with(program.model, model_kwargs), _with(local.guide, guide_kwargs), batch.x
            )
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            if (step + 1) % every == 0:
                trace.append(-loss.item() / len(rows))
    return trace


def _with(fn, kwargs):
    def call(x):
        return fn(x, **kwargs)

    return call


class _frozen:
    """Turn off gradients of the given parameters for the duration of a block."""

    def __init__(self, params: list[torch.Tensor]):
        unique = {id(p): p for p in params}
        self.params = list(unique.values())

    def __enter__(self):
        for p in self.params:
            p.requires_grad_(False)
        # pyro.module warns for every frozen parameter it skips, on every step: that is the point here.
        self._warnings = warnings.catch_warnings()
        self._warnings.__enter__()
        warnings.filterwarnings("ignore", message=".*was not registered in the param store because requires_grad=False")

    def __exit__(self, *exc):
        self._warnings.__exit__(*exc)
        for p in self.params:
            p.requires_grad_(True)
        return False

"""Bidirectional Monte Carlo (BDMC; Grosse, Ghahramani & Adams 2015): AIS brackets the truth on
data simulated from the model.

For ``(x, z*) ~ p(x, z)``, ``z*`` is an exact posterior draw, so AIS (:mod:`pyro_vae.evaluate.ais`)
run backwards from ``z*`` (temperatures ``1 -> 0``) gives an unbiased estimate of ``1 / p(x)``,
hence a stochastic *upper* bound on ``log p(x)``; run forwards it gives a lower bound. The gap
between the two bounds bounds the error of either, for the schedule used.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pyro
import torch

from .._util.checks import positive_int, positive_number
from .._util.isolation import isolated, leaves_pyro_state_alone
from .._util.maths import log_mean_exp
from .._util.memory import MAX_MEMORY_MB
from ..program.protocol import Data, as_program
from ..program.sites import Sites, site_values
from .ais import STARTS, Schedule, chunks, forward_ais, refuse_discrete_latents, run_ais


@dataclass(frozen=True)
class BDMC:
    """Bidirectional Monte Carlo bounds on ``log p(x_i)`` for points simulated from the model.

    Attributes:
        lower: forward AIS estimates, shape ``(N,)``: stochastic lower bounds.
        upper: reverse AIS estimates from the exact posterior draws, shape ``(N,)``: stochastic upper bounds.
        x: the simulated points ``(N, ...)``; ``covariates`` the rows' covariates.
        schedule: the annealing used in both directions; ``chains`` per point.
        acceptance: mean HMC acceptance probability, forward and reverse.
    """

    lower: torch.Tensor
    upper: torch.Tensor
    x: torch.Tensor
    covariates: dict
    schedule: Schedule
    chains: int
    start: str
    acceptance: tuple[float, float]

    def __repr__(self) -> str:
        return (
            f"BDMC({self.lower.numel()} simulated points, {self.chains} chains: mean lower bound "
            f"{float(self.lower.mean()):.3f}, upper {float(self.upper.mean()):.3f}, gap {self.gap:.3f} nats)"
        )

    @property
    def gap(self) -> float:
        """Average ``upper - lower`` per point: how far from exact either estimate can be, in nats."""
        return float((self.upper - self.lower).mean())

    def summary(self) -> dict[str, Any]:
        return {
            "num_points": int(self.lower.shape[0]),
            "chains": self.chains,
            "steps": self.schedule.steps,
            "leapfrog_steps": self.schedule.leapfrog_steps,
            "start": self.start,
            "lower_mean": float(self.lower.mean()),
            "upper_mean": float(self.upper.mean()),
            "gap": self.gap,
            "acceptance_forward": self.acceptance[0],
            "acceptance_reverse": self.acceptance[1],
        }


@leaves_pyro_state_alone
def bdmc(
    model: Any,
    num_points: int,
    *,
    guide: Any = None,
    rows: Any = None,
    covariates: Mapping[str, Any] | None = None,
    plate: str | None = None,
    num_chains: int = 10,
    ais_steps: int = 500,
    leapfrog_steps: int = 10,
    ais_start: str = "guide",
    initial_step_size: float = 0.05,
    max_memory_mb: float = MAX_MEMORY_MB,
    seed: int = 0,
) -> BDMC:
    """Simulate ``num_points`` points ``(x_i, z_i*) ~ p(x, z)`` and bracket ``log p(x_i)`` by BDMC.

    Args:
        model, guide, covariates, plate: the program, as for :func:`pyro_vae.log_likelihood`.
        rows: data rows whose covariates (and shapes) the simulation uses, cycled to
            ``num_points``; a VAE generates from its own template without them.
        num_chains: chains per point in each direction.
        ais_steps, leapfrog_steps, ais_start, initial_step_size: the annealing (:class:`Schedule`)
            and its start distribution (``"guide"`` or ``"prior"``).

    Returns: a :class:`BDMC` whose :attr:`~BDMC.gap` says how far from exact the AIS estimate of a
    simulated point can be. On data from the model, the gap of real data is not certified, but
    a small gap means the schedule is long enough for points like these.

    Length: checks every argument before the work, then runs the forward and the reverse chains on one
    schedule, in order.
    """
    positive_number(max_memory_mb, "max_memory_mb")
    program = as_program(model, guide, plate=plate)
    positive_int(num_points, "num_points")
    positive_int(num_chains, "num_chains")
    schedule = Schedule(ais_steps, leapfrog_steps, initial_step_size)
    if ais_start not in STARTS:
        raise ValueError(f"ais_start must be one of {STARTS}, got {ais_start!r}.")
    like = program.data(rows, covariates) if rows is not None else None
    template = program.template(num_points, like)
    sites = program.sites(template)
    refuse_discrete_latents(sites)
    if sites.globals:
        raise ValueError(
            f"BDMC simulates from the model, whose global latents {list(sites.globals)} would then "
            "differ from point to point; fix them in the program (poutine.condition) first."
        )
    if len(sites.generated) > 1:
        raise ValueError(f"BDMC simulates one observed site; this program's data fill {list(sites.generated)}.")
    # A site kept at the value given (an observed label) must not depend on the latents: simulated
    # ancestrally beside it, they would not be draws from their posterior given it.
    given = [name for name in sites.observed if name not in sites.generated and sites.model_parents.get(name)]
    if given:
        raise ValueError(
            f"BDMC simulates x with {given} kept at the values given, but {given} depend on latent sites, so "
            "the simulated latents would not be posterior draws given them; simulate a program without them."
        )
    with torch.no_grad(), isolated(seed), pyro.validation_enabled(False):
        # One particle: every latent keeps the particle dimension in front, as the chains need.
        trace = program.generate(template, num_particles=1, sites=sites)
        x = site_values(trace.nodes[sites.x_site], sites, program.plate)[0].detach()
        z_star = {name: _full_rank(trace.nodes[name]["value"].detach(), name, sites) for name in sites.local}
    data = Data(x, dict(template.covariates))
    lower, upper, acc_f, acc_r = [], [], [], []
    with isolated(seed + 1), pyro.validation_enabled(False):
        for indices in chunks(program, data, sites, num_chains, max_memory_mb):
            chunk, step_sizes, log_w, accept = forward_ais(
                program, data, indices, sites, num_chains, schedule, ais_start
            )
            lower.append(log_mean_exp(log_w, 0))
            acc_f.append(accept)
            rank = sites.nesting + 1
            initial = {
                name: value.index_select(rank + sites.data_dim, indices.to(value.device))
                .expand(num_chains, *value.shape[1:])
                .contiguous()
                for name, value in z_star.items()
            }
            # The same kernels, run backwards from the exact posterior draws.
            log_w_rev, accept, _ = run_ais(chunk, schedule, step_sizes=step_sizes, initial=initial, reverse=True)
            upper.append(-log_mean_exp(log_w_rev, 0))
            acc_r.append(accept)
    return BDMC(
        torch.cat(lower),
        torch.cat(upper),
        x,
        dict(template.covariates),
        schedule,
        num_chains,
        ais_start,
        (float(torch.cat(acc_f).mean()), float(torch.cat(acc_r).mean())),
    )


def _full_rank(value: torch.Tensor, name: str, sites: Sites) -> torch.Tensor:
    """``value`` with all ``nesting + 1`` batch dimensions present (size 1 where it broadcasts)."""
    event = len(sites.event_shapes[name])
    rank = sites.nesting + 1
    batch = value.ndim - event
    return value.reshape((1,) * (rank - batch) + tuple(value.shape))

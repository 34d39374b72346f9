"""The result of estimating ``log p(x_i)`` for every data point: :class:`LogLikelihood`.

Both estimators of :func:`pyro_vae.log_likelihood` -- importance sampling from the guide and
annealed importance sampling -- return one, and :func:`pyro_vae.compare` ranks them.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import torch

from .statistics import sum_se as _sum_se


@dataclass(frozen=True)
class LogLikelihood:
    """Per-point importance-weighted estimates for ``N`` data points.

    Attributes:
        log_px: ``log p(x_i)`` estimates, shape ``(N,)``, float64.
        elbo: per-point ELBO estimates (mean log weight), shape ``(N,)``, float64.
        mc_se: Monte Carlo standard error of each ``log_px`` (delta method), shape ``(N,)``;
            unreliable where ``pareto_k`` exceeds 0.7.
        pareto_k: Pareto shape ``k`` of each point's importance weights (PSIS), shape ``(N,)``,
            or ``None`` when not computed.
        log_weights: the ``(N, S)`` log weights, kept only on request.
        num_particles: ``S``.
        likelihood: name of the model's likelihood, or its observed sites and their distributions.
        is_discrete: whether that likelihood is a mass function (``log_px`` in log-probability
            units) rather than a density. Densities with ``num_levels`` count as mass functions:
            their estimate is the dequantised log-probability of the levels.
        num_features: ``D``, the values per point (over all observed sites), for :attr:`bits_per_dim`.
        per_site: with several observed sites, each site's own ``log p(x_i^{(k)})`` estimate. The
            proposal is the joint guide ``q(z|x)``, which can be much narrower than
            ``p(z|x^{(k)})`` when other sites inform ``z``; ``per_site_pareto_k`` says where.
        per_site_pareto_k: Pareto ``k`` of each site's own weights (with ``psis``).
        conditioned_on: global latents fixed for the estimate, with how their values were chosen.
        estimator: how ``log_px`` was estimated: ``"importance sampling"`` from the guide, or a
            description of the annealed importance sampling run (``method="ais"``). For AIS,
            ``elbo`` holds the mean log AIS weight and ``num_particles`` the chains per point.
        acceptance: with AIS, each point's mean HMC acceptance probability, shape ``(N,)``.
        doubling_gain: what the second half of the draws added to each estimate, ``log p-hat(S) -
            log p-hat(S/2)``, shape ``(N,)``; with ``pareto_k`` it gives :attr:`slack_per_point`.
        bdmc_gap: for AIS, the mean gap per point between BDMC's upper and lower bounds on data
            simulated from the same model with the same schedule (:meth:`with_bdmc`), or ``None``.
    """

    log_px: torch.Tensor
    elbo: torch.Tensor
    mc_se: torch.Tensor
    pareto_k: torch.Tensor | None
    log_weights: torch.Tensor | None
    num_particles: int
    likelihood: str
    is_discrete: bool
    num_features: int | None = None
    per_site: dict[str, torch.Tensor] | None = None
    per_site_pareto_k: dict[str, torch.Tensor] | None = None
    conditioned_on: dict[str, str] = field(default_factory=dict)
    estimator: str = "importance sampling"
    acceptance: torch.Tensor | None = None
    doubling_gain: torch.Tensor | None = None
    bdmc_gap: float | None = None

    @property
    def num_points(self) -> int:
        return self.log_px.shape[0]

    def __repr__(self) -> str:
        k = "" if self.pareto_k is None else f", Pareto k > 0.7 for {100 * self.share_k_above(0.7):.1f}% of points"
        unit = "log-probability" if self.is_discrete else "log-density"
        return (
            f"LogLikelihood({self.num_points} points, {self.estimator}, {self.num_particles} particles: mean {unit} "
            f"{self.mean:.3f} ± {self.mean_se:.3f} nats, ELBO {float(self.elbo.mean()):.3f}{k})"
        )

    @property
    def total(self) -> float:
        """``sum_i log p(x_i)``: the held-out expected log predictive density (elpd)."""
        return float(self.log_px.sum())

    @property
    def se(self) -> float:
        """Standard error of :attr:`total` over data points, ``sqrt(N var_i log p(x_i))``."""
        return _sum_se(self.log_px)

    @property
    def mean(self) -> float:
        """Average ``log p(x_i)`` per point; ``-mean`` is the negative log-likelihood in nats."""
        return float(self.log_px.mean())

    @property
    def mean_se(self) -> float:
        """Standard error of :attr:`mean` over data points."""
        return self.se / self.num_points

    @property
    def total_mc_se(self) -> float:
        """Monte Carlo error of :attr:`total`, ``sqrt(sum_i mc_se_i^2)`` (draws are independent)."""
        return float(self.mc_se.pow(2).sum().sqrt())

    @property
    def bits_per_dim(self) -> float:
        """Negative log-likelihood per value in bits, ``-mean / (D ln 2)``.

        For a mass function this is the average code length per pixel; for a density it depends
        on the units of ``x`` (and can be negative).
        """
        if not self.num_features:
            raise ValueError("bits_per_dim needs num_features, the number of values per point.")
        return -self.mean / (self.num_features * math.log(2))

    @property
    def is_annealed(self) -> bool:
        """Whether ``log_px`` came from annealed importance sampling (``method="ais"``)."""
        return self.estimator.startswith("annealed")

    @property
    def slack_per_point(self) -> torch.Tensor:
        """How far below ``log p(x_i)`` each estimate may still sit, in nats, shape ``(N,)``.

        Both estimators are stochastic lower bounds that rise towards ``log p(x_i)`` as draws are
        added (the rule that turns these into a verdict is in ``docs/comparison.md``).

        * Importance sampling from the guide: where the weights' tail has Pareto shape ``k``, the
          shortfall of a log-mean estimate shrinks by a factor ``r = 2^(1 - 1/k)`` per doubling of
          the draws (``r = 1/2`` once the variance is finite, ``k <= 1/2``), so what is left after
          ``S`` draws is the last doubling's gain times ``r / (1 - r)``. With ``k >= 1`` the
          estimate does not settle at any number of draws: its shortfall is bounded only by what
          the point can reach, ``-log p-hat_i`` for a mass function (a probability is at most 1),
          and is infinite for a density. Without ``k`` (fewer than 10 draws, or ``psis=False``)
          the Jensen gap ``log mean w - mean log w`` stands in.
        * AIS: its weights are unbiased for ``p(x_i)`` whatever the schedule, so the log of their
          mean falls short by about half their relative variance, ``mc_se_i^2 / 2`` (the delta
          method), and by the BDMC gap where one was measured (:meth:`with_bdmc`), which bounds
          the schedule's own shortfall on data simulated from the model.
        """
        if self.is_annealed:
            stated = self.mc_se.double().pow(2) / 2
            return stated + (self.bdmc_gap or 0.0)
        jensen = (self.log_px - self.elbo).clamp(min=0.0)
        if self.pareto_k is None or self.doubling_gain is None:
            return jensen
        k = self.pareto_k.double()
        rate = torch.where(k > 0.5, torch.exp2(1.0 - 1.0 / k.clamp(min=0.5)), torch.full_like(k, 0.5))
        slack = self.doubling_gain.clamp(min=0.0) * rate / (1.0 - rate)
        unsettled = (-self.log_px.double()).clamp(min=0.0) if self.is_discrete else torch.full_like(k, math.inf)
        return torch.where(k >= 1.0, unsettled, slack)

    def with_bdmc(self, bounds: Any) -> LogLikelihood:
        """This AIS result with the mean BDMC gap of ``bounds`` (:func:`pyro_vae.bdmc`, same model and
        schedule) added to its stated slack."""
        if not self.is_annealed:
            raise ValueError("A BDMC gap states the slack of AIS; this result is importance sampling from the guide.")
        gap = float((bounds.upper - bounds.lower).clamp(min=0.0).mean())
        return dataclasses.replace(self, bdmc_gap=gap)

    @property
    def slack(self) -> float:
        """``sum_i slack_per_point``: the estimator's possible shortfall of :attr:`total`, in nats."""
        return float(self.slack_per_point.sum())

    def share_k_above(self, threshold: float = 0.7) -> float:
        """Share of points whose Pareto ``k`` exceeds ``threshold``."""
        if self.pareto_k is None:
            raise ValueError("Pareto k was not computed; call log_likelihood(..., psis=True).")
        return float((self.pareto_k > threshold).double().mean())

    def summary(self) -> dict[str, Any]:
        """Headline numbers as a JSON-serialisable dict (per-point means in nats)."""
        out = {
            "num_points": self.num_points,
            "num_particles": self.num_particles,
            "likelihood": self.likelihood,
            "is_discrete": self.is_discrete,
            "nll": -self.mean,
            "nll_se": self.mean_se,
            "nll_mc_se": self.total_mc_se / self.num_points,
            **(
                {"bits_per_dim": self.bits_per_dim, "bits_per_dim_se": self.mean_se / (self.num_features * math.log(2))}
                if self.num_features
                else {}
            ),
            "elbo": float(self.elbo.mean()),
            "elbo_se": _sum_se(self.elbo) / self.num_points,
            "slack": self.slack / self.num_points,
        }
        if self.pareto_k is not None:
            out["share_k_above_0.7"] = self.share_k_above(0.7)
        if self.per_site:
            out["nll_per_site"] = {k: -float(v.mean()) for k, v in self.per_site.items()}
        if self.per_site_pareto_k:
            out["share_k_above_0.7_per_site"] = {
                k: float((v > 0.7).double().mean()) for k, v in self.per_site_pareto_k.items()
            }
        if self.conditioned_on:
            out["conditioned_on"] = dict(self.conditioned_on)
        out["estimator"] = self.estimator
        if self.acceptance is not None:
            out["ais_acceptance"] = float(self.acceptance.mean())
        return out


def describe_slack(slack: float, unit: str = "nats") -> str:
    """How far an estimate may fall short of the truth, in words: ``"3.2 nats"``, or an unbounded
    amount where a density's importance weights have Pareto k >= 1 at some point."""
    if math.isinf(slack):
        return "an unbounded amount (Pareto k >= 1 at some point of a density)"
    return f"{slack:.2f} {unit}"

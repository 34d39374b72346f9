"""How good is ``q(z|x)``? Posterior diagnostics for a trained program (a VAE or model and guide).

* :func:`elbo_surgery` -- split the average KL term of the ELBO into the mutual information
  between ``x`` and ``z`` and the divergence of the aggregate posterior from the prior;
* :func:`holes` -- how much of the prior's mass falls where the aggregate posterior has none;
* :func:`active_units` -- latent dimensions whose posterior mean varies with the data;
* :func:`~pyro_vae.diagnostics.pareto.pareto_k_report` -- Pareto ``k`` of each point's importance
  weights (PSIS), in words (:mod:`~pyro_vae.diagnostics.pareto`);
* :func:`amortization_gap` -- how much ELBO the encoder leaves on the table, per point.

Each returns a small result object with the numbers, their Monte Carlo or sampling errors, and a
``summary()`` dict ready for JSON.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pyro
import torch
from torch.distributions import kl_divergence

from .._util.checks import positive_int, positive_number
from .._util.isolation import isolated, leaves_pyro_state_alone
from .._util.memory import MAX_MEMORY_MB
from ..evaluate.statistics import monte_carlo_se as _mc_se
from ..evaluate.statistics import proportion_se
from ..latent.aggregate import AggregatePosterior
from ..latent.marginals import AncestralPrior, marginal_log_density
from ..latent.predictive import latent_means
from ..latent.priors import conditional_prior, prior_of
from ..program.binding import bind
from ..program.sites import per_point, site_values


@dataclass(frozen=True)
class ElboSurgery:
    """The terms of ``E_x KL(q(z|x) || p(z)) = I_q(x; z) + KL(q(z) || p(z))`` with their errors.

    Every ``*_se`` is the Monte Carlo standard error of the estimate beside it. ``average_kl_exact``
    is the closed-form average KL where ``torch.distributions`` knows one (else ``None``).
    ``max_mutual_information`` is ``log N``: with ``N`` data points ``I_q(x; z)`` cannot exceed it.

    For a site with latent parents (a hierarchy), ``log q(z_k|x_i)`` or ``log p(z_k)`` is a
    ``marginal_particles``-draw Monte Carlo marginal (:mod:`pyro_vae.latent.marginals`);
    ``marginal_density_se`` is the root mean square of those estimates' own standard errors
    (0 where every density is exact), and ``average_kl_exact`` is ``None``.

    Where the prior depends on the row (a CVAE's ``p(z|x_i)``), ``marginal_kl`` is the divergence
    from the marginal prior ``p(z) = (1/N) sum_i p(z|x_i)`` (so it is a KL, never negative), and
    the identity gains a third term, ``prior_conditioning = E[log p(z) - log p(z|x_i)]``:
    ``average_kl = mutual_information + marginal_kl + prior_conditioning``. It is 0, and
    ``conditional_prior`` False, for a prior shared by every row.
    """

    site: str
    average_kl: float
    average_kl_se: float
    mutual_information: float
    mutual_information_se: float
    marginal_kl: float
    marginal_kl_se: float
    average_kl_exact: float | None
    max_mutual_information: float
    num_points: int
    num_draws: int
    marginal_particles: int = 0
    marginal_density_se: float = 0.0
    conditional_prior: bool = False
    prior_conditioning: float = 0.0
    prior_conditioning_se: float = 0.0

    def summary(self) -> dict[str, float | int | str | None]:
        return dict(self.__dict__)

    def __repr__(self) -> str:
        third = f" + prior conditioning {self.prior_conditioning:.3f}" if self.conditional_prior else ""
        return (
            f"ElboSurgery({self.site!r}, {self.num_points} points: average KL {self.average_kl:.3f} "
            f"± {self.average_kl_se:.3f} = I(x;z) {self.mutual_information:.3f} (max {self.max_mutual_information:.2f}) "
            f"+ KL(q(z)||p(z)) {self.marginal_kl:.3f} ± {self.marginal_kl_se:.3f}{third})"
        )


@dataclass(frozen=True)
class Holes:
    """Mismatch between the prior ``p(z)`` and the aggregate posterior ``q(z)``, in both directions.

    Attributes:
        kl_q_p: ``KL(q(z) || p(z))``, large when the data's codes sit where the prior has little mass.
        kl_p_q: ``KL(p(z) || q(z))``, large when the prior puts mass where no code goes ("holes").
        hole_share: share of prior draws whose ``log q(z)`` is below ``threshold``, the
            ``quantile`` of the leave-one-out ``log q_{-i}`` at the data's own codes (so
            ``quantile`` itself if ``q = p``, and for held-out codes of new data).
        threshold: that log-density.
        ``*_se``: Monte Carlo standard errors.
        site: the latent site measured.
        prior_density_se: for a site with latent parents, the root mean square standard error of
            the Monte Carlo ``log p(z_k)`` (0 where the prior's density is exact).
        conditional_prior: the prior depends on the row (a CVAE's ``p(z|x)``), so ``p(z)`` is its
            marginal over the rows, ``(1/N) sum_i p(z|x_i)`` (:func:`~pyro_vae.latent.prior_of`).
    """

    site: str
    kl_q_p: float
    kl_q_p_se: float
    kl_p_q: float
    kl_p_q_se: float
    hole_share: float
    hole_share_se: float
    threshold: float
    quantile: float
    num_samples: int
    prior_density_se: float = 0.0
    conditional_prior: bool = False

    def summary(self) -> dict[str, float | int | str]:
        return dict(self.__dict__)

    def __repr__(self) -> str:
        prior = "(1/N) sum_i p(z|x_i)" if self.conditional_prior else "p(z)"
        return (
            f"Holes({self.site!r} against {prior}: {100 * self.hole_share:.1f}% ± {100 * self.hole_share_se:.1f}% "
            f"of prior draws in holes (expected {100 * self.quantile:.0f}% without), KL(q||p) {self.kl_q_p:.3f} "
            f"± {self.kl_q_p_se:.3f}, KL(p||q) {self.kl_p_q:.3f} ± {self.kl_p_q_se:.3f})"
        )


@dataclass(frozen=True)
class ActiveUnits:
    """Active latent dimensions: ``Cov_x(E_q[z_u | x]) > threshold`` (Burda et al. 2016).

    Attributes:
        variance: ``Cov_x(E_q[z_u|x])`` per dimension, shape ``(L,)``.
        active: boolean mask of shape ``(L,)``.
        threshold: the cut-off (0.01 in Burda et al.).
        site: the latent site measured.
    """

    site: str
    variance: torch.Tensor
    active: torch.Tensor
    threshold: float

    @property
    def count(self) -> int:
        return int(self.active.sum())

    def __repr__(self) -> str:
        return (
            f"ActiveUnits({self.site!r}: {self.count} of {self.active.numel()} active at threshold {self.threshold:g})"
        )

    def summary(self) -> dict[str, object]:
        return {
            "site": self.site,
            "active_units": self.count,
            "latent_dim": int(self.active.numel()),
            "threshold": self.threshold,
            "variance": [float(v) for v in self.variance],
        }


@leaves_pyro_state_alone
def elbo_surgery(
    model: Any,
    x: Any,
    *,
    guide: Callable | None = None,
    covariates: Mapping[str, Any] | None = None,
    site: str | None = None,
    plate: str | None = None,
    num_particles: int = 1,
    seed: int = 0,
    max_memory_mb: float = MAX_MEMORY_MB,
    global_values: Any = None,
    mask: Any = None,
    marginal_particles: int = 256,
) -> ElboSurgery:
    """Hoffman & Johnson's (2016) ELBO surgery on the data ``x`` (points along the first dimension).

    With ``q(x, z) = (1/N) sum_i delta(x - x_i) q(z|x)`` and the aggregate posterior
    ``q(z) = (1/N) sum_i q(z|x_i)``,

    .. math::

        \\frac{1}{N}\\sum_i \\mathrm{KL}(q(z|x_i) \\| p(z))
        = \\underbrace{\\mathbb{E}_{q(x,z)}\\Big[\\log \\frac{q(z|x)}{q(z)}\\Big]}_{I_q(x;\\,z)}
        + \\underbrace{\\mathbb{E}_{q(z)}\\Big[\\log \\frac{q(z)}{p(z)}\\Big]}_{\\mathrm{KL}(q(z)\\|p(z))}.

    Every point contributes ``num_particles`` draws ``z ~ q(z|x_i)`` from the guide's trace,
    which are draws from ``q(x, z)`` and so from ``q(z)``; ``log q(z|x_i)`` and ``log p(z)`` are the
    guide's and the model's own log-densities of those draws, and ``log q(z)`` is the exact
    ``N``-component mixture. The two terms are evaluated on the same draws, so the estimates add
    up to the average-KL estimate exactly, and each has a standard error of
    ``std / sqrt(num_draws)``. A large ``KL(q(z)||p(z))`` means prior samples land where the
    encoder never puts data ("holes"). Works on the local latent ``site`` (the only one by default).

    In a hierarchy the terms are those of the site's *marginals*: ``q(z_k|x_i)`` and ``p(z_k)``
    integrate over the other latents, by ``marginal_particles`` Monte Carlo draws of the site's
    parents where it has any (:mod:`pyro_vae.latent.marginals`); their error is in the result.

    Length: each term of the decomposition (Hoffman & Johnson 2016) computed in turn on the same draws, so
    they add up.

    ``mask``: True where ``x`` was observed, as for :func:`pyro_vae.log_likelihood`; the codes come from the
    observed entries.
    """
    positive_number(max_memory_mb, "max_memory_mb")
    positive_int(num_particles, "num_particles")
    positive_int(marginal_particles, "marginal_particles")
    bound = bind(model, x, guide=guide, covariates=covariates, plate=plate, global_values=global_values, mask=mask)
    program, data, sites = bound.program, bound.data, bound.sites
    name = sites.latent(site, tool="elbo_surgery")
    exact_densities = sites.guide_is_marginal(name) and sites.prior_is_marginal(name)
    with torch.no_grad(), isolated(seed), pyro.validation_enabled(False):
        aggregate = AggregatePosterior.from_program(program, data, site=name, seed=seed)
        guide_trace, model_trace = program.traces(
            data, num_particles, indices=torch.arange(len(data)), num_data=len(data), sites=sites
        )
        z = site_values(guide_trace.nodes[name], sites, program.plate)  # (K, N, L)
        errors: list[torch.Tensor] = []
        log_q_cond, log_p = (
            _site_log_density(program, data, sites, name, trace, z, in_guide, marginal_particles, errors)
            for trace, in_guide in ((guide_trace, True), (model_trace, False))
        )
        log_q_marg = aggregate.log_prob(z.reshape(-1, z.shape[-1]), max_memory_mb=max_memory_mb).double()
        marginal_prior = conditional_prior(program, data, name)
        log_p_marg = (
            log_p
            if marginal_prior is None
            else marginal_prior.log_prob(z.reshape(-1, z.shape[-1]), max_memory_mb=max_memory_mb).double()
        )
        exact = None
        if exact_densities:
            try:
                exact = float(kl_divergence(guide_trace.nodes[name]["fn"], model_trace.nodes[name]["fn"]).mean())
            except NotImplementedError:
                pass
    mi_terms = log_q_cond - log_q_marg
    marginal_terms = log_q_marg - log_p_marg
    conditioning_terms = log_p_marg - log_p
    total_terms = log_q_cond - log_p
    return ElboSurgery(
        average_kl=float(total_terms.mean()),
        average_kl_se=_mc_se(total_terms),
        mutual_information=float(mi_terms.mean()),
        mutual_information_se=_mc_se(mi_terms),
        marginal_kl=float(marginal_terms.mean()),
        marginal_kl_se=_mc_se(marginal_terms),
        average_kl_exact=exact,
        max_mutual_information=math.log(len(data)),
        num_points=len(data),
        num_draws=int(total_terms.numel()),
        site=name,
        marginal_particles=0 if exact_densities else marginal_particles,
        marginal_density_se=float(torch.cat(errors).pow(2).mean().sqrt()) if errors else 0.0,
        conditional_prior=marginal_prior is not None,
        prior_conditioning=float(conditioning_terms.mean()),
        prior_conditioning_se=_mc_se(conditioning_terms) if marginal_prior is not None else 0.0,
    )


def _site_log_density(program, data, sites, name, trace, z, in_guide, marginal_particles, errors) -> torch.Tensor:
    """Per-draw ``log q(z_k|x_i)`` or ``log p(z_k)``, flattened: the traced site's own density where it
    has no latent parents, else the Monte Carlo marginal (its errors appended to ``errors``)."""
    marginal = sites.guide_is_marginal(name) if in_guide else sites.prior_is_marginal(name)
    if marginal:
        return per_point(trace.nodes[name], sites, program.plate, z.shape[0], len(data)).reshape(-1).double()
    log_density, se = marginal_log_density(program, data, name, z, in_guide=in_guide, num_draws=marginal_particles)
    errors.append(se.reshape(-1))
    return log_density.reshape(-1)


@leaves_pyro_state_alone
def holes(
    model: Any,
    x: Any,
    *,
    guide: Callable | None = None,
    covariates: Mapping[str, Any] | None = None,
    site: str | None = None,
    plate: str | None = None,
    num_samples: int = 10_000,
    quantile: float = 0.01,
    seed: int = 0,
    max_memory_mb: float = MAX_MEMORY_MB,
    global_values: Any = None,
    mask: Any = None,
    marginal_particles: int = 1000,
) -> Holes:
    """Measure how well the aggregate posterior of ``x`` covers the prior.

    ``q(z)`` is the exact ``N``-component mixture of the rows' ``q(z|x_i)``; ``p(z)`` is the
    model's prior of the latent ``site`` (at the first row's covariates), or, where the prior
    depends on the row (a CVAE's ``p(z|x)``), its marginal ``(1/N) sum_i p(z|x_i)``, exactly
    (``conditional_prior`` says which). ``num_samples`` draws
    from ``q(z)`` and as many from ``p(z)`` give

    .. math::

        \\mathrm{KL}(q\\|p) \\approx \\overline{\\log q(z) - \\log p(z)}_{z \\sim q}, \\qquad
        \\mathrm{KL}(p\\|q) \\approx \\overline{\\log p(z) - \\log q(z)}_{z \\sim p},

    and the hole share: the fraction of prior draws with ``log q(z)`` below the ``quantile`` of
    the leave-one-out density ``log q_{-i}(z)`` of the draws from ``q`` -- each code ``z ~ q(z|x_i)``
    scored by the mixture of the *other* rows, as a code of a new data point would be. That is the
    density 99% (by default) of new codes from the data distribution exceed, so a prior without
    holes gets a share equal to ``quantile``, and so do held-out codes. (Scoring a code with its
    own component included sets the bar far too high: 73% of held-out Fashion-MNIST codes fell
    below it.)

    In a hierarchy both distributions are the site's marginals: prior draws are ancestral, and
    where the site has latent parents ``log p(z_k)`` is a ``marginal_particles``-draw Monte Carlo
    mixture and ``q(z_k|x_i)`` a mixture over draws of its guide parents
    (:meth:`AggregatePosterior.from_program`).

    ``mask``: True where ``x`` was observed, as for :func:`pyro_vae.log_likelihood`; the codes come from the
    observed entries.
    """
    positive_number(max_memory_mb, "max_memory_mb")
    if positive_int(num_samples, "num_samples") < 2:
        raise ValueError(f"num_samples must be an integer >= 2, got {num_samples!r}.")
    if not 0 < quantile < 1:
        raise ValueError(f"quantile must lie strictly between 0 and 1, got {quantile!r}.")
    bound = bind(model, x, guide=guide, covariates=covariates, plate=plate, global_values=global_values, mask=mask)
    program, data = bound.program, bound.data
    name = bound.sites.latent(site, tool="holes")
    if len(data) < 2:
        raise ValueError("holes needs at least two rows: the hole threshold leaves each row's own code out.")
    with torch.no_grad():
        aggregate = AggregatePosterior.from_program(program, data, site=name, seed=seed)
        with isolated(seed + 2):
            prior = prior_of(program, data, site=name, marginal_particles=marginal_particles)
        from_q, rows = aggregate.sample_with_components(num_samples, seed=seed)
        with isolated(seed + 1):
            from_p = prior.sample((num_samples,))
        log_q_at_q = aggregate.log_prob(from_q, max_memory_mb=max_memory_mb).double()
        leave_one_out = aggregate.log_prob(from_q, max_memory_mb=max_memory_mb, leave_out=rows).double()
        log_q_at_p = aggregate.log_prob(from_p, max_memory_mb=max_memory_mb).double()
        (log_p_at_q, se_q), (log_p_at_p, se_p) = (_prior_log_prob(prior, z) for z in (from_q, from_p))
        q_minus_p = log_q_at_q - log_p_at_q
        p_minus_q = log_p_at_p - log_q_at_p
    threshold = torch.quantile(leave_one_out, quantile)
    below = (log_q_at_p < threshold).double()
    share = float(below.mean())
    return Holes(
        kl_q_p=float(q_minus_p.mean()),
        kl_q_p_se=_mc_se(q_minus_p),
        kl_p_q=float(p_minus_q.mean()),
        kl_p_q_se=_mc_se(p_minus_q),
        hole_share=share,
        hole_share_se=proportion_se(share, num_samples),
        threshold=float(threshold),
        quantile=float(quantile),
        num_samples=num_samples,
        site=name,
        prior_density_se=float(torch.cat([se_q, se_p]).pow(2).mean().sqrt()),
        conditional_prior=isinstance(prior, AggregatePosterior),
    )


def _prior_log_prob(prior, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``log p(z)`` in float64 and its Monte Carlo error (zeros for an exact density)."""
    if isinstance(prior, AncestralPrior):
        log_p, se = prior.log_prob_and_se(z)
        return log_p.double(), se.double()
    log_p = prior.log_prob(z).double()
    return log_p, torch.zeros_like(log_p)


@leaves_pyro_state_alone
def active_units(
    model: Any,
    x: Any,
    *,
    guide: Callable | None = None,
    covariates: Mapping[str, Any] | None = None,
    site: str | None = None,
    plate: str | None = None,
    threshold: float = 0.01,
    batch_size: int = 4096,
    global_values: Any = None,
    mask: Any = None,
) -> ActiveUnits:
    """Count the latent dimensions ``u`` with ``Cov_x(E_q[z_u|x]) > threshold`` over the rows of ``x``.

    Burda, Grosse & Salakhutdinov (2016, section 5.2) call such a dimension active; the others
    carry no information about ``x`` and their ``q(z_u|x)`` stays at the prior. ``E_q[z|x]`` is the
    guide's closed-form mean, or a Monte Carlo average where it has none (flow guides); the
    variance of such averages inflates ``Cov_x`` by ``E_x[Var_q(z_u|x)] / draws``, which is
    subtracted.

    ``mask``: True where ``x`` was observed, as for :func:`pyro_vae.log_likelihood`; the codes come from the
    observed entries.
    """
    if not threshold > 0:
        raise ValueError(f"threshold must be positive, got {threshold!r}.")
    bound = bind(model, x, guide=guide, covariates=covariates, plate=plate, global_values=global_values, mask=mask)
    program, data = bound.program, bound.data
    if len(data) < 2:
        raise ValueError("active_units needs at least two data points to measure a variance.")
    name = bound.sites.latent(site, tool="active_units")
    means, noise = latent_means(program, data, name, batch_size=batch_size)
    means, noise = means.reshape(len(data), -1), noise.reshape(len(data), -1)
    variance = (means.double().var(dim=0, correction=1) - noise.double().mean(0)).clamp(min=0)
    return ActiveUnits(site=name, variance=variance, active=variance > threshold, threshold=float(threshold))

"""How good is ``q(z|x)``, and what do the samples look like? Posterior and sample diagnostics.

* :func:`elbo_surgery` -- split the average KL term of the ELBO into the mutual information
  between ``x`` and ``z`` and the divergence of the aggregate posterior from the prior;
* :func:`holes` -- how much of the prior's mass falls where the aggregate posterior has none;
* :func:`active_units` -- latent dimensions whose posterior mean varies with the data;
* :func:`pareto_k_report` -- Pareto ``k`` of each point's importance weights (PSIS), in words;
* :func:`amortization_gap` -- how much ELBO the encoder leaves on the table, per point;
* :func:`posterior_predictive_check` -- statistics of replicated data against the data's, with
  posterior-predictive p-values and the coverage of predictive intervals (:mod:`.criticism`);
* :mod:`~pyro_vae.diagnostics.quality` -- sample quality (FID-like distance, precision and recall,
  data copying); :mod:`~pyro_vae.diagnostics.plots` -- figures.

Each binds its arguments through :func:`pyro_vae.program.bind` (so a program with latent sites
outside the data plate needs ``global_values=``, as :func:`pyro_vae.log_likelihood` does) and
returns a small result object with the numbers, their Monte Carlo or sampling errors, and a
``summary()`` dict ready for JSON."""

from . import quality  # noqa: F401 -- pyro_vae.diagnostics.quality, as documented
from .amortization import AmortizationGap, amortization_gap
from .criticism import STATISTICS, PredictiveCheck, StatisticCheck, posterior_predictive_check
from .pareto import ParetoReport, pareto_k_report
from .posterior import ActiveUnits, ElboSurgery, Holes, active_units, elbo_surgery, holes

__all__ = [
    "active_units",
    "ActiveUnits",
    "amortization_gap",
    "AmortizationGap",
    "elbo_surgery",
    "ElboSurgery",
    "Holes",
    "holes",
    "pareto_k_report",
    "posterior_predictive_check",
    "PredictiveCheck",
    "STATISTICS",
    "StatisticCheck",
    "ParetoReport",
]

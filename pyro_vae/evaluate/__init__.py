"""Which model is better? Held-out ``log p(x)`` with its errors, and rankings.

* :mod:`~pyro_vae.evaluate.estimate` -- :func:`log_likelihood` by importance sampling or AIS;
* :mod:`~pyro_vae.evaluate.ais` -- annealed importance sampling; :mod:`~pyro_vae.evaluate.bdmc` -- its bidirectional check;
* :mod:`~pyro_vae.evaluate.elbo` -- :func:`mean_elbo`, the per-point ELBO of a data set;
* :mod:`~pyro_vae.evaluate.result` -- :class:`LogLikelihood`, the per-point result;
* :mod:`~pyro_vae.evaluate.ranking` -- :func:`compare` and its plot;
* :mod:`~pyro_vae.evaluate.baselines` -- closed-form baselines;
* :mod:`~pyro_vae.evaluate.statistics` -- standard errors."""

from ..program.chunks import chunk_plan
from ..program.weights import log_weights
from .bdmc import BDMC, bdmc
from .elbo import mean_elbo, mean_elbo_of
from .estimate import METHODS, describe_observed, doubling_gain, log_likelihood, pareto_k
from .ranking import compare, plot_comparison
from .result import LogLikelihood

__all__ = [
    "BDMC",
    "bdmc",
    "chunk_plan",
    "compare",
    "describe_observed",
    "doubling_gain",
    "log_likelihood",
    "log_weights",
    "mean_elbo",
    "mean_elbo_of",
    "LogLikelihood",
    "METHODS",
    "pareto_k",
    "plot_comparison",
]

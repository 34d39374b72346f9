"""Objectives: what training maximises, defined once.

* :mod:`~pyro_vae.objectives.elbos` -- :func:`make_objective` (Pyro's ``Trace_ELBO``,
  ``TraceMeanField_ELBO``, ``TraceEnum_ELBO`` by name), :class:`DirectTraceELBO` (a VAE's ELBO from its
  parts) and :func:`training_objective` (what ``fit`` picks);
* :mod:`~pyro_vae.objectives.importance_weighted` -- :class:`ImportanceWeightedELBO`, the per-point
  importance-weighted bound (IWAE, and its DReG gradients)."""

from .elbos import ENUMERATING, IMPORTANCE_WEIGHTED, OBJECTIVES, DirectTraceELBO, make_objective, training_objective
from .importance_weighted import ImportanceWeightedELBO

__all__ = [
    "DirectTraceELBO",
    "ENUMERATING",
    "IMPORTANCE_WEIGHTED",
    "ImportanceWeightedELBO",
    "make_objective",
    "OBJECTIVES",
    "training_objective",
]

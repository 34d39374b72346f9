"""Training: :func:`fit` and the pieces :func:`pyro_vae.fit` is built from, each usable and testable alone.

* :class:`ObjectiveStep` -- one optimisation step: a Pyro objective's ``differentiable_loss``
  (``Trace_ELBO``, ``TraceMeanField_ELBO`` or the per-point importance-weighted bound) and a
  ``torch.optim.Adam`` over the model's parameters;
* :class:`KLWarmup` -- the KL weight of every step;
* :func:`epoch_order` and :func:`epoch_values` -- each epoch's minibatch order and (dynamic)
  binarisation, seeded by ``(seed, epoch)``;
* :class:`Validation` -- the per-point validation ELBO of a prepared program;
* :class:`EarlyStopping` -- the best validation epoch and when to stop;
* :class:`Progress` -- a progress bar, one line per epoch, or nothing.

The loop that puts them together, with checkpoints (:mod:`pyro_vae.train.state`) and
divergence handling, is :func:`pyro_vae.train.loop.fit`.
"""

from ..objectives import ImportanceWeightedELBO, make_objective
from .early_stopping import EarlyStopping
from .epochs import epoch_order, epoch_values
from .loop import ELBOS, fit
from .progress import Progress
from .state import History
from .step import ObjectiveStep
from .validation import Validation
from .warmup import KLWarmup

__all__ = [
    "EarlyStopping",
    "ELBOS",
    "epoch_order",
    "epoch_values",
    "fit",
    "History",
    "ImportanceWeightedELBO",
    "KLWarmup",
    "make_objective",
    "ObjectiveStep",
    "Progress",
    "Validation",
]

"""The objectives ``fit`` trains, each defined once: Pyro's ELBOs by name, the per-point
importance-weighted bound (:mod:`.importance_weighted`), and the ELBO of a VAE computed from its parts
(:class:`DirectTraceELBO`). Training (:mod:`pyro_vae.train.step`) and the diagnostics
(:func:`pyro_vae.diagnostics.amortization_gap`) take them from here."""

from __future__ import annotations

from collections.abc import Callable

import torch
from pyro.infer import JitTrace_ELBO, Trace_ELBO, TraceEnum_ELBO, TraceMeanField_ELBO

from ..vae.own_elbo import elbo_terms
from .importance_weighted import ImportanceWeightedELBO

#: Objective names accepted by :func:`make_objective` (and ``fit(elbo=...)``).
OBJECTIVES = ("trace", "meanfield", "iwae", "iwae-dreg", "enum")
#: The objectives that sum discrete sites marked for enumeration (Pyro's ``TraceEnum_ELBO``).
ENUMERATING = ("enum",)
#: The objectives that maximise the K-sample importance-weighted ELBO rather than the ELBO.
IMPORTANCE_WEIGHTED = ("iwae", "iwae-dreg")


def make_objective(
    name: str, num_particles: int, *, plate: str = "data", max_plate_nesting: int = 1, jit: bool = False
):
    """The Pyro objective called ``name``: ``Trace_ELBO``, ``TraceMeanField_ELBO``, ``TraceEnum_ELBO``
    (``"enum"``, which sums the discrete sites marked for enumeration) or the per-point
    importance-weighted bound (``"iwae"``; ``"iwae-dreg"`` with doubly reparameterised gradients), with
    ``num_particles`` vectorised particles; with ``jit``, Pyro's
    compiled ``JitTrace_ELBO``.

    ``jit`` is refused for ``"meanfield"``: Pyro's ``JitTraceMeanField_ELBO`` (1.9) looks for its
    compiled function under a different attribute than the one it stores it in, so it compiles
    afresh at every step -- slower than the eager objective, and with different random draws.
    """
    if name not in OBJECTIVES:
        raise ValueError(f"elbo must be one of {sorted(OBJECTIVES)}, got {name!r}.")
    if jit and name != "trace":
        raise ValueError(f"jit=True compiles the 'trace' objective (JitTrace_ELBO); train elbo={name!r} without it.")
    if name in IMPORTANCE_WEIGHTED:
        return ImportanceWeightedELBO(
            num_particles, plate=plate, max_plate_nesting=max_plate_nesting, dreg=name == "iwae-dreg"
        )
    if name == "enum":
        return TraceEnum_ELBO(
            num_particles=num_particles, vectorize_particles=num_particles > 1, max_plate_nesting=max_plate_nesting
        )
    kind = JitTrace_ELBO if jit else Trace_ELBO if name == "trace" else TraceMeanField_ELBO
    options = {"ignore_jit_warnings": True} if jit else {}
    return kind(
        num_particles=num_particles,
        vectorize_particles=num_particles > 1,
        max_plate_nesting=max_plate_nesting,
        **options,
    )


class DirectTraceELBO:
    r"""Pyro's ``Trace_ELBO`` (or ``TraceMeanField_ELBO``) for a :class:`~pyro_vae.VAE`'s own model
    and guide, computed from the VAE's parts.

    Pyro's objectives run the guide and the model under effect handlers (a trace, a replay, the
    data plate's scaling) and sum the sites' log-densities. For a VAE that structure is known:
    :func:`~pyro_vae.vae.own_elbo.elbo_terms` makes the same draw of ``z`` and the same terms in plain
    PyTorch, and this sums them:

    .. math::

        \text{loss} = -\frac{s}{K} \sum_{k, b} \Big[ \log p(x_b \mid z_{kb}) + \beta\, r_{kb} \Big],
        \qquad s = N / B,

    with ``r = log p(z) - log q(z|x)`` at the draw (``Trace_ELBO``), or ``r = -KL(q || p)`` in
    closed form where there is one (``analytic_kl=True``, ``TraceMeanField_ELBO``); the minibatch
    of ``B`` of ``N`` points is scaled to the whole data set, ``beta`` is the KL weight. On one
    random stream the loss and its gradients equal Pyro's to rounding (tested for every prior,
    guide family and likelihood in ``tests/train/test_direct_elbo.py``); the step costs what a
    hand-written PyTorch loop costs (docs/benchmarks.md). :func:`pyro_vae.fit` uses it for the
    ``"trace"`` and ``"meanfield"`` objectives of a VAE with
    :attr:`~pyro_vae.VAE.computes_own_elbo`, unless ``direct=False``.
    """

    def __init__(self, vae, num_particles: int = 1, *, analytic_kl: bool = False):
        if not vae.computes_own_elbo:
            raise ValueError(
                f"{type(vae).__name__} rewrites its model or guide (or has a guide family of its own): "
                "its ELBO is computed by Pyro's objectives, not from its parts."
            )
        self.vae, self.num_particles, self.analytic_kl = vae, num_particles, analytic_kl

    def differentiable_loss(
        self,
        model: Callable,
        guide: Callable,
        x: torch.Tensor,
        y: torch.Tensor | None = None,
        size_factor: torch.Tensor | None = None,
        *,
        indices: torch.Tensor | None = None,
        num_data: int | None = None,
        kl_weight: float | torch.Tensor = 1.0,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Minus the ELBO estimate of the minibatch ``x`` (``(B, D)``), as Pyro's ``differentiable_loss``."""
        if model != self.vae.model or guide != self.vae.guide:
            raise ValueError("DirectTraceELBO computes the ELBO of its own VAE's model and guide only.")
        batch = x.shape[0]
        if indices is not None and len(indices) != batch:
            raise ValueError(f"indices holds {len(indices)} positions for a minibatch of {batch} points.")
        log_lik, log_ratio = elbo_terms(
            self.vae, x, y, size_factor, mask=mask, num_particles=self.num_particles, analytic_kl=self.analytic_kl
        )
        scale = (num_data if num_data is not None else batch) / batch  # what the data plate scales by
        if not (isinstance(kl_weight, float) and kl_weight == 1.0):
            log_ratio = log_ratio * kl_weight
        # One sum over points (and particles), scaled once: the value of Pyro's site-by-site sum up
        # to rounding, in fewer operations. A closed-form KL of shape (B,) counts once per particle.
        return (log_lik + log_ratio).sum() * (-scale / self.num_particles)


def training_objective(settings, *, vae=None, plate: str = "data", max_plate_nesting: int = 1):
    """The objective ``fit`` trains with ``settings`` (a :class:`~pyro_vae.train.settings.TrainSettings`):
    :class:`DirectTraceELBO` for the ``"trace"`` and ``"meanfield"`` objectives of a ``vae`` that computes its own ELBO
    (unless ``settings.direct`` is False or ``jit`` asks for Pyro's compiled one), else
    :func:`make_objective`'s Pyro ELBO. ``vae`` is None for a hand-written program."""
    if (
        settings.direct
        and settings.elbo in ("trace", "meanfield")
        and not settings.jit
        and vae is not None
        and vae.computes_own_elbo
    ):
        return DirectTraceELBO(vae, settings.num_particles, analytic_kl=settings.elbo == "meanfield")
    return make_objective(
        settings.elbo, settings.num_particles, plate=plate, max_plate_nesting=max_plate_nesting, jit=settings.jit
    )

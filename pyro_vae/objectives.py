"""Training objectives beyond Pyro's ELBOs: the per-point importance-weighted bound (IWAE).

Pyro's ``RenyiELBO(alpha=0)`` is the importance-weighted bound of the *whole* program: one
log-sum-exp over particles of the joint log-weight of every point in the minibatch, which for a
minibatch of ``B`` independent points is a much looser bound than ``B`` separate ones. A VAE wants
one bound per data point (Burda et al. 2016, eq. 8),

.. math::

    \\mathcal{L}_K(x_i) = \\mathbb{E}\\Big[\\log \\frac{1}{K} \\sum_{k=1}^K
        \\frac{p(x_i, z_{ik})}{q(z_{ik} \\mid x_i)}\\Big], \\qquad z_{ik} \\sim q(z \\mid x_i),

summed over the minibatch and scaled by ``N / B`` like every plate-scaled log-density.
:class:`ImportanceWeightedELBO` is a :class:`pyro.infer.ELBO`: ``SVI`` drives it like
``Trace_ELBO``. ``K = 1`` is the ELBO itself; ``L_K`` rises towards ``log p(x)`` as ``K`` grows.
"""

from __future__ import annotations

import math

import torch
from pyro.infer import ELBO
from pyro.infer.enum import get_importance_trace


class ImportanceWeightedELBO(ELBO):
    """Minus the sum over data points of the ``K``-particle importance-weighted bound.

    Args:
        num_particles: ``K``, importance samples per data point (drawn in one vectorised pass).
        plate: name of the data plate; every latent site must lie inside it (global latents
            have no per-point bound).
        max_plate_nesting: plates the program nests (the particle dimension goes left of them).

    A site's ``poutine.scale`` other than the data plate's ``N / B`` (the KL weight of warm-up)
    multiplies its log-density inside each point's log-weight.
    """

    def __init__(self, num_particles: int = 8, *, plate: str = "data", max_plate_nesting: int = 1):
        super().__init__(num_particles=num_particles, max_plate_nesting=max_plate_nesting, vectorize_particles=True)
        self.plate = plate

    def _get_trace(self, model, guide, args, kwargs):
        return get_importance_trace("flat", self.max_plate_nesting, model, guide, args, kwargs)

    def _surrogate(self, model, guide, args, kwargs) -> tuple[torch.Tensor, float]:
        (model_trace, guide_trace), = self._get_traces(model, guide, args, kwargs)  # fmt: skip
        log_w = 0.0
        scale = None
        for trace, sign in ((model_trace, 1.0), (guide_trace, -1.0)):
            for name, site in trace.nodes.items():
                if site["type"] != "sample" or (sign < 0 and site["is_observed"]):
                    continue
                if sign < 0 and not site["fn"].has_rsample:
                    raise ValueError(f"The importance-weighted objective needs reparameterised guide sites; "
                                     f"{name!r} ({type(site['fn']).__name__}) has no rsample.")  # fmt: skip
                term, site_scale = self._per_point(name, site)
                scale = site_scale if scale is None else scale
                log_w = log_w + sign * term
        if scale is None:
            raise ValueError(f"No sample site lies inside the plate {self.plate!r}.")
        bound = torch.logsumexp(log_w, dim=0) - math.log(self.num_particles)  # (B,)
        loss = -scale * bound.sum()
        return loss, float(loss.detach())

    def _per_point(self, name, site) -> tuple[torch.Tensor, float]:
        """``(K, B)`` log-density of ``site`` (its extra scale included) and the plate's ``N / B``."""
        frames = {f.name: f for f in site["cond_indep_stack"]}
        frame = frames.get(self.plate)
        if frame is None:
            raise ValueError(f"The importance-weighted objective needs every sample site inside the plate "
                             f"{self.plate!r}; {name!r} lies outside it (a global latent). Train it with "
                             "elbo='trace'.")  # fmt: skip
        log_prob = site["log_prob"]
        batch = log_prob.shape[frame.dim]
        plate_scale = frame.size / batch
        # Pyro's particle plate (absent for one particle) sits left of every plate of the program.
        particles = frames.get("num_particles_vectorized")
        if particles is None:
            log_prob, particle_dim = log_prob.unsqueeze(0), 0
        else:
            particle_dim = particles.dim
        # Move (particles, data) to the front and sum every other plate dimension.
        log_prob = log_prob.movedim((particle_dim, frame.dim), (0, 1)).reshape(self.num_particles, batch, -1).sum(-1)
        # Pyro's log_prob already carries the site's scale: the plate's N / B times any other scale.
        return log_prob / plate_scale, plate_scale

    def loss(self, model, guide, *args, **kwargs) -> float:
        with torch.no_grad():
            return self._surrogate(model, guide, args, kwargs)[1]

    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        return self._surrogate(model, guide, args, kwargs)[0]

    def loss_and_grads(self, model, guide, *args, **kwargs) -> float:
        surrogate, loss = self._surrogate(model, guide, args, kwargs)
        surrogate.backward()
        return loss

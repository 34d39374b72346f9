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

With ``dreg=True`` the guide's gradient is the doubly reparameterised estimator of Tucker et al.
(2019, "Doubly reparameterized gradient estimators for Monte Carlo objectives", eq. 5): with
normalised weights :math:`\\tilde w_k = w_k / \\sum_j w_j`,

.. math::

    \\nabla_\\phi \\mathcal{L}_K = \\mathbb{E}\\Big[\\sum_k \\tilde w_k^2\\,
        \\frac{\\partial \\log w_k}{\\partial z_k} \\frac{\\partial z_k}{\\partial \\phi}\\Big],

the same expectation as the ordinary gradient without its score-function term. The ordinary
estimator's signal-to-noise ratio for the guide falls as ``K`` grows (Rainforth et al. 2018,
"Tighter variational bounds are not necessarily better"); DReG's stays well above it
(docs/results.md). The model's gradient is unchanged.
"""

from __future__ import annotations

import math

import torch
from pyro.distributions.util import scale_and_mask
from pyro.infer import ELBO
from pyro.infer.enum import get_importance_trace
from pyro.poutine.messenger import Messenger

from .._util.compat import active_plate_size


class ImportanceWeightedELBO(ELBO):
    """Minus the sum over data points of the ``K``-particle importance-weighted bound.

    Args:
        num_particles: ``K``, importance samples per data point (drawn in one vectorised pass).
        plate: name of the data plate; every latent site must lie inside it (global latents
            have no per-point bound).
        max_plate_nesting: plates the program nests (the particle dimension goes left of them).
        dreg: use the doubly reparameterised gradient for the guide (see the module docstring).
            The guide must have one latent site (a hierarchical guide's sites depend on each
            other in ways this estimator does not follow). Its density is evaluated a second time
            at the detached value; for a flow guide that means inverting the flow.

    A site's ``poutine.scale`` other than the data plate's ``N / B`` (the KL weight of warm-up)
    multiplies its log-density inside each point's log-weight.
    """

    def __init__(self, num_particles: int = 8, *, plate: str = "data", max_plate_nesting: int = 1, dreg: bool = False):
        super().__init__(num_particles=num_particles, max_plate_nesting=max_plate_nesting, vectorize_particles=True)
        if not isinstance(dreg, bool):
            raise ValueError(f"dreg must be True or False, got {dreg!r}.")
        self.plate, self.dreg = plate, dreg

    def _get_trace(self, model, guide, args, kwargs):
        # A trace frame records a subsample's size, not the plate's N: read N while the model runs.
        declared = _DeclaredSize(self.plate)
        traces = get_importance_trace("flat", self.max_plate_nesting, declared(model), guide, args, kwargs)
        self._declared_size = declared.size
        return traces

    def _surrogate(self, model, guide, args, kwargs) -> tuple[torch.Tensor, float]:
        ((model_trace, guide_trace),) = self._get_traces(model, guide, args, kwargs)
        log_w = 0.0
        scale = None
        latents = []  # the guide's sampled values, whose gradient DReG reweights
        for trace, sign in ((model_trace, 1.0), (guide_trace, -1.0)):
            for name, site in trace.nodes.items():
                if site["type"] != "sample" or (sign < 0 and site["is_observed"]):
                    continue
                if sign < 0 and not site["fn"].has_rsample:
                    raise ValueError(
                        f"The importance-weighted objective needs reparameterised guide sites; "
                        f"{name!r} ({type(site['fn']).__name__}) has no rsample."
                    )
                if sign < 0 and self.dreg:
                    site = {**site, "log_prob": _path_only(site)}
                    latents.append((name, site))
                term, site_scale = self._per_point(name, site, kwargs.get("num_data"))
                scale = site_scale if scale is None else scale
                log_w = log_w + sign * term
        if scale is None:
            raise ValueError(f"No sample site lies inside the plate {self.plate!r}.")
        if len(latents) > 1:
            raise ValueError(
                f"dreg=True handles guides with one latent site; this guide samples "
                f"{[name for name, _ in latents]}. Train without dreg."
            )
        if latents and torch.is_grad_enabled():
            self._reweight(latents, log_w)
        bound = torch.logsumexp(log_w, dim=0) - math.log(self.num_particles)  # (B,)
        loss = -scale * bound.sum()
        return loss, float(loss.detach())

    def _reweight(self, latents, log_w: torch.Tensor) -> None:
        """Multiply the gradient reaching each sampled ``z_k`` by its normalised weight, so the
        bound's ``sum_k w_k d log w_k`` becomes DReG's ``sum_k w_k^2 d log w_k`` along ``z``."""
        weights = torch.softmax(log_w.detach(), dim=0)  # (K, B)
        for name, site in latents:
            value = site["value"]
            if not value.requires_grad:
                continue
            batch = value.shape[: value.dim() - site["fn"].event_dim]
            expected = (self.num_particles, weights.shape[1]) if self.num_particles > 1 else (weights.shape[1],)
            if tuple(batch) != expected:
                raise ValueError(
                    f"dreg=True needs each guide site batched as (particles, data); {name!r} has batch "
                    f"shape {tuple(batch)}. Train without dreg."
                )
            per_value = weights.reshape(*batch, *([1] * site["fn"].event_dim))
            value.register_hook(lambda grad, w=per_value: grad * w)

    def _per_point(self, name, site, num_data: int | None = None) -> tuple[torch.Tensor, float]:
        """``(K, B)`` log-density of ``site`` (its extra scale included) and the plate's ``N / B``.

        ``N`` is ``num_data`` where the caller passes it (``fit`` does, and scales the program's plate
        to it), else the plate's declared size (``pyro.plate("data", N, subsample=rows)``); a plate
        without a size runs over the batch.
        """
        frames = {f.name: f for f in site["cond_indep_stack"]}
        frame = frames.get(self.plate)
        if frame is None:
            raise ValueError(
                f"The importance-weighted objective needs every sample site inside the plate "
                f"{self.plate!r}; {name!r} lies outside it (a global latent). Train it with "
                "elbo='trace'."
            )
        log_prob = site["log_prob"]
        batch = log_prob.shape[frame.dim]
        declared = getattr(self, "_declared_size", None) or batch
        plate_scale = (num_data if num_data is not None else declared) / batch
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


def _path_only(site) -> torch.Tensor:
    """The guide site's scaled log-density, with the same value, whose gradient reaches the guide's
    parameters only through the sampled value (the score term ``d log q / d phi`` at fixed ``z`` removed)."""
    fixed = scale_and_mask(site["fn"].log_prob(site["value"].detach()), site["scale"], site["mask"])
    return site["log_prob"] - fixed + fixed.detach()


class _DeclaredSize(Messenger):
    """Records the full size of the data plate (``N`` of a subsampling plate; ``None`` for a plate
    without a size) at the model's first site inside it."""

    def __init__(self, plate: str):
        super().__init__()
        self.plate, self.size = plate, None

    def _process_message(self, msg):
        if msg["type"] == "sample" and self.size is None and any(f.name == self.plate for f in msg["cond_indep_stack"]):
            self.size = active_plate_size(self.plate)

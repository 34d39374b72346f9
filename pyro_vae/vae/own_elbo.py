"""A VAE's ELBO and importance weights computed from its parts, without Pyro's effect handlers.

Pyro's objectives and the tools' importance sampling run the guide and the model under effect
handlers (a trace, a replay, the data plate's scaling) and read each site's log-density from the
traces. For a :class:`~pyro_vae.VAE` whose model and guide are its own
(:attr:`~pyro_vae.VAE.computes_own_elbo`) that structure is known, so the same quantities come
from its encoder, guide family, prior, decoder and likelihood directly:

.. math::

    z_{kb} \\sim q(z \\mid x_b), \\qquad
    \\log w_{kb} = \\log p(x_b \\mid z_{kb}) + \\underbrace{\\log p(z_{kb}) - \\log q(z_{kb} \\mid x_b)}_{r_{kb}} .

The densities are the programs' own objects -- :meth:`~pyro_vae.VAE.posterior`, ``vae.prior()``
and :meth:`~pyro_vae.VAE.observation`, the three calls the model and guide make -- and the steps
are theirs, in their order (the guide's draw, then the prior and the decoder), so on one random
stream the draws are the ones the traced programs make, the results equal theirs to rounding, and
no override of a prior, guide family or likelihood can reach one path and not the other (``tests/train/test_direct_elbo.py``,
``tests/evaluate/test_direct_weights.py``). Training uses :func:`elbo_terms` through
:class:`~pyro_vae.objectives.DirectTraceELBO`, importance sampling uses
:func:`importance_log_weights` through :attr:`~pyro_vae.program.Program.direct_weights`.
"""

from __future__ import annotations

import torch

from ..program.missing import mask_features
from ..program.protocol import Data


def elbo_terms(
    vae,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    size_factor: torch.Tensor | None = None,
    *,
    mask: torch.Tensor | None = None,
    num_particles: int = 1,
    analytic_kl: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(log p(x|z), r)`` at one reparameterised draw ``z ~ q(z|x)`` per point of ``x`` (``(B, D)``)
    and particle.

    ``r = log p(z) - log q(z|x)`` at the draw (``Trace_ELBO``'s term), or with ``analytic_kl=True``
    ``r = -KL(q(z|x) || p(z))`` where the pair has a closed form (``TraceMeanField_ELBO``'s; the draw
    otherwise). ``log p(x|z)`` has shape ``(B,)``, or ``(K, B)`` with ``num_particles=K > 1``; ``r``
    the same, or ``(B,)`` for a closed-form KL. ``-(N / B) sum[log p(x|z) + beta r] / K`` is the loss
    of Pyro's objective on a minibatch of ``B`` of ``N`` points with KL weight ``beta``.
    """
    y = vae._covariates(y, x.shape[0])
    posterior = vae.posterior(x, y, mask=mask)
    if not posterior.has_rsample:
        raise ValueError(
            f"The guide family {type(vae.guide_family).__name__} returns a distribution without rsample; "
            "train it through Pyro's objectives with fit(..., direct=False)."
        )
    z = posterior.rsample() if num_particles == 1 else posterior.rsample((num_particles,))
    prior = vae.prior()
    size = vae._size_factors(x, size_factor)
    log_ratio = None
    if analytic_kl:
        try:
            log_ratio = -torch.distributions.kl_divergence(posterior, prior)
        except NotImplementedError:  # no closed form for this pair: the draw, as TraceMeanField_ELBO
            pass
    if log_ratio is None:
        log_ratio = prior.log_prob(z) - posterior.log_prob(z)
    fn = vae.observation(vae.decode(z, y), size)
    return (fn if mask is None else mask_features(fn, mask)).log_prob(x), log_ratio


def importance_log_weights(vae, data: Data, num_particles: int) -> torch.Tensor:
    """``log w = log p(x|z) + log p(z) - log q(z|x)`` of ``S = num_particles`` draws for every row of
    ``data`` (its covariates and mask as the VAE's keyword arguments): shape ``(S, B)``."""
    log_lik, log_ratio = elbo_terms(vae, data.x, **data.covariates, mask=data.mask, num_particles=num_particles)
    return (log_lik + log_ratio).reshape(num_particles, len(data))

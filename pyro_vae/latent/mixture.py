"""A compact density for the aggregate posterior: a Gaussian mixture fitted after training.

The exact aggregate posterior ``q(z) = (1/N) sum_i q(z|x_i)`` keeps ``2 N L`` numbers. A mixture of
``K << N`` full-covariance Gaussians fitted to it keeps ``K (1 + L + L (L + 1) / 2)`` and samples
just as cheaply ("ex-post density estimation", Ghosh et al. 2020; a two-stage idea also in Dai &
Wipf 2019).

**What it is fitted to.** :meth:`LatentMixture.fit` fits to *draws* ``z ~ q(z|x_i)``, not to the
encoder means. Draws are samples from ``q(z)`` itself, so maximum likelihood on them minimises
``KL(q(z) || mixture)``: the mixture approximates the distribution the decoder was trained on.
Fitting to the means instead would approximate ``(1/N) sum_i delta(z - mu_i)`` and miss the
posterior spread, which matters when posteriors are wide (collapsed dimensions have ``mu_i``
near 0 but ``sigma_i`` near 1); Ghosh et al. fit means because their autoencoders are
deterministic.

The fitted mixture is an ``nn.Module`` of buffers: assigned to ``vae.latent_mixture`` it is part
of the VAE's state and configuration, so :func:`pyro_vae.save` writes it and
:func:`pyro_vae.load` restores it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from .._util.checks import positive_int, seed_value
from .._util.isolation import isolated, leaves_pyro_state_alone
from ..program.binding import bind
from ..program.sites import site_values
from .aggregate import MAX_SAMPLE_VALUES

COVARIANCE_TYPES = ("full", "diag")


class LatentMixture(nn.Module):
    """A ``K``-component Gaussian mixture over ``L``-dimensional codes.

    Buffers: ``weights`` ``(K,)``, ``loc`` ``(K, L)`` and ``scale_tril`` ``(K, L, L)``, the
    Cholesky factors of the component covariances (diagonal for ``covariance_type="diag"``).
    """

    def __init__(self, num_components: int, latent_dim: int, covariance_type: str = "full"):
        super().__init__()
        for value, name in ((num_components, "num_components"), (latent_dim, "latent_dim")):
            positive_int(value, name)
        if covariance_type not in COVARIANCE_TYPES:
            raise ValueError(f"covariance_type must be one of {COVARIANCE_TYPES}, got {covariance_type!r}.")
        self.num_components, self.latent_dim, self.covariance_type = num_components, latent_dim, covariance_type
        self.register_buffer("weights", torch.full((num_components,), 1.0 / num_components))
        self.register_buffer("loc", torch.zeros(num_components, latent_dim))
        self.register_buffer("scale_tril", torch.eye(latent_dim).expand(num_components, -1, -1).clone())

    def extra_repr(self) -> str:
        return (
            f"{self.num_components} components over {self.latent_dim} dimensions, {self.covariance_type} covariances, "
            f"largest weight {float(self.weights.max()):.3f}"
        )

    def config(self) -> dict:
        return {"num_components": self.num_components, "covariance_type": self.covariance_type}

    @classmethod
    @leaves_pyro_state_alone
    @torch.no_grad()
    def fit(
        cls,
        model: Any,
        x: Any,
        num_components: int,
        *,
        guide: Callable | None = None,
        covariates: Mapping[str, Any] | None = None,
        site: str | None = None,
        plate: str | None = None,
        covariance_type: str = "full",
        num_particles: int = 1,
        max_draws: int = 20_000,
        max_iter: int = 200,
        seed: int = 0,
        global_values: Any = None,
    ) -> LatentMixture:
        """Fit to draws ``z ~ q(z|x_i)`` from the guide's trace at the latent ``site``, for the rows of ``x``.

        Uses scikit-learn's EM (``GaussianMixture``, k-means initialisation, covariance floor
        ``1e-6``). At most ``max_draws`` draws are used (a seeded random subset of the points),
        since each EM step costs ``O(draws K L^2)``.
        """
        from sklearn.mixture import GaussianMixture

        bound = bind(model, x, guide=guide, covariates=covariates, plate=plate, global_values=global_values)
        program, data, sites = bound.program, bound.data, bound.sites
        name = sites.latent(site)
        latent_dim = int(sites.event_shapes[name].numel())
        mixture = cls(num_components, latent_dim, covariance_type)
        generator = torch.Generator().manual_seed(seed)
        points = min(len(data), max(1, max_draws // num_particles))
        rows = torch.randperm(len(data), generator=generator)[:points]
        with isolated(seed), pyro.validation_enabled(False):
            guide_trace, _ = program.traces(
                data.rows(rows), num_particles, indices=rows, num_data=len(data), sites=sites
            )
        draws = (
            site_values(guide_trace.nodes[name], sites, program.plate).reshape(-1, latent_dim).double().cpu().numpy()
        )
        if len(draws) < num_components:
            raise ValueError(f"Cannot fit {num_components} components to {len(draws)} draws; pass more data.")
        gmm = GaussianMixture(
            num_components, covariance_type=covariance_type, reg_covar=1e-6, max_iter=max_iter, random_state=seed
        ).fit(draws)
        covariances = torch.as_tensor(gmm.covariances_)
        if covariance_type == "diag":
            covariances = torch.diag_embed(covariances)
        mixture.weights.copy_(torch.as_tensor(gmm.weights_))
        mixture.loc.copy_(torch.as_tensor(gmm.means_))
        mixture.scale_tril.copy_(torch.linalg.cholesky(covariances))
        mixture.converged = bool(gmm.converged_)
        return mixture

    def distribution(self) -> dist.MixtureSameFamily:
        components = dist.MultivariateNormal(self.loc, scale_tril=self.scale_tril)
        return dist.MixtureSameFamily(dist.Categorical(probs=self.weights), components)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """``log`` density at ``z`` of shape ``(M, L)``; returns ``(M,)``."""
        return self.distribution().log_prob(z)

    def sample(self, num_samples: int, *, seed: int = 0) -> torch.Tensor:
        """Draws of shape ``(num_samples, L)`` from a private generator seeded by ``seed``
        (:meth:`distribution` gives the same mixture as a Pyro distribution). More numbers than one
        call of :meth:`AggregatePosterior.sample` may return are refused before any work."""
        positive_int(num_samples, "num_samples")
        if num_samples * self.latent_dim * (self.latent_dim + 1) > MAX_SAMPLE_VALUES:
            raise ValueError(
                f"{num_samples:,} draws of {self.latent_dim} dimensions need more than {MAX_SAMPLE_VALUES:,} numbers at "
                "once (each draw gathers its component's covariance factor); draw in parts, each with its own seed."
            )
        generator = torch.Generator().manual_seed(seed_value(seed) or 0)
        which = torch.multinomial(self.weights, num_samples, replacement=True, generator=generator)
        noise = torch.randn(num_samples, self.latent_dim, generator=generator, dtype=self.loc.dtype)
        return self.loc[which] + (self.scale_tril[which] @ noise.unsqueeze(-1)).squeeze(-1)

    @property
    def memory_bytes(self) -> int:
        """Bytes of the parameters a sampler needs: weights, means and covariance factors.

        A diagonal mixture needs only the diagonal of each factor, ``K (1 + 2 L)`` numbers.
        """
        per_component = (
            1
            + self.latent_dim
            + (self.latent_dim * (self.latent_dim + 1) // 2 if self.covariance_type == "full" else self.latent_dim)
        )
        return self.num_components * per_component * self.loc.element_size()

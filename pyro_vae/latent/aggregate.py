"""Distributions over the latent code ``z``: every source of new samples is one of them.

* :class:`AggregatePosterior` -- the exact ``q(z) = (1/N) sum_i q(z|x_i)`` of any guide whose
  ``q(z|x_i)`` is a diagonal Gaussian, or a diagonal Gaussian pushed through transforms shared by
  every point (an inverse autoregressive flow on top of the Gaussian, say);
* a subset's aggregate posterior is the same class built from the subset's rows;
* :meth:`pyro_vae.LatentMixture.distribution` -- a compact Gaussian mixture fitted to ``q(z)``.

All are :mod:`pyro.distributions` objects with ``event_shape == (L,)``: ``sample`` and
``log_prob`` work as usual, and :func:`pyro_vae.sample` decodes draws of any of them through the
model. The model's own prior is in :mod:`~pyro_vae.latent.priors`, the names accepted by
:func:`pyro_vae.sample` in :mod:`~pyro_vae.latent.sources`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from torch.distributions import constraints

from .._util.checks import positive_int, positive_number
from .._util.isolation import leaves_pyro_state_alone
from .._util.memory import MAX_MEMORY_MB
from .._util.memory import HeapGuard as _HeapGuard
from ..distributions.mixtures import component_log_densities, quadratic_terms
from ..program.binding import bind
from ..program.protocol import Data, Program
from .marginals import site_distribution

#: Float64 temporaries of N numbers per row of z that a chunk of log_prob holds at once.
_LOG_PROB_COPIES = 3


#: Most numbers (draws x latent dimensions) one call of :meth:`AggregatePosterior.sample` returns (1 GiB of float32).
MAX_SAMPLE_VALUES = 2**28


class AggregatePosterior(dist.TorchDistribution):
    """The aggregate posterior ``q(z) = (1/N) sum_i T_#N(z; mu_i, diag(sigma_i^2))``.

    An exact ``N``-component mixture: it stores ``loc`` and ``scale`` of shape ``(N, L)``
    (``2 N L`` numbers) and the guide's shared transforms ``T`` (none for a Gaussian guide).

    For a site whose guide distribution depends on other latents (``q(z2 | z1, x)`` in a
    hierarchy), ``q(z_k | x_i)`` is itself a mixture over the parents: each point contributes
    ``num_particles = M`` components ``q(z_k | pa_im, x_i)``, ``pa_im ~ q(pa | x_i)``, and the
    ``N M``-component mixture is an unbiased Monte Carlo estimate of the aggregate density
    (components ``i M`` to ``(i + 1) M - 1`` belong to point ``i``).
    ``log q(z)`` is evaluated in chunks so that no intermediate exceeds ``max_memory_mb``; with
    transforms, ``z`` is first mapped back through them (change of variables).
    """

    arg_constraints: dict = {}
    support = constraints.real_vector
    has_rsample = False

    def __init__(
        self,
        loc: torch.Tensor,
        scale: torch.Tensor,
        transforms=(),
        *,
        max_memory_mb: float = MAX_MEMORY_MB,
        num_particles: int = 1,
    ):
        if loc.ndim != 2 or loc.shape != scale.shape or loc.shape[0] == 0:
            raise ValueError(
                f"loc and scale must share a shape (N, L) with N >= 1; got {tuple(loc.shape)} and {tuple(scale.shape)}."
            )
        if not bool((scale > 0).all()):
            raise ValueError("Every component scale must be positive.")
        positive_number(max_memory_mb, "max_memory_mb")
        if loc.shape[0] % num_particles:
            raise ValueError(f"{loc.shape[0]} components do not split into points of {num_particles} draws each.")
        self.loc, self.scale = loc.detach(), scale.detach()
        self.num_particles = num_particles
        self.transforms = list(transforms)
        self.max_memory_mb = max_memory_mb
        super().__init__(batch_shape=torch.Size(), event_shape=torch.Size([loc.shape[1]]), validate_args=False)

    # ------------------------------------------------------------------ construction
    @classmethod
    @leaves_pyro_state_alone
    @torch.no_grad()
    def from_data(
        cls,
        model: Any,
        x: Any,
        *,
        guide: Callable | None = None,
        covariates: Mapping[str, Any] | None = None,
        site: str | None = None,
        plate: str | None = None,
        batch_size: int = 4096,
        global_values: Any = None,
        marginal_particles: int | None = None,
        seed: int = 0,
    ) -> AggregatePosterior:
        """Run the guide over the rows of ``x`` and keep every ``q(z|x_i)`` at the latent ``site``
        (``global_values`` as for :func:`pyro_vae.log_likelihood`).

        Where the guide's distribution at ``site`` depends on other latents, each point gives
        ``marginal_particles`` components, one per draw of those latents (seeded by ``seed``); by
        default enough for about 8,192 components in all (4 to 256 per point), since the Monte
        Carlo mixture's accuracy follows its total number of components.
        """
        positive_int(batch_size, "batch_size")
        bound = bind(model, x, guide=guide, covariates=covariates, plate=plate, global_values=global_values)
        return cls.from_program(
            bound.program,
            bound.data,
            site=site,
            batch_size=batch_size,
            marginal_particles=marginal_particles,
            seed=seed,
        )

    @classmethod
    @torch.no_grad()
    def from_program(
        cls,
        program: Program,
        data: Data,
        *,
        site: str | None = None,
        batch_size: int = 4096,
        marginal_particles: int | None = None,
        seed: int = 0,
    ):
        positive_int(batch_size, "batch_size")
        if marginal_particles is None:
            marginal_particles = min(256, max(4, math.ceil(8192 / len(data))))
        positive_int(marginal_particles, "marginal_particles")
        sites = program.sites(data)
        name = sites.latent(site, tool="The aggregate posterior")
        draws = 1 if sites.guide_is_marginal(name) else marginal_particles
        locs, scales, transforms = [], [], None
        with torch.random.fork_rng(devices=[]), pyro.validation_enabled(False):
            torch.manual_seed(seed)
            for start in range(0, len(data), batch_size):
                rows = torch.arange(start, min(start + batch_size, len(data)))
                chunk = data.rows(rows)
                if draws == 1:
                    trace = poutine.trace(program.guide).get_trace(
                        chunk.x, **program.arguments(program.guide, chunk, rows, len(data))
                    )
                    fn = trace.nodes[name]["fn"]
                else:
                    fn = site_distribution(program, chunk, name, draws, in_guide=True, indices=rows, num_data=len(data))
                loc, scale, shared = gaussian_parts(fn, name, len(rows), draws)
                if transforms is not None and any(a is not b for a, b in zip(transforms, shared)):
                    raise ValueError(REBUILT.format(site=name))
                transforms = shared
                locs.append(loc)
                scales.append(scale)
        return cls(torch.cat(locs), torch.cat(scales), transforms or (), num_particles=draws)

    def __repr__(self) -> str:
        flow = f", {len(self.transforms)} shared transform(s)" if self.transforms else ""
        per = f", {self.num_particles} components per point" if self.num_particles > 1 else ""
        return (
            f"AggregatePosterior({self.num_components} components over {self.latent_dim} dimensions{per}{flow}; "
            f"{self.memory_bytes / 2**20:.1f} MiB)"
        )

    # ------------------------------------------------------------------ properties
    @property
    def num_components(self) -> int:
        return self.loc.shape[0]

    @property
    def latent_dim(self) -> int:
        return self.loc.shape[1]

    @property
    def memory_bytes(self) -> int:
        """Bytes held by the component parameters (``O(N L)``), not counting the float64 terms a
        first ``log_prob`` caches (``2 N L + N`` more numbers)."""
        return self.loc.element_size() * self.loc.numel() * 2

    # ------------------------------------------------------------------ distribution
    def sample(self, sample_shape: int | torch.Size | tuple = torch.Size(), *, seed: int | None = None) -> torch.Tensor:
        """Draws of shape ``(*sample_shape, L)``: a uniform component, its Gaussian, the transforms.

        With ``seed`` the draws come from a private generator state and the global one is untouched.
        """
        return self.sample_with_components(sample_shape, seed=seed)[0]

    def sample_with_components(
        self, sample_shape: int | torch.Size | tuple = torch.Size(), *, seed: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Draws ``(*sample_shape, L)`` as :meth:`sample`, and the component (data row) each came from."""
        if isinstance(sample_shape, int):
            sample_shape = (positive_int(sample_shape, "num_samples"),)
        if seed is not None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                return self.sample_with_components(sample_shape)
        shape = torch.Size(sample_shape)
        count = int(math.prod(shape))
        if count * self.latent_dim > MAX_SAMPLE_VALUES:
            raise ValueError(
                f"{count:,} draws of {self.latent_dim} dimensions are {count * self.latent_dim:,} numbers, more than "
                f"one call draws ({MAX_SAMPLE_VALUES:,}); draw in parts (each call with its own seed)."
            )
        which = torch.randint(self.num_components, (count,), device=self.loc.device)
        noise = torch.randn(count, self.latent_dim, dtype=self.loc.dtype, device=self.loc.device)
        z = self.loc[which] + self.scale[which] * noise
        with torch.no_grad():
            for transform in self.transforms:
                z = transform(z)
        return z.reshape(*shape, self.latent_dim), which.reshape(shape)

    def log_prob(
        self, z: torch.Tensor, *, max_memory_mb: float | None = None, leave_out: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``log q(z)`` for ``z`` of shape ``(..., L)``; returns shape ``(...)``.

        Uses ``sum_l (u_l - mu_il)^2 / s_il^2 = u^2 . (1/s^2)_i - 2 u . (mu/s^2)_i + sum mu^2/s^2``
        as matrix products in float64, so memory is ``O(chunk * N)`` rather than ``O(M N L)``.

        With ``leave_out`` (component indices of shape ``(...)``), each ``z`` is scored by the
        mixture of the other ``N - 1`` points' components: the leave-one-out density of a code drawn
        from its own component, which stands for a code of a new data point.
        """
        if z.ndim < 1 or z.shape[-1] != self.latent_dim:
            raise ValueError(f"z must have shape (M, {self.latent_dim}), got {tuple(z.shape)}.")
        if leave_out is not None and (leave_out.shape != z.shape[:-1] or self.num_components < 2 * self.num_particles):
            raise ValueError("leave_out needs one component index per code and at least two points.")
        batch = z.shape[:-1]
        u, log_det = z.reshape(-1, self.latent_dim), 0.0
        with torch.no_grad():
            for transform in reversed(self.transforms):
                previous = transform.inv(u)
                log_det = log_det + _event_sum(transform.log_abs_det_jacobian(previous, u), u.shape[0])
                u = previous
        left_out = leave_out.reshape(-1).to(u.device) if leave_out is not None else None
        budget = self.max_memory_mb if max_memory_mb is None else positive_number(max_memory_mb, "max_memory_mb")
        log_q = self._mixture_log_prob(u, budget, left_out) - log_det
        return log_q.reshape(batch).to(z.dtype)

    def _mixture_log_prob(
        self, z: torch.Tensor, max_memory_mb: float, leave_out: torch.Tensor | None = None
    ) -> torch.Tensor:
        terms = self._quadratic_terms()
        # Temporaries per chunk row: the two products, their sum and logsumexp's shifted exponentials,
        # each N float64 numbers.
        chunk = max(1, int(max_memory_mb * 2**20 / (8 * _LOG_PROB_COPIES * self.num_components)))
        guard = _HeapGuard(allowance_mb=2 * max_memory_mb + 64)
        out = []
        for start in range(0, z.shape[0], chunk):
            zc = z[start : start + chunk].double()
            log_components = component_log_densities(zc, terms)  # (chunk, N)
            components = self.num_components
            if leave_out is not None:
                # Every component of the code's own point is left out (M of them for a hierarchy).
                point = (leave_out[start : start + chunk] // self.num_particles)[:, None]
                owner = torch.arange(components, device=zc.device)[None, :] // self.num_particles
                log_components = log_components.masked_fill(owner == point, -math.inf)
                components -= self.num_particles
            out.append(torch.logsumexp(log_components, dim=-1) - math.log(components))
            del log_components
            guard.check()
        return torch.cat(out)

    def _quadratic_terms(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``1/s^2``, ``mu/s^2`` (each ``(N, L)``) and the per-component constant, in float64, kept:
        they are part of the distribution (``O(N L)``, like ``loc`` and ``scale``), not of one call."""
        if getattr(self, "_terms", None) is None:
            self._terms = quadratic_terms(self.loc, self.scale)
        return self._terms

    def to_distribution(self) -> dist.TorchDistribution:
        """The same mixture as a :class:`pyro.distributions.MixtureSameFamily` (``O(M N L)`` memory)."""
        mixing = dist.Categorical(logits=torch.zeros(self.num_components, dtype=self.loc.dtype))
        mixture = dist.MixtureSameFamily(mixing, dist.Normal(self.loc, self.scale).to_event(1))
        return dist.TransformedDistribution(mixture, self.transforms) if self.transforms else mixture

    def expand(self, batch_shape, _instance=None):
        if torch.Size(batch_shape) != torch.Size():
            raise NotImplementedError("An AggregatePosterior has no batch dimensions; sample it with a sample shape.")
        return self


REBUILT = (
    "The guide's distribution at {site!r} is a TransformedDistribution whose transforms are rebuilt "
    "on every call (conditioned on x?). The exact aggregate posterior supports diagonal-Gaussian "
    "guides and diagonal Gaussians pushed through transforms shared by every point."
)


def gaussian_parts(fn, site: str, batch: int, draws: int = 1, *, what: str | None = None):
    """``loc``, ``scale`` ``(draws * batch, L)`` and shared transforms of a batched diagonal Gaussian
    (possibly masked by nothing, or pushed through transforms); anything else is refused by name."""
    transforms = []
    fn = _unmasked(fn, site)
    if isinstance(fn, torch.distributions.TransformedDistribution):
        transforms = list(fn.transforms)
        fn = fn.base_dist
    while isinstance(fn, (torch.distributions.Independent, dist.MaskedDistribution)):
        fn = _unmasked(fn.base_dist, site)
    if not isinstance(fn, torch.distributions.Normal):
        what = what or f"The guide's q({site}|x)"
        raise ValueError(
            f"{what} is a {type(fn).__name__}; the exact mixture over rows "
            "needs a diagonal Gaussian, possibly pushed through transforms shared by every point."
        )
    loc, scale = torch.broadcast_tensors(fn.loc, fn.scale)
    # (M, ..., B, L) with size-1 plates between (M = 1 without draws of parents): the M components of
    # each point end up together.
    if loc.numel() != draws * batch * loc.shape[-1] or (draws > 1 and loc.shape[0] != draws):
        expected = "(M, B, L)" if draws > 1 else "(B, L)"
        raise ValueError(f"q({site}|x) has parameters of shape {tuple(loc.shape)}; expected {expected} with B={batch}.")
    loc, scale = (t.reshape(draws, batch, -1).transpose(0, 1).reshape(draws * batch, -1) for t in (loc, scale))
    return loc, scale, transforms


def _unmasked(fn, site: str):
    """``fn`` without a ``.mask(...)`` that masks nothing; a mask that leaves rows out is refused."""
    if isinstance(fn, dist.MaskedDistribution):
        mask = fn._mask
        if isinstance(mask, torch.Tensor) and not bool(mask.all()):
            raise ValueError(
                f"The distribution at {site!r} is masked (.mask(...) or poutine.mask) for some rows; the mixture over "
                "rows needs every row's distribution. Pass only the rows the mask keeps."
            )
        if mask is False:
            raise ValueError(f"The distribution at {site!r} is masked out entirely; it has no rows to mix.")
        return fn.base_dist
    return fn


def _event_sum(log_det: torch.Tensor, rows: int) -> torch.Tensor:
    return log_det.reshape(rows, -1).sum(-1) if log_det.numel() > rows else log_det.reshape(rows)

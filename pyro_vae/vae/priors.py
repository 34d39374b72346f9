"""Priors ``p(z)``: a registry of small modules that return distributions over the latent code.

Registered priors:

* ``"normal"`` -- ``N(0, I)``;
* ``"learned_normal"`` -- ``N(mu, diag(sigma^2))`` with learned ``mu`` and ``sigma``;
* ``"mixture"`` -- a mixture of ``K`` diagonal Gaussians with learned weights, means and scales;
* ``"vamp"`` -- the VampPrior (Tomczak & Welling 2018): ``(1/K) sum_k q(z|u_k)`` for ``K`` learned
  pseudo-inputs ``u_k`` mapped through the model's own encoder;
* ``"flow"`` -- ``N(0, I)`` pushed through affine coupling layers (Dinh et al. 2017) built from
  :mod:`pyro.distributions.transforms`; both density and sampling are one pass.

Each prior returns a distribution with ``event_shape == (latent_dim,)`` and empty batch shape;
inside ``pyro.plate("data", ...)`` Pyro broadcasts it over the data points. Learned priors keep
their parameters as ``nn.Parameter`` attributes and are registered with ``pyro.module`` by the
model, so SVI trains them together with the networks.

Adding one is a few lines::

    @register_prior("student_t")
    class StudentTPrior(Prior):
        def distribution(self):
            return dist.StudentT(3.0, self.zeros, self.ones).to_event(1)
"""

from __future__ import annotations

from typing import Any

import pyro.distributions as dist
import pyro.distributions.transforms as T
import torch
from torch import nn
from torch.nn import functional as F

from .._util.checks import positive_int
from .._util.maths import inverse_softplus
from .._util.registry import registrar, with_defaults
from ..distributions.flows import reversing_stack
from ..distributions.mixtures import DiagonalNormalMixture
from .networks import mlp_parameter_count

PRIORS: dict[str, type[Prior]] = {}


register_prior = registrar(PRIORS, "prior")


def get_prior(spec: str | Prior, latent_dim: int, **kwargs: Any) -> Prior:
    """Return a prior from a registry name (with constructor ``kwargs``) or pass one through."""
    if isinstance(spec, Prior):
        if spec.latent_dim != latent_dim:
            raise ValueError(f"The prior has latent_dim={spec.latent_dim} but the VAE has latent_dim={latent_dim}.")
        return spec
    if not isinstance(spec, str) or spec not in PRIORS:
        raise ValueError(f"Unknown prior {spec!r}; choose one of {sorted(PRIORS)} or pass a pyro_vae.Prior instance.")
    return PRIORS[spec](latent_dim, **kwargs)


class Prior(nn.Module):
    """Base class for ``p(z)`` over ``latent_dim`` dimensions."""

    name: str = "custom"

    def __init__(self, latent_dim: int, **config: Any):
        super().__init__()
        self.latent_dim = positive_int(latent_dim, "latent_dim")
        self.config = config
        self.register_buffer("zeros", torch.zeros(latent_dim), persistent=False)
        self.register_buffer("ones", torch.ones(latent_dim), persistent=False)

    def distribution(self) -> dist.TorchDistribution:  # pragma: no cover
        raise NotImplementedError

    @classmethod
    def parameter_count(cls, latent_dim: int, input_dim: int, **config: Any) -> int:
        """An upper bound on the numbers a prior of this class holds, from its configuration alone (no
        module is built): a saved model's size check reads it. The base class allows a mean and a scale;
        a registered prior with more parameters states its own."""
        with_defaults(cls, config)  # refuses an option the constructor does not take
        return 2 * latent_dim

    def attach(self, encoder, input_dim: int, *, to_inputs=None) -> None:
        """Called once by the VAE with its encoder function ``(K, D) -> (loc, scale)``, the data size
        and ``to_inputs``, which maps data to what the encoder reads (the VAE's
        :meth:`~pyro_vae.VAE.scaled_inputs`); priors built on the encoder (the VampPrior) keep them,
        the others ignore them."""

    def forward(self) -> dist.TorchDistribution:
        return self.distribution()

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """``log p(z)`` of codes ``z`` of shape ``(..., L)``, shape ``(...)``: the density of the
        distribution the module returns (``self()``), the one the VAE's model samples from. Not a
        hook: override :meth:`distribution` (or :meth:`forward`) to change the prior."""
        return self().log_prob(z)


@register_prior("normal")
class StandardNormalPrior(Prior):
    """``p(z) = N(0, I)``."""

    def distribution(self):
        return dist.Normal(self.zeros, self.ones).to_event(1)


#: Learned scales never fall below this, so a component cannot collapse onto one code.
MIN_SCALE = 1e-3


@register_prior("learned_normal")
class LearnedNormalPrior(Prior):
    """``p(z) = N(mu, diag(sigma^2))`` with learned ``mu`` (init 0) and ``sigma`` (init 1)."""

    def __init__(self, latent_dim: int):
        super().__init__(latent_dim)
        self.loc = nn.Parameter(torch.zeros(latent_dim))
        self.raw_scale = nn.Parameter(torch.full((latent_dim,), inverse_softplus(1.0 - MIN_SCALE)))

    @property
    def scale(self) -> torch.Tensor:
        return F.softplus(self.raw_scale) + MIN_SCALE

    def distribution(self):
        return dist.Normal(self.loc, self.scale).to_event(1)


@register_prior("mixture")
class MixturePrior(Prior):
    """``p(z) = sum_k pi_k N(z; mu_k, diag(sigma_k^2))`` with ``K = num_components`` learned components.

    Means start as draws from ``N(0, I)`` (seeded by ``init_seed``) and scales at 1, so the
    initial prior is a spread-out version of ``N(0, I)``.
    """

    @classmethod
    def parameter_count(cls, latent_dim: int, input_dim: int, **config: Any) -> int:
        """``K (1 + 2 L)``: mixing logits, means and scales."""
        return with_defaults(cls, config)["num_components"] * (1 + 2 * latent_dim)

    def __init__(self, latent_dim: int, num_components: int = 10, init_seed: int = 0):
        super().__init__(latent_dim, num_components=positive_int(num_components, "num_components"), init_seed=init_seed)
        generator = torch.Generator().manual_seed(init_seed)
        self.logits = nn.Parameter(torch.zeros(num_components))
        self.loc = nn.Parameter(torch.randn(num_components, latent_dim, generator=generator))
        self.raw_scale = nn.Parameter(torch.full((num_components, latent_dim), inverse_softplus(1.0 - MIN_SCALE)))

    @property
    def scale(self) -> torch.Tensor:
        return F.softplus(self.raw_scale) + MIN_SCALE

    def distribution(self):
        return DiagonalNormalMixture(self.logits, self.loc, self.scale)


@register_prior("vamp")
class VampPrior(Prior):
    """VampPrior (Tomczak & Welling 2018): ``p(z) = (1/K) sum_k q(z | u_k)``.

    The ``K = num_components`` pseudo-inputs ``u_k`` are learned parameters in the encoder's input
    space (data as the VAE's :meth:`~pyro_vae.VAE.scaled_inputs` gives it to the encoder), mapped
    through the VAE's own encoder, so the prior is a mixture of the posteriors of ``K`` imagined
    data points. They start as uniform draws in ``[0, 1]`` (seeded by ``init_seed``); call
    :meth:`initialize_from` to start them at real data points instead.
    """

    @classmethod
    def parameter_count(cls, latent_dim: int, input_dim: int, **config: Any) -> int:
        """``K D``: the pseudo-inputs (the encoder is the VAE's own)."""
        return with_defaults(cls, config)["num_components"] * input_dim

    def __init__(self, latent_dim: int, num_components: int = 50, init_seed: int = 0):
        super().__init__(latent_dim, num_components=positive_int(num_components, "num_components"), init_seed=init_seed)
        self.num_components = num_components
        self.init_seed = init_seed
        self.pseudo_inputs: nn.Parameter | None = None
        # The encoder function and the map from data to its inputs, held outside the module tree:
        # the VAE owns the network.
        self._encoder: list = []

    def attach(self, encoder, input_dim: int, *, to_inputs=None) -> None:
        generator = torch.Generator().manual_seed(self.init_seed)
        self.pseudo_inputs = nn.Parameter(torch.rand(self.num_components, input_dim, generator=generator))
        self._encoder[:] = [encoder, to_inputs if to_inputs is not None else (lambda x: x)]

    @torch.no_grad()
    def initialize_from(self, x: torch.Tensor, *, seed: int = 0) -> None:
        """Set the pseudo-inputs to ``K`` rows of ``x`` (shape ``(N, D)``) drawn without replacement."""
        self._check_attached()
        assert self.pseudo_inputs is not None  # attached
        if x.ndim != 2 or x.shape[1] != self.pseudo_inputs.shape[1] or x.shape[0] < self.num_components:
            raise ValueError(
                f"x must have shape (N, {self.pseudo_inputs.shape[1]}) with N >= {self.num_components}, "
                f"got {tuple(x.shape)}."
            )
        rows = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))[: self.num_components]
        # Pseudo-inputs live where the encoder works: t(x) / input_scale.
        self.pseudo_inputs.copy_(self._encoder[1](x[rows]))

    def distribution(self):
        self._check_attached()
        loc, scale = self._encoder[0](self.pseudo_inputs)  # (K, L) each
        uniform = torch.zeros(self.num_components, device=loc.device, dtype=loc.dtype)
        return DiagonalNormalMixture(uniform, loc, scale)

    def _check_attached(self) -> None:
        if self.pseudo_inputs is None:
            raise RuntimeError("This VampPrior is not attached to a VAE yet; build the VAE with it first.")


@register_prior("flow")
class FlowPrior(Prior):
    """``z = f(e)``, ``e ~ N(0, I)``, with ``f`` a stack of ``num_flows`` affine coupling layers.

    Each layer (``pyro.distributions.transforms.affine_coupling``) leaves half of the coordinates
    unchanged and shifts and scales the other half by functions of the first half; a reversal of
    the coordinates between layers lets every coordinate be transformed. Both directions are one
    pass, so the density of replayed codes (needed by the ELBO) is as cheap as sampling.
    """

    @classmethod
    def parameter_count(cls, latent_dim: int, input_dim: int, **config: Any) -> int:
        """At most one MLP ``L -> hidden -> 2 L`` per coupling layer."""
        config = with_defaults(cls, config)
        return config["num_flows"] * mlp_parameter_count([latent_dim, *config["hidden_dims"], 2 * latent_dim])

    def __init__(self, latent_dim: int, num_flows: int = 4, hidden_dims: list[int] | tuple[int, ...] = (64, 64)):
        hidden_dims = [int(h) for h in hidden_dims]
        super().__init__(latent_dim, num_flows=positive_int(num_flows, "num_flows"), hidden_dims=hidden_dims)
        if latent_dim < 2:
            raise ValueError("The flow prior needs latent_dim >= 2: coupling layers split the coordinates in two.")
        self.couplings = nn.ModuleList(T.affine_coupling(latent_dim, hidden_dims=hidden_dims) for _ in range(num_flows))

    def distribution(self):
        transforms = reversing_stack(list(self.couplings), self.latent_dim, self.zeros.device)
        return dist.TransformedDistribution(dist.Normal(self.zeros, self.ones).to_event(1), transforms)

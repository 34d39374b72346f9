"""The VAE: a generative model ``p(x|z) p(z)`` and an amortized guide ``q(z|x)`` as Pyro programs.

.. math::

    p_\\theta(x, z) = p(z)\\, p_\\theta(x \\mid z), \\qquad
    q_\\phi(z \\mid x) = \\mathcal{N}(z;\\, \\mu_\\phi(x),\\, \\operatorname{diag} \\sigma_\\phi(x)^2)

Site names: the latent site is ``"z"`` and the observed site is ``"x"``, both inside
``pyro.plate("data", num_data, subsample=indices)``. A conditional VAE (``covariate_dim=K``) takes
covariates ``y`` of shape ``(B, K)`` (one-hot labels or continuous values) as a data-aligned
keyword argument; its encoder sees ``(x, y)`` and its decoder ``(z, y)`` (Sohn et al. 2015). When a minibatch of ``B`` points out of
``num_data`` is passed, every log-density inside the plate is scaled by ``num_data / B``, so the
minibatch ELBO is an unbiased estimate of the full-data ELBO.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from functools import partial
from typing import Any

import numpy as np
import pyro
import torch
from pyro import poutine
from torch import nn
from torch.distributions import constraints

from .._util.checks import as_tensor, nonnegative_int, positive_int, positive_number
from ..latent.mixture import LatentMixture
from ..likelihoods import Likelihood, get_likelihood
from ..likelihoods.distributions import Standardized
from ..program.missing import check_mask, fill_missing, mask_features
from ..program.protocol import Data, Program
from .config import describe, rebuild
from .exact import exact_posterior, linear_gaussian_parameters
from .guides import GuideFamily, get_guide
from .networks import MLPDecoder, MLPEncoder, flatten_leading
from .own_elbo import importance_log_weights
from .priors import Prior, get_prior

#: What the encoder can read of ``x`` (``VAE(input_transform=...)``): the values themselves, or
#: ``log(1 + x)`` (the default for unbounded count likelihoods, as in scVI).
INPUT_TRANSFORMS = ("none", "log1p")


def kl_scale(kl_weight: float | torch.Tensor):
    # Scaling both log p(z) and log q(z|x) by beta scales the ELBO's KL term by beta. A tensor weight
    # (a compiled objective's input) always scales, so the compiled graph does not depend on its value.
    if torch.is_tensor(kl_weight):
        return poutine.scale(scale=kl_weight)
    return contextlib.nullcontext() if kl_weight == 1.0 else poutine.scale(scale=kl_weight)


class VAE(nn.Module):
    """A variational autoencoder over data of shape ``(N, input_dim)``.

    Args:
        input_dim: number of features ``D`` per data point (pixels of a flattened image).
        latent_dim: dimension ``L`` of ``z``.
        hidden_sizes: hidden layer widths of the default MLP encoder and decoder; by default the
            likelihood's ``default_hidden_sizes``: ``(400,)``, ``(256,)`` for unbounded counts.
        activation: activation of the default MLPs (``"softplus"``, ``"relu"``, ...), or ``"gated"``
            for gated dense hidden layers (:class:`~pyro_vae.vae.networks.GatedDense`, the MLP of
            Tomczak & Welling 2018 and of the Exemplar VAE's density-estimation table).
        likelihood: a registry name (see :data:`pyro_vae.likelihoods.LIKELIHOODS`) or a
            :class:`~pyro_vae.likelihoods.Likelihood`.
        likelihood_kwargs: constructor arguments when ``likelihood`` is a name.
        prior: a registry name (see :data:`pyro_vae.vae.priors.PRIORS`) or a :class:`~pyro_vae.vae.priors.Prior`.
        prior_kwargs: constructor arguments when ``prior`` is a name.
        guide: the family of ``q(z|x)``: a registry name (see :data:`pyro_vae.vae.guides.GUIDES`:
            ``"normal"``, ``"iaf"``) or a :class:`~pyro_vae.vae.guides.GuideFamily`.
        guide_kwargs: constructor arguments when ``guide`` is a name.
        covariate_dim: ``K > 0`` makes the VAE conditional on covariates ``y`` of shape ``(B, K)``.
        standardize: model ``x' = (x - mean) / std`` per feature (statistics of the training data,
            set by :meth:`initialize_from_data`) and state every log-density in the units of ``x``
            through the exact change of variables (:class:`~pyro_vae.likelihoods.distributions.Standardized`).
            For real-valued densities (``normal``, ``laplace``, ``student_t``) on data of any scale.
        encoder: optional user module mapping ``(B, D + K) -> (loc, scale)``, each ``(B, L)``.
        decoder: optional user module mapping ``(B, L + K) -> (B, D * likelihood.params_per_feature)``.
            Networks only ever see two-dimensional inputs: the VAE flattens the particle
            dimensions the tools add in front.
        image_shape: optional ``(height, width)`` used by plots.
        input_scale: the encoder sees ``t(x) / input_scale``. Defaults to the likelihood's largest
            possible value (``total_count`` of a binomial, ``L - 1`` for ``L`` levels) when it has
            one, else 1: an MLP trains badly on raw 8-bit values.
        input_transform: ``t``, what the encoder reads of ``x``: ``"log1p"`` (``log(1 + x)``,
            the default for the unbounded count likelihoods ``poisson``, ``negative_binomial``
            and ``zero_inflated_negative_binomial``, as scVI's encoder does) or ``"none"`` (the
            default otherwise). Only the encoder's input changes; the likelihood scores ``x``
            itself. Saved with the model.
        missing: show the encoder which entries are missing: it sees ``(x * mask, mask)`` (MIWAE,
            Mattei & Frellsen 2019) rather than ``x * mask`` alone. Every VAE takes ``mask=`` (True
            where observed) in :func:`pyro_vae.fit` and the tools, and its likelihood then scores
            the observed entries only; without a mask every entry counts as observed.
    """

    def __init__(
        self,
        input_dim: int,
        latent_dim: int = 2,
        *,
        hidden_sizes: Sequence[int] | None = None,
        activation: str = "softplus",
        likelihood: str | Likelihood = "bernoulli",
        likelihood_kwargs: dict[str, Any] | None = None,
        prior: str | Prior = "normal",
        prior_kwargs: dict[str, Any] | None = None,
        guide: str | GuideFamily = "normal",
        guide_kwargs: dict[str, Any] | None = None,
        covariate_dim: int = 0,
        standardize: bool = False,
        encoder: nn.Module | None = None,
        decoder: nn.Module | None = None,
        image_shape: Sequence[int] | None = None,
        input_scale: float | None = None,
        missing: bool = False,
        input_transform: str | None = None,
    ):
        """Build the VAE's parts from the arguments above (see the class docstring).

        Length: one check per documented argument, then the parts built in the order they depend on each other
        (likelihood, prior, guide family, networks, the prior attached to the encoder).
        """
        super().__init__()
        if missing is not False and missing is not True:
            raise ValueError(f"missing must be True or False, got {missing!r}.")
        self.missing = missing
        input_dim, latent_dim = positive_int(input_dim, "input_dim"), positive_int(latent_dim, "latent_dim")
        if hidden_sizes is not None:
            hidden_sizes = [positive_int(h, "each of hidden_sizes") for h in hidden_sizes]
        if image_shape is not None:
            image_shape = tuple(positive_int(s, "each of image_shape") for s in image_shape)
        if image_shape is not None and int(np.prod(image_shape)) != input_dim:
            raise ValueError(f"image_shape {tuple(image_shape)} does not hold input_dim={input_dim} values.")
        nonnegative_int(covariate_dim, "covariate_dim")
        self.input_dim = int(input_dim)
        self.latent_dim = int(latent_dim)
        self.covariate_dim = int(covariate_dim)
        self.image_shape = tuple(int(s) for s in image_shape) if image_shape is not None else None

        self.likelihood = get_likelihood(likelihood, **(likelihood_kwargs or {}))
        self.likelihood.build(self.input_dim)
        if hidden_sizes is None:
            hidden_sizes = list(self.likelihood.default_hidden_sizes)
        if input_scale is None:
            input_scale = self.likelihood.max_level or 1.0
        self.input_scale = positive_number(input_scale, "input_scale")
        if input_transform is None:
            input_transform = self.likelihood.encoder_transform
        if input_transform not in INPUT_TRANSFORMS:
            raise ValueError(f"input_transform must be one of {INPUT_TRANSFORMS}, got {input_transform!r}.")
        if input_transform != "none" and standardize:
            raise ValueError("standardize=True and an input_transform cannot be combined; choose one.")
        self.input_transform = input_transform
        if standardize is not False and standardize is not True:
            raise ValueError(f"standardize must be True or False, got {standardize!r}.")
        self.standardize = standardize
        if standardize:
            if self.likelihood.support is not constraints.real or self.likelihood.is_discrete:
                raise ValueError(
                    f"standardize applies to real-valued densities (normal, laplace, student_t); the "
                    f"{self.likelihood.name!r} likelihood has support {self.likelihood.support}."
                )
            self.register_buffer("data_loc", torch.zeros(self.input_dim))
            self.register_buffer("data_scale", torch.ones(self.input_dim))
        if self.likelihood.uses_size_factors:
            # The training data's median total count: the size factor of generated points.
            self.register_buffer("library_median", torch.ones(()))
        self.prior = get_prior(prior, self.latent_dim, **(prior_kwargs or {}))
        self.guide_family = get_guide(guide, self.latent_dim, **(guide_kwargs or {}))
        if self.covariate_dim and self.prior.name == "vamp":
            raise ValueError(
                "The VampPrior's pseudo-inputs carry no covariates; use another prior with covariate_dim > 0."
            )
        output_dim = self.input_dim * self.likelihood.params_per_feature
        k = self.covariate_dim
        # "is None", not truthiness: a torch.compile'd module refuses len().
        self.encoder = (
            encoder
            if encoder is not None
            else MLPEncoder(self.input_dim * (2 if missing else 1) + k, self.latent_dim, hidden_sizes, activation)
        )
        self.decoder = (
            decoder if decoder is not None else MLPDecoder(self.latent_dim + k, output_dim, hidden_sizes, activation)
        )
        self.custom_networks = {"encoder": encoder is not None, "decoder": decoder is not None}
        self.prior.attach(flatten_leading(self.encoder), self.input_dim, to_inputs=self.scaled_inputs)
        #: Optional :class:`~pyro_vae.latent.mixture.LatentMixture` fitted to the codes after
        #: training; saved and loaded with the model.
        self.latent_mixture: LatentMixture | None = None
        self._architecture = {"hidden_sizes": hidden_sizes, "activation": activation}
        #: Set by :func:`pyro_vae.fit` and :func:`pyro_vae.load`: a trained model is never
        #: re-initialised from data.
        self.trained = False

    # ------------------------------------------------------------------ Pyro programs
    def model(
        self,
        x: torch.Tensor | None = None,
        y: torch.Tensor | None = None,
        size_factor: torch.Tensor | None = None,
        *,
        indices: torch.Tensor | None = None,
        num_data: int | None = None,
        kl_weight: float = 1.0,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Generative model ``z ~ p(z)``, ``x ~ p(x|z)`` (``p(x|z, y)`` for a conditional VAE).

        Args:
            x: observed batch of shape ``(B, D)``, or ``None`` to generate ``num_data`` points.
            y: covariates of shape ``(B, K)`` for a conditional VAE, else ``None``.
            size_factor: with a count likelihood built with ``size_factors=True``, each point's size
                factor (library size), shape ``(B,)``; by default the total count of each row of ``x``.
            indices: positions of the batch in the full data set (the plate's ``subsample``);
                defaults to ``0..B-1``.
            num_data: size ``N`` of the full data set; log-densities are scaled by ``N / B``.
            kl_weight: multiplies ``log p(z)`` (and the guide's ``log q(z|x)``), for KL warm-up.
            mask: True where ``x`` was observed, shape ``(B, D)``: only those entries are scored.

        Returns: the raw decoder output of shape ``(..., B, D * params_per_feature)``.
        """
        pyro.module("decoder", self.decoder)
        pyro.module("likelihood", self.likelihood)
        pyro.module("prior", self.prior)
        y = self._covariates(y, x.shape[0] if x is not None else num_data)
        size = self._size_factors(x, size_factor)
        with self._data_plate(x, indices, num_data):
            with kl_scale(kl_weight):
                z = pyro.sample("z", self.prior())
            raw = self.decode(z, y)
            fn = self.observation(raw, size)
            pyro.sample("x", fn if mask is None else mask_features(fn, mask), obs=x)
        return raw

    def guide(
        self,
        x: torch.Tensor,
        y: torch.Tensor | None = None,
        size_factor: torch.Tensor | None = None,
        *,
        indices: torch.Tensor | None = None,
        num_data: int | None = None,
        kl_weight: float = 1.0,
        mask: torch.Tensor | None = None,
    ) -> None:
        """Amortized posterior ``q(z|x)`` of the chosen family (``q(z|x, y)`` when conditional);
        arguments as in :meth:`model`."""
        pyro.module("encoder", self.encoder)
        pyro.module("guide_family", self.guide_family)
        y = self._covariates(y, x.shape[0])
        with self._data_plate(x, indices, num_data):
            posterior = self.posterior(x, y, mask=mask)
            with kl_scale(kl_weight):
                pyro.sample("z", posterior)

    def exact_guide(
        self,
        x: torch.Tensor,
        y: torch.Tensor | None = None,
        size_factor: torch.Tensor | None = None,
        *,
        indices: torch.Tensor | None = None,
        num_data: int | None = None,
        kl_weight: float = 1.0,
        mask: torch.Tensor | None = None,
    ) -> None:
        """The model's exact posterior ``p(z | x_obs)`` as a guide, for a VAE that is probabilistic
        PCA or factor analysis (:mod:`pyro_vae.vae.exact`; a ``ValueError`` for any other); arguments
        as in :meth:`model`. Tools that estimate the model's own conditionals draw from it."""
        with self._data_plate(x, indices, num_data):
            pyro.sample("z", exact_posterior(self, x, mask))

    # ------------------------------------------------------------------ the three densities
    # The model, the guide and the ELBO from the parts (own_elbo) all build p(z), q(z|x) and p(x|z)
    # through these three calls and nothing else, so an override of any hook of the prior, the guide
    # family or the likelihood (their distribution() or forward()) reaches every path alike.
    def posterior(
        self, x: torch.Tensor, y: torch.Tensor | None = None, *, mask: torch.Tensor | None = None
    ) -> pyro.distributions.TorchDistribution:
        """``q(z|x)`` (``q(z|x, y)``) for a batch ``x`` of shape ``(B, D)``: the guide family's
        distribution of the encoder's ``(loc, scale)``, batch shape ``(B,)``, event shape ``(L,)``."""
        return self.guide_family(*self.encode(x, y, mask=mask))

    def observation(self, raw: torch.Tensor, size: torch.Tensor | None = None) -> pyro.distributions.TorchDistribution:
        """``p(x|z)`` from the decoder's raw output, in the units of ``x`` (standardised if asked)."""
        fn = self.likelihood(raw, size)
        return Standardized(fn, self.data_loc, self.data_scale) if self.standardize else fn

    # ------------------------------------------------------------------ the ELBO from the parts
    @property
    def computes_own_elbo(self) -> bool:
        """Whether :func:`.own_elbo.elbo_terms` is this VAE's ELBO: true unless :meth:`model` or
        :meth:`guide` is another function than the one defined here (a subclass's, as in
        :class:`~pyro_vae.HierarchicalVAE`, or one set on the instance), or the guide family is not a
        registered (reparameterised) one or a subclass of one.

        Both paths read the densities through :meth:`posterior`, ``prior()`` and :meth:`observation`,
        so a subclass of a prior, guide family or likelihood that overrides their hooks changes both
        alike (``tests/train/test_one_density_path.py``)."""
        from .guides import GUIDES

        # The bound methods' functions, so a subclass, an instance attribute or a patched class all count.
        own = getattr(self.model, "__func__", None) is _MODEL and getattr(self.guide, "__func__", None) is _GUIDE
        return own and isinstance(self.guide_family, tuple(GUIDES.values()))

    def as_program(self, *, direct: bool = True) -> Program:
        """This VAE under the protocol every tool uses (:mod:`pyro_vae.program`).

        With ``direct`` (the default) and :attr:`computes_own_elbo`, importance weights come from
        the parts (:func:`.own_elbo.importance_log_weights`, the traced programs' values on the same
        draws); ``direct=False`` makes every tool trace the Pyro programs, e.g.
        ``log_likelihood(vae.as_program(direct=False), x)``."""
        return Program(
            self.model,
            self.guide,
            check=self.check_data,
            template=self._template,
            name=self.likelihood.name,
            direct_weights=partial(importance_log_weights, self) if direct and self.computes_own_elbo else None,
            guide_reads_mask=self.missing,
            exact_guide=self.exact_guide if linear_gaussian_parameters(self) is not None else None,
        )

    def _template(self, n: int) -> Data:
        # Rows to generate on: only their number matters, the observed site is unconditioned. Size
        # factors cannot come from unobserved counts: the training data's median stands in.
        zeros = torch.zeros(n, self.input_dim, device=self._device())
        if self.likelihood.uses_size_factors:
            return Data(zeros, {"size_factor": self.library_median.expand(n).clone()})
        return Data(zeros)

    def _size_factors(self, x, size_factor) -> torch.Tensor | None:
        if not self.likelihood.uses_size_factors:
            if size_factor is not None:
                raise ValueError("size_factor applies to count likelihoods built with size_factors=True.")
            return None
        if size_factor is not None:
            size = torch.as_tensor(size_factor, dtype=self._dtype(), device=self._device()).reshape(-1)
            if not bool(torch.isfinite(size).all()) or not bool((size > 0).all()):
                raise ValueError("size_factor must be finite and positive for every point.")
            return size
        if x is None:
            raise ValueError("Generating counts with size factors needs them: pass size_factor=...")
        return x.sum(-1).clamp(min=1.0)

    def _device(self) -> torch.device:
        return next(self.parameters()).device

    def _dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def _covariates(self, y, batch) -> torch.Tensor | None:
        if not self.covariate_dim:
            if y is not None:
                raise ValueError(
                    "This VAE has no covariates (covariate_dim=0); build it with covariate_dim=K to use y."
                )
            return None
        if y is None:
            raise ValueError(
                f"This VAE is conditional (covariate_dim={self.covariate_dim}): pass covariates "
                "y of shape (N, K), e.g. covariates={'y': pyro_vae.data.one_hot(labels, K)}."
            )
        y = torch.as_tensor(y, dtype=torch.get_default_dtype())
        if y.shape[-1] != self.covariate_dim or (batch is not None and y.ndim > 1 and y.shape[-2] != batch):
            raise ValueError(f"y must have shape ({batch}, {self.covariate_dim}), got {tuple(y.shape)}.")
        return y

    def _given_covariates(self, y) -> torch.Tensor:
        """The checked covariates of a conditional VAE (which always has them)."""
        covariates = self._covariates(y, None)
        assert covariates is not None, "only a conditional VAE has covariates"
        return covariates

    def _data_plate(self, x, indices, num_data):
        if x is None:
            if num_data is None:
                raise ValueError("Pass x, or num_data to say how many points to generate.")
            return pyro.plate("data", num_data)
        batch = x.shape[0]
        if indices is None:
            if num_data is None or num_data == batch:
                return pyro.plate("data", batch)
            indices = torch.arange(batch, device=x.device)
        return pyro.plate("data", num_data if num_data is not None else batch, subsample=indices)

    # ------------------------------------------------------------------ deterministic maps
    def encode(
        self, x: torch.Tensor, y: torch.Tensor | None = None, *, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(loc, scale)`` of the encoder's Gaussian, each of shape ``(..., B, L)``; the encoder sees
        ``x / input_scale`` (and ``y``), and with ``missing=True`` ``(x * mask, mask)``."""
        inputs = self.scaled_inputs(x)
        if mask is not None or self.missing:
            # Missing entries reach the encoder as zeros (the filled values are no data); with
            # missing=True it also sees the mask itself.
            observed = torch.ones_like(inputs) if mask is None else mask.to(inputs.dtype)
            inputs = torch.cat([inputs * observed, observed], dim=-1) if self.missing else inputs * observed
        if self.covariate_dim:
            inputs = torch.cat([inputs, self._given_covariates(y).expand(*inputs.shape[:-1], -1)], dim=-1)
        return flatten_leading(self.encoder)(inputs)

    def scaled_inputs(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` as the encoder reads it: standardised, or ``t(x) / input_scale`` with ``t`` the
        ``input_transform`` (``log(1 + x)`` or the identity)."""
        if self.standardize:
            return (x - self.data_loc) / self.data_scale
        if self.input_transform == "log1p":
            x = torch.log1p(x)
        return x if self.input_scale == 1.0 else x / self.input_scale

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Raw likelihood parameters for codes ``z`` of shape ``(..., L)`` (and covariates ``y``)."""
        if self.covariate_dim:
            z = torch.cat([z, self._given_covariates(y).expand(*z.shape[:-1], -1)], dim=-1)
        return flatten_leading(self.decoder)(z)

    def decode_mean(
        self, z: torch.Tensor, y: torch.Tensor | None = None, size_factor: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Likelihood mean ``E[x|z]`` of shape ``(..., D)`` for codes ``z`` of shape ``(..., L)``
        (at the given size factors, or the training data's median, for size-factor likelihoods)."""
        raw = self.decode(z, y)
        if self.likelihood.uses_size_factors:
            size = self.library_median if size_factor is None else torch.as_tensor(size_factor, dtype=raw.dtype)
            mean = self.likelihood.mean(raw, size.expand(raw.shape[:-1]))
        else:
            mean = self.likelihood.mean(raw)
        return self.data_loc + self.data_scale * mean if self.standardize else mean

    # ------------------------------------------------------------------ starting values
    def initialize_from_data(self, x: Any, *, mask: Any = None) -> None:
        """Start the parameters where the data ``x`` (shape ``(N, D)``) put them, before training.

        * Every likelihood: the decoder's output bias at each feature's mean through the link
          (``logit`` of the mean for a Bernoulli, the mean for a Gaussian, ...), and learned scales
          and concentrations at the data's spread (see ``Likelihood.initial_values``).
        * A linear decoder with a Gaussian likelihood and a standard normal prior is probabilistic
          PCA: it starts at the data's own maximum-likelihood solution (Tipping & Bishop 1999,
          ``W = U (Lambda - s^2)^(1/2)``, ``b`` the mean, ``s^2`` the mean discarded eigenvalue), and a
          linear encoder at its exact posterior, so training starts at the optimum.

        :func:`pyro_vae.fit` calls this once for a model it has not trained (``init_from_data``).
        A user decoder that ends in an ``nn.Linear`` of the likelihood's raw size (an ``nn.Linear``
        itself, or an ``nn.Sequential`` ending in one) gets the same start of that layer; any other
        keeps its initialisation, and only the likelihood's own parameters move.

        With ``mask`` (boolean, ``x``'s shape, True where observed; ``x`` may hold NaN elsewhere) only
        the observed entries count, as in ``fit(..., mask=)``: probabilistic PCA then starts at the
        maximum-likelihood solution of the observed entries, found by EM
        (:func:`~pyro_vae.distributions.linear_gaussian.ppca_missing`).
        """
        from .initialization import initialize_from_data

        if mask is None:
            initialize_from_data(self, x)
            return
        values = torch.as_tensor(x, dtype=torch.get_default_dtype())
        seen = check_mask(mask, values)
        initialize_from_data(self, fill_missing(values, seen), mask=seen)

    # ------------------------------------------------------------------ data checks
    def check_data(self, x: Any, what: str = "x") -> torch.Tensor:
        """Return ``x`` as a float tensor of shape ``(N, D)``, or raise ``ValueError`` saying why not.

        Accepts tensors, numpy arrays and pandas frames of shape ``(N, D)`` or ``(N, *image_shape)``
        with boolean, integer or floating values, converted to the model's floating type; complex
        values and other containers are refused. Checks that the data is not empty, is finite and
        lies in the likelihood's support.
        """
        x = as_tensor(x, what, dtype=self._dtype())
        if x.ndim < 2 or x.shape[0] == 0:
            raise ValueError(f"{what} must have shape (N, {self.input_dim}) with N >= 1, got {tuple(x.shape)}.")
        if x.ndim > 2:
            x = x.reshape(x.shape[0], -1)
        if x.shape[1] != self.input_dim:
            raise ValueError(
                f"{what} has {x.shape[1]} features per point but this VAE expects input_dim={self.input_dim}."
            )
        self.likelihood.check_values(x, what)
        if self.input_transform == "log1p" and float(x.min()) <= -1.0:
            raise ValueError(f"{what} has values <= -1, where log(1 + x) (input_transform='log1p') is undefined.")
        return x

    # ------------------------------------------------------------------ configuration
    def config(self) -> dict[str, Any]:
        """JSON-serialisable description from which :func:`pyro_vae.load` rebuilds the VAE (:mod:`.config`)."""
        return describe(self)

    @classmethod
    def from_config(cls, cfg: dict[str, Any], **networks: nn.Module) -> VAE:
        """Rebuild a VAE from :meth:`config`; user networks must be passed again as ``encoder=``/``decoder=``.

        A model saved from a subclass is rebuilt by that subclass (``MyVAE.from_config``, or
        ``pyro_vae.load(path, cls=MyVAE)``); its constructor must take the VAE's arguments.
        """
        return rebuild(cls, cfg, **networks)


# The programs computes_own_elbo recognises, as defined above (not as later patched or overridden).
_MODEL, _GUIDE = VAE.model, VAE.guide

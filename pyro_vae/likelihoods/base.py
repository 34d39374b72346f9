"""The likelihood base classes, the registry, and positive parameters (scales, concentrations).

A likelihood turns the decoder's raw output for a batch, shape ``(..., D * params_per_feature)``,
into a :mod:`pyro.distributions` object with ``event_shape == (D,)`` whose ``log_prob`` is the
exact ``log p(x|z)``. Each one declares

* ``support`` -- a :mod:`torch.distributions.constraints` constraint that data must satisfy
  (checked before any work, with a message that says how to fix the data);
* ``is_discrete`` -- ``True`` for a probability mass function, ``False`` for a density; the two
  are in different units and are only compared after dequantisation (see
  :class:`DensityLikelihood`);
* ``params_per_feature`` -- decoder outputs per feature: the likelihood's own parameters plus one
  for each positive parameter predicted by the decoder (see :class:`Positive`);
* :meth:`Likelihood.mean` -- ``E[x|z]``, the picture people want rather than a noisy sample.
"""

from __future__ import annotations

import math
from typing import Any

import pyro.distributions as dist
import torch
from torch import nn
from torch.distributions import constraints
from torch.nn import functional as F

from .._util.checks import positive_int
from .._util.maths import inverse_softplus
from .._util.registry import registrar
from .._util.value_checks import all_finite, in_support
from .distributions import Dequantized, level_mean

LIKELIHOODS: dict[str, type[Likelihood]] = {}

register_likelihood = registrar(LIKELIHOODS, "likelihood")

#: Where a positive parameter's value comes from, besides a fixed number.
POSITIVE_MODES = ("global", "feature", "decoder")


def get_likelihood(spec: str | Likelihood, **kwargs: Any) -> Likelihood:
    """Return a likelihood from a registry name (with constructor ``kwargs``) or pass one through."""
    if isinstance(spec, Likelihood):
        if kwargs:
            raise ValueError("Keyword arguments apply only when the likelihood is given by name.")
        return spec
    if not isinstance(spec, str) or spec not in LIKELIHOODS:
        raise ValueError(
            f"Unknown likelihood {spec!r}; choose one of {sorted(LIKELIHOODS)} or pass a pyro_vae.Likelihood instance."
        )
    cls = LIKELIHOODS[spec]
    if kwargs and cls.__init__ is Likelihood.__init__:
        raise ValueError(
            f"The {spec!r} likelihood takes no options, got {kwargs}; drop them or choose another "
            "likelihood (num_levels applies to densities and level models)."
        )
    try:
        return cls(**kwargs)
    except TypeError as error:  # an unknown keyword: say which likelihood and what it takes
        raise ValueError(f"Bad arguments for the {spec!r} likelihood: {error}.") from None


class Positive(nn.Module):
    """A positive parameter of a likelihood: a scale, a concentration, degrees of freedom.

    ``spec`` says where its value comes from:

    * a positive number -- fixed;
    * ``"global"`` -- one learned value shared by every feature;
    * ``"feature"`` -- one learned value per feature, shape ``(D,)``;
    * ``"decoder"`` -- predicted by the decoder for every point and feature (the decoder gets
      ``copies`` more outputs per feature).

    Learned values are ``floor + softplus(raw)``, so they never fall below ``floor``: a Gaussian
    scale that shrinks towards zero on a constant pixel would otherwise send the density to
    infinity. Learned values start at ``init``. ``"learned"`` is accepted as ``"global"``.

    With ``copies = K > 1`` (one value per mixture component) the value broadcasts against
    ``(..., D, K)``; otherwise against ``(..., D)``.
    """

    def __init__(self, name: str, spec: float | str, *, floor: float, init: float, copies: int = 1):
        super().__init__()
        if spec == "learned":
            spec = "global"
        fixed = isinstance(spec, (int, float)) and not isinstance(spec, bool)
        if fixed and not (float(spec) > 0 and math.isfinite(float(spec))):  # JSON's 1e400 is inf
            raise ValueError(f"{name} must be a finite positive number or one of {POSITIVE_MODES}, got {spec!r}.")
        if not fixed and spec not in POSITIVE_MODES:
            raise ValueError(f"{name} must be a positive number or one of {POSITIVE_MODES}, got {spec!r}.")
        if not (isinstance(floor, (int, float)) and floor >= 0 and math.isfinite(floor)):
            raise ValueError(f"min_{name} must be a finite number >= 0, got {floor!r}.")
        if not fixed and not (init > floor and math.isfinite(init)):
            raise ValueError(f"init_{name} ({init}) must exceed min_{name} ({floor}).")
        self.name, self.spec, self.floor, self.init = name, spec, float(floor), float(init)
        self.copies = positive_int(copies, "copies")
        self.raw: nn.Parameter | None = None
        if spec == "global":
            self.raw = nn.Parameter(torch.tensor(self._start()))

    def _start(self) -> float:
        return inverse_softplus(self.init - self.floor)

    @property
    def is_fixed(self) -> bool:
        return self.spec not in POSITIVE_MODES

    @property
    def decoder_outputs(self) -> int:
        """How many decoder outputs per feature this parameter takes."""
        return self.copies if self.spec == "decoder" else 0

    def build(self, input_dim: int) -> None:
        """Create the per-feature parameter once the number of features ``D`` is known."""
        if self.spec == "feature" and (self.raw is None or self.raw.shape[0] != input_dim):
            self.raw = nn.Parameter(torch.full((input_dim,), self._start()))

    def value(self, chunks: tuple[torch.Tensor, ...] = (), like: torch.Tensor | None = None) -> torch.Tensor:
        """The parameter's value; ``chunks`` are its decoder outputs (``"decoder"`` mode only)."""
        if self.is_fixed:
            kwargs = {"dtype": like.dtype, "device": like.device} if like is not None else {}
            return torch.tensor(float(self.spec), **kwargs)
        if self.spec == "decoder":
            values = [self.floor + F.softplus(chunk) for chunk in chunks]
            return values[0] if self.copies == 1 else torch.stack(values, dim=-1)
        if self.raw is None:
            raise RuntimeError(f"The per-feature {self.name!r} is not built; build the VAE with this likelihood first.")
        value = self.floor + F.softplus(self.raw)
        return value.unsqueeze(-1) if self.copies > 1 and value.ndim else value

    @torch.no_grad()
    def set_from(self, value: torch.Tensor, decoder_chunks: torch.Tensor | None = None) -> None:
        """Start a learned parameter at ``value`` (shape ``(D,)``, per feature): a global one at its
        root mean square, a per-feature one as it is, a decoder-predicted one through the decoder's
        output bias (``decoder_chunks``, this parameter's rows of it). Fixed values stay."""
        target = (value.double() - self.floor).clamp(min=1e-3 * max(self.floor, 1e-3)).to(value.dtype)
        if self.spec == "global" and self.raw is not None:
            self.raw.fill_(inverse_softplus(float(target.pow(2).mean().sqrt())))
        elif self.spec == "feature" and self.raw is not None:
            self.raw.copy_(inverse_softplus(target))
        elif self.spec == "decoder" and decoder_chunks is not None:
            decoder_chunks.copy_((target + torch.log(-torch.expm1(-target))).expand_as(decoder_chunks))

    def extra_repr(self) -> str:
        return f"{self.name}={self.spec!r}, floor={self.floor:g}"


class Likelihood(nn.Module):
    """Base class of observation models ``p(x|z)``.

    Subclasses implement :meth:`distribution` and set the class attributes below. Learned
    parameters are ordinary ``nn.Parameter`` attributes or :class:`Positive` parameters made with
    :meth:`positive`; the model registers the likelihood with ``pyro.module`` so SVI trains them.
    The keyword arguments given to ``__init__`` are the likelihood's JSON configuration, saved
    with the model.
    """

    name: str = "custom"
    support: constraints.Constraint = constraints.real
    is_discrete: bool = False
    #: Decoder outputs per feature for the likelihood's own parameters (means, logits, ...).
    base_params: int = 1
    #: Said after a support error: how to bring the data into the support.
    support_hint: str = ""

    def __init__(self, **config: Any):
        super().__init__()
        self.config = config
        self.input_dim: int | None = None
        self._positives: list[str] = []

    # ------------------------------------------------------------------ parameters
    def positive(self, name: str, spec: float | str, *, floor: float, init: float, copies: int = 1) -> Positive:
        """Add a :class:`Positive` parameter as the attribute ``name`` and return it."""
        parameter = Positive(name, spec, floor=floor, init=init, copies=copies)
        self.add_module(name, parameter)
        self._positives.append(name)
        return parameter

    @property
    def params_per_feature(self) -> int:
        """Decoder outputs per feature: :attr:`base_params` plus decoder-predicted positives."""
        return self.base_params + sum(getattr(self, name).decoder_outputs for name in self._positives)

    def build(self, input_dim: int) -> None:
        """Called by the VAE with the number of features ``D`` (creates per-feature parameters)."""
        self.input_dim = int(input_dim)
        for name in self._positives:
            getattr(self, name).build(self.input_dim)

    def check_width(self, raw: torch.Tensor) -> int:
        """Raise ``ValueError`` unless ``raw`` has ``D * params_per_feature`` columns; return the latter."""
        per_feature = self.params_per_feature
        if raw.shape[-1] % per_feature or (self.input_dim and raw.shape[-1] != self.input_dim * per_feature):
            expected = f"{self.input_dim} * {per_feature}" if self.input_dim else f"a multiple of {per_feature}"
            raise ValueError(
                f"The decoder gave {raw.shape[-1]} outputs per point; the {self.name!r} likelihood "
                f"needs {expected} (params_per_feature={per_feature})."
            )
        return per_feature

    def split(self, raw: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Cut ``raw`` of shape ``(..., D * params_per_feature)`` into the likelihood's parameters.

        Returns the :attr:`base_params` chunks of shape ``(..., D)`` in order, followed by the
        value of each positive parameter (in the order they were added).
        """
        per_feature = self.check_width(raw)
        chunks = raw.split(raw.shape[-1] // per_feature, dim=-1)
        values = list(chunks[: self.base_params])
        position = self.base_params
        for name in self._positives:
            parameter = getattr(self, name)
            taken = chunks[position : position + parameter.decoder_outputs]
            position += parameter.decoder_outputs
            values.append(parameter.value(taken, like=raw))
        return tuple(values)

    # ------------------------------------------------------------------ starting values
    def initial_values(self, x: torch.Tensor) -> tuple[list[torch.Tensor | None], dict[str, torch.Tensor]]:
        """What the data ``x`` (shape ``(N, D)``) say about the parameters before any training.

        Returns the decoder's raw outputs for the base parameters (one ``(D,)`` tensor per base
        chunk, ``None`` to leave a chunk alone) that reproduce each feature's mean through the link,
        and values ``(D,)`` for positive parameters (a scale at the data's spread). The default
        says nothing; likelihoods with a natural moment match override it.
        """
        return [None] * self.base_params, {}

    @torch.no_grad()
    def initialize_from(self, x: torch.Tensor, output_bias: torch.Tensor | None) -> None:
        """Start at :meth:`initial_values`: through ``output_bias`` (the decoder's last bias, shape
        ``(D * params_per_feature,)``, or ``None`` for a custom decoder) and the positive parameters."""
        base, positives = self.initial_values(x)
        chunks = output_bias.view(self.params_per_feature, -1) if output_bias is not None else None
        if chunks is not None:
            for row, value in enumerate(base):
                if value is not None:
                    chunks[row].copy_(value)
        position = self.base_params
        for name in self._positives:
            parameter = getattr(self, name)
            taken = chunks[position : position + parameter.decoder_outputs] if chunks is not None else None
            if name in positives:
                parameter.set_from(positives[name], taken)
            position += parameter.decoder_outputs

    # ------------------------------------------------------------------ the model
    def distribution(
        self, raw: torch.Tensor, size: torch.Tensor | None = None
    ) -> dist.TorchDistribution:  # pragma: no cover
        raise NotImplementedError

    def forward(self, raw: torch.Tensor, size: torch.Tensor | None = None) -> dist.TorchDistribution:
        """``p(x|z)`` from raw decoder outputs; ``size`` are the points' size factors, shape ``(..., B)``,
        for count likelihoods built with ``size_factors=True`` (library-size offsets)."""
        return self.distribution(raw) if size is None else self.distribution(raw, size=size)

    @property
    def uses_size_factors(self) -> bool:
        return bool(getattr(self, "size_factors", False))

    def mean(self, raw: torch.Tensor, size: torch.Tensor | None = None) -> torch.Tensor:
        """``E[x|z]`` of shape ``(..., D)``."""
        return self.distribution(raw).mean

    #: Largest value the data can take when it is bounded (used to scale the encoder's input).
    max_level: float | None = None
    #: What the encoder reads of ``x`` by default (:data:`pyro_vae.vae.model.INPUT_TRANSFORMS`):
    #: ``"log1p"`` for unbounded counts, whose raw values span orders of magnitude.
    encoder_transform: str = "none"
    #: Hidden layer widths of a VAE's default networks when ``hidden_sizes`` is not given.
    default_hidden_sizes: tuple[int, ...] = (400,)

    @property
    def measure(self) -> str:
        """``"mass"`` (log-probabilities) or ``"density"`` (log-densities)."""
        return "mass" if self.is_discrete else "density"

    def describe(self) -> dict[str, Any]:
        """The declarations in words: name, support, mass or density, event shape, parameters."""
        return {
            "name": self.name,
            "support": describe_support(self.support),
            "measure": self.measure,
            "event_shape": f"({self.input_dim if self.input_dim else 'D'},)",
            "params_per_feature": self.params_per_feature,
            "positive_parameters": {name: getattr(self, name).spec for name in self._positives},
        }

    def check_values(self, x: torch.Tensor, what: str = "data") -> None:
        """Raise ``ValueError`` unless every value of ``x`` (``(N, D)``) is finite and valid for this
        likelihood (:meth:`validate`), saying how many values are wrong and how to fix them.

        The common case, valid data, is checked in one pass (its minimum and maximum, plus an
        integrality check for whole-number supports: :mod:`pyro_vae._util.value_checks`, about 30
        times faster on large data than elementwise masks); a failing check leads to the
        elementwise one, which counts what is wrong. A subclass with its own :meth:`validate` gets
        the whole data.
        """
        support = self.support if type(self).validate is Likelihood.validate else None
        if all_finite(x) and (support is None or in_support(x, support)):
            if support is None:
                self.validate(x, what)
            return
        finite = torch.isfinite(x)
        if not bool(finite.all()):
            bad = x[~finite]
            kind = "NaN" if bool(torch.isnan(bad).any()) else "infinite"
            raise ValueError(f"{what} contains {bad.numel()} non-finite value(s) ({kind}); remove or impute them.")
        self.validate(x, what)

    def validate(self, x: torch.Tensor, what: str = "data") -> None:
        """Raise ``ValueError`` unless every value of ``x`` lies in :attr:`support`."""
        ok = self.support.check(x)
        if not bool(ok.all()):
            bad = x[~ok]
            raise ValueError(
                f"{what} has {bad.numel()} value(s) outside the support of the {self.name!r} "
                f"likelihood ({describe_support(self.support)}); for example {bad[0].item():g}. " + self.support_hint
            )

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Models saved by pyro_vae 0.1 kept the normal likelihood's scale as "raw_scale".
        legacy = prefix + "raw_scale"
        if legacy in state_dict and "scale" in self._positives:
            state_dict[prefix + "scale.raw"] = state_dict.pop(legacy)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class _OpenUnitInterval(constraints.Constraint):
    """Values strictly between 0 and 1 (the Beta density is infinite or zero at the ends)."""

    open_interval = (0.0, 1.0)  # read by the one-pass support check (pyro_vae._util.value_checks)

    def check(self, value):
        return (value > 0) & (value < 1)

    def __repr__(self):
        return "open_unit_interval"


open_unit_interval = _OpenUnitInterval()


def describe_support(support: constraints.Constraint) -> str:
    """A support constraint in words."""
    if support is constraints.boolean:
        return "values 0 or 1"
    if support is open_unit_interval:
        return "values strictly between 0 and 1"
    if support is constraints.nonnegative_integer:
        return "non-negative integers 0, 1, 2, ..."
    if isinstance(support, constraints._IntegerInterval):
        return f"integers {support.lower_bound} to {support.upper_bound}"
    if isinstance(support, constraints._Interval):
        return f"values in [{support.lower_bound}, {support.upper_bound}]"
    if support is constraints.real:
        return "finite real numbers"
    return str(support)


class DensityLikelihood(Likelihood):
    """A density; with ``num_levels=L`` it models integer levels ``0..L-1`` by uniform dequantisation.

    Without ``num_levels`` the likelihood is the density :meth:`density` of the data as given,
    with support :attr:`density_support`, and its log-densities are not comparable with the
    log-probabilities of a mass function.

    With ``num_levels = L`` the data must be integer levels ``k`` (8-bit pixels: ``L = 256``).
    The density ``p`` lives on ``[0, 1]`` and defines the mass function of the bins
    ``[k/L, (k+1)/L)``:

    .. math::

        P(k) = \\int_{[0,1)^D} p\\big((k + u)/L\\big)\\, L^{-D}\\, du
        \\;\\ge\\; \\exp \\mathbb{E}_u \\big[\\log p\\big((k + u)/L\\big) - D \\log L\\big],

    with ``u`` uniform on the unit cube (Theis, van den Oord & Bethge 2016). ``log_prob(k)``
    draws a fresh ``u`` on each call and returns ``log p((k+u)/L) - D log L``, a one-draw estimate
    of that lower bound in the same units (nats of probability) as a mass function on the same
    levels. Under importance sampling each particle gets its own ``u``, so the estimate of
    ``log P(k)`` tends to the exact value as particles grow. The likelihood is then a mass
    function (``is_discrete`` is ``True``); its samples are ``floor(L x)`` clipped to ``0..L-1``.
    """

    density_support: constraints.Constraint = constraints.real

    def __init__(self, num_levels: int | None = None, **config: Any):
        super().__init__(num_levels=num_levels, **config)
        if num_levels is not None:
            num_levels = positive_int(num_levels, "num_levels")
            if num_levels < 2:
                raise ValueError(f"num_levels must be at least 2, got {num_levels}.")
        self.num_levels = num_levels

    # Properties where the base class has plain attributes: each depends on num_levels here.
    @property
    def support(self) -> constraints.Constraint:
        if self.num_levels is None:
            return self.density_support
        return constraints.integer_interval(0, self.num_levels - 1)

    @property
    def is_discrete(self) -> bool:  # type: ignore[override]
        return self.num_levels is not None

    @property
    def max_level(self) -> float | None:  # type: ignore[override]
        return None if self.num_levels is None else float(self.num_levels - 1)

    @property
    def support_hint(self) -> str:  # type: ignore[override]
        if self.num_levels is None:
            return self.density_hint + (
                " For integer levels (8-bit pixels, say), pass num_levels=L to model them by uniform dequantisation."
            )
        return "Pass the data as integer levels (pyro_vae.data.load(..., values='levels'))."

    density_hint: str = ""

    def density(self, raw: torch.Tensor) -> dist.TorchDistribution:  # pragma: no cover
        """The density of ``x`` (on ``[0, 1]`` when dequantising), ``event_shape == (D,)``."""
        raise NotImplementedError

    def density_mean(self, raw: torch.Tensor) -> torch.Tensor:
        return self.density(raw).mean

    def distribution(self, raw):
        density = self.density(raw)
        return density if self.num_levels is None else Dequantized(density, self.num_levels)

    def mean(self, raw):
        """``E[x|z]``; on levels ``L E[x] - 1/2`` clipped to ``[0, L-1]`` (within half a level of
        the mean level for densities on ``[0, 1]``)."""
        mean = self.density_mean(raw)
        return mean if self.num_levels is None else level_mean(mean, self.num_levels)

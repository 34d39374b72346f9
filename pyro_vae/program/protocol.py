"""Pyro programs as every tool sees them: a model, a guide, one data plate, data-aligned arguments.

The protocol (see ``docs/programs.md``)::

    model(x, **covariates)      # any Pyro program; observed site(s) inside pyro.plate("data", ...)
    guide(x, **covariates)      # the amortized posterior of the model's latent sites

* ``x`` has the data points along its first dimension; every keyword argument in ``covariates``
  (labels, covariates, a second modality) is *data-aligned*: it has the same first dimension, and
  every tool slices it together with ``x`` when it works in chunks or minibatches.
* A callable that declares keyword parameters named ``indices`` and/or ``num_data`` receives the
  positions of the chunk's rows in the full data set and its size ``N``, so a model that looks up
  per-point tables by ``pyro.plate("data", num_data, subsample=indices)`` sees the right rows.
* Everything else comes from traces: observed sites are the model's observed sample sites inside
  the data plate; local latents are the guide's sample sites inside it; sites outside it are
  global. Log-densities and supports come from each site's ``fn``, predictive means from
  ``site["fn"].mean``.
* Tools draw many particles at once under ``pyro.plate("particles", S)`` placed left of every plate
  the program uses, so networks must accept extra leading dimensions, ``(..., B, L)``, as
  ``nn.Linear`` does. :class:`pyro_vae.vae.networks.FlattenLeading` adapts a network that takes only
  ``(B, L)`` (a convolutional decoder, say); the check runs before any work.
* Generation runs the model on a batch of rows with the sites read from ``x`` unconditioned
  (:attr:`~pyro_vae.program.sites.Sites.generated`): the values of ``x`` passed there are never
  scored, and an observed site read from a covariate (``obs=ys``) keeps the value passed.

A :class:`~pyro_vae.VAE` is one user of this protocol: its ``as_program()`` supplies the two
methods, its data checks and a template batch for generation; no tool knows more about it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pyro
import torch
from pyro import poutine
from pyro.poutine.enum_messenger import EnumMessenger
from pyro.poutine.uncondition_messenger import UnconditionMessenger

from .._util.checks import as_tensor
from .._util.user_warnings import warn_user
from .._util.value_checks import all_finite
from ..data.rows import RowSource, as_row_source, checked_rows
from ..data.splits import data_parts
from .missing import MaskObserved, check_mask, fill_missing
from .sites import Sites, discover, per_point

PARTICLES = "particles"


@dataclass(frozen=True)
class Data:
    """``x`` with its data-aligned keyword arguments; every tensor has ``N`` rows."""

    x: torch.Tensor
    covariates: dict[str, torch.Tensor] = field(default_factory=dict)
    #: True where ``x`` was observed (:mod:`pyro_vae.program.missing`); ``None``: all observed.
    mask: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.x.shape[0]

    def rows(self, index) -> Data:
        """The rows ``index`` as tensors (read from disk when ``x`` is a :class:`~pyro_vae.data.rows.RowSource`)."""
        mask = None if self.mask is None else self.mask[index]
        return Data(self.x[index], {k: v[index] for k, v in self.covariates.items()}, mask)

    def subset(self, index) -> Data:
        """The rows ``index``, still on disk when ``x`` is a row source (a lazy view), else as :meth:`rows`."""
        if isinstance(self.x, RowSource):
            positions = self.x._positions(index)
            mask = None if self.mask is None else self.mask[positions]
            return Data(self.x.subset(positions), {k: v[positions] for k, v in self.covariates.items()}, mask)
        return self.rows(index)

    def cycled(self, n: int) -> Data:
        """``n`` rows, repeating the rows in order (templates for generation)."""
        return self.rows(torch.arange(n) % len(self))


def _plain_check(x: Any, what: str) -> torch.Tensor:
    """The checks of a program without its own: a tensor with finite values and points along dim 0."""
    x = as_tensor(x, what)
    if x.ndim < 1 or x.shape[0] == 0:
        raise ValueError(
            f"{what} must have the data points along its first dimension, N >= 1; got shape {tuple(x.shape)}."
        )
    if not all_finite(x):
        raise ValueError(f"{what} contains non-finite values; remove or impute them.")
    return x


class Program:
    """A model and a guide following the protocol of this module.

    Args:
        model: ``model(x, **covariates)``.
        guide: ``guide(x, **covariates)``; required by tools that need ``q(z|x)``.
        plate: name of the data plate.
        check: optional ``check(x) -> x`` that validates and converts the data (a VAE's
            ``check_data``); otherwise arrays become tensors and non-finite values are refused.
        template: optional ``template(n) -> Data`` of ``n`` rows for generation without data.
        name: a short description used in results (a likelihood's name, say).
        direct_weights: optional ``direct_weights(data, S) -> (S, B)``, the log importance weights
            ``log p(x, z_s) - log q(z_s|x)`` of ``S`` draws from the guide for every row of
            ``data``, computed without traces on the random stream the traced programs use (a
            VAE's :func:`~pyro_vae.vae.own_elbo.importance_log_weights`). Importance sampling uses it in place of
            tracing; a program whose model or guide is replaced loses it.
        guide_reads_mask: whether the guide is told which entries are missing (a VAE built with
            ``missing=True``); by default, whether the guide declares a ``mask`` parameter.
        exact_guide: optional guide whose ``q(z|x)`` is the model's exact posterior given the observed
            entries (a linear-Gaussian VAE's :meth:`~pyro_vae.VAE.exact_guide`). Tools that estimate
            the model's own conditionals (:func:`pyro_vae.impute`) draw from it in place of
            ``guide``; tools about the guide itself keep ``guide``. A replaced model drops it.
    """

    def __init__(
        self,
        model: Callable,
        guide: Callable | None = None,
        *,
        plate: str = "data",
        check: Callable[..., torch.Tensor] | None = None,
        template: Callable[[int], Data] | None = None,
        name: str | None = None,
        direct_weights: Callable[[Data, int], torch.Tensor] | None = None,
        guide_reads_mask: bool | None = None,
        exact_guide: Callable | None = None,
    ):
        if not callable(model):
            raise TypeError(f"model must be a callable Pyro program or a VAE, got {type(model).__name__}.")
        if guide is not None and not callable(guide):
            raise TypeError(f"guide must be a callable Pyro program, got {type(guide).__name__}.")
        if not isinstance(plate, str) or not plate:
            raise ValueError(f"plate must be the name of the data plate, got {plate!r}.")
        self.model, self._guide, self.plate = model, guide, plate
        self._check, self._template = check, template
        self.name, self.direct_weights = name, direct_weights
        self._guide_reads_mask = guide_reads_mask
        self.exact_guide = exact_guide
        self._sites: Sites | None = None
        # How the global latents were fixed, once condition_on_globals has fixed them (else None).
        self._fixed_globals: dict[str, str] | None = None

    # ------------------------------------------------------------------ construction
    def replace(self, **changes) -> Program:
        fields: dict[str, Any] = dict(
            model=self.model,
            guide=self._guide,
            plate=self.plate,
            check=self._check,
            template=self._template,
            name=self.name,
        )
        if "model" not in changes and "guide" not in changes:  # the weights are the two programs'
            fields["direct_weights"] = self.direct_weights
        if "model" not in changes:  # the exact posterior is the model's
            fields["exact_guide"] = self.exact_guide
        if "guide" not in changes:
            fields["guide_reads_mask"] = self._guide_reads_mask
        fields.update(changes)
        program = Program(**fields)
        if "model" not in changes and self._fixed_globals is not None:
            # The model keeps its fixed globals, and so the structure read before they were fixed.
            program._sites, program._fixed_globals = self._sites, dict(self._fixed_globals)
        return program

    @property
    def guide(self) -> Callable:
        if self._guide is None:
            raise ValueError("This tool needs the amortized posterior: pass guide=my_guide along with the model.")
        return self._guide

    @property
    def optional_guide(self) -> Callable | None:
        """The guide, or ``None`` for a program given without one (tools that need it use :attr:`guide`)."""
        return self._guide

    @property
    def has_own_check(self) -> bool:
        """Whether the program validates its own data (a VAE's ``check_data``: support included)."""
        return self._check is not None

    @property
    def guide_reads_mask(self) -> bool:
        """Whether the guide sees which entries are missing (else it sees filled-in values only)."""
        if self._guide_reads_mask is not None:
            return self._guide_reads_mask
        guide = self._guide
        return guide is not None and _accepts(getattr(guide, "__wrapped_program__", guide), "mask")

    def warn_if_guide_ignores_mask(self, data: Data, pareto_k: torch.Tensor | None, tool: str) -> None:
        """One printed line when estimates on masked data come from a guide that never sees the mask:
        its ``q(z|x_obs)`` reads filled-in values as data, and Pareto ``k`` says how far that misleads."""
        if data.mask is None or bool(data.mask.all()) or self.guide_reads_mask:
            return
        share = (
            "Pareto k was not computed (psis=False)"
            if pareto_k is None
            else f"Pareto k > 0.7 for {100 * float((pareto_k > 0.7).double().mean()):.1f}% of points"
        )
        warn_user(
            f"{tool}: the guide never sees which entries are missing, so q(z|x) reads filled-in values as data; "
            f"{share}, whose estimates are unreliable. Use a guide that takes mask= (VAE(..., missing=True)).",
            UserWarning,
        )

    @property
    def can_generate(self) -> bool:
        """Whether the program makes its own rows for generation (a VAE's template batch)."""
        return self._template is not None

    # ------------------------------------------------------------------ data
    def data(
        self,
        x: Any,
        covariates: Mapping[str, Any] | None = None,
        what: str = "x",
        *,
        checked: bool = False,
        mask: Any = None,
    ) -> Data:
        """Validate ``x`` and the data-aligned ``covariates`` and return them as :class:`Data`.

        ``x`` is a tensor, an array, a row source or a :class:`~pyro_vae.data.Split` (which brings its
        covariates and its mask of missing entries unless they are given; ``mask=COMPLETE_ROWS``
        refuses a split with missing entries); a whole ``Dataset`` is refused, naming its splits.

        ``checked=True`` says ``x`` was validated already (a tensor of the right kind), so only the
        covariates are checked: large data is not scanned twice. A row source (a numpy memory map,
        :func:`pyro_vae.data.rows.open_rows`) is checked chunk by chunk and stays on disk
        (:mod:`pyro_vae.data.rows`). With ``mask`` (True where observed), ``x`` may hold NaN where it is
        False; those entries are filled with observed values of their feature before the checks
        (:mod:`pyro_vae.program.missing`).
        """
        x, covariates, mask = data_parts(x, covariates, mask)
        source = as_row_source(x)
        checked_mask = None
        if mask is not None:
            if source is not None:
                raise ValueError("A mask of missing entries needs x in memory, not a row source on disk.")
            raw = as_tensor(x, what)
            checked_mask = check_mask(mask, raw, what)
            x = fill_missing(raw, checked_mask, what)
        if source is not None:
            x = checked_rows(source, self._check or _plain_check, what)
        elif not checked:
            x = _plain_check(self._check(x, what) if self._check is not None else x, what)
        if checked_mask is not None:
            checked_mask = checked_mask.reshape(x.shape).to(x.device)  # as x was reshaped (images to rows)
        out = {}
        for key, value in (covariates or {}).items():
            if key in ("indices", "num_data", "mask"):
                raise ValueError(
                    f"{key!r} is passed by the tools themselves; it cannot be a covariate (mask: pass mask=)."
                )
            value = as_tensor(value, f"covariate {key!r}", keep_bool=True)  # a program's masks stay boolean
            if value.ndim < 1 or value.shape[0] != x.shape[0]:
                raise ValueError(
                    f"covariate {key!r} has shape {tuple(value.shape)} but x has {x.shape[0]} rows: "
                    "covariates are data-aligned, one row per data point."
                )
            if value.is_floating_point() and not bool(torch.isfinite(value).all()):
                raise ValueError(f"covariate {key!r} contains non-finite values.")
            out[key] = value.to(x.device)
        return Data(x, out, checked_mask)

    def template(self, n: int, like: Data | None = None) -> Data:
        """``n`` rows to run the model on when generating: cycled from ``like`` or the program's template."""
        if like is not None:
            return like.cycled(n)
        if self._template is None:
            raise ValueError(
                "Generating from a hand-written model needs rows to run it on: pass x (and covariates) "
                "of one or more data points; their x values are not scored, only their shapes and covariates used."
            )
        return self._template(n)

    # ------------------------------------------------------------------ calls
    def traces(
        self,
        data: Data,
        num_particles: int | None,
        *,
        indices: torch.Tensor | None = None,
        num_data: int | None = None,
        guide: Callable | None = None,
        uncondition: bool = False,
        sites: Sites | None = None,
        enumerate: bool = False,
    ) -> tuple[poutine.Trace, poutine.Trace]:
        """``(guide_trace, model_trace)``: the guide, then the model replayed against it.

        With ``num_particles`` both run under ``pyro.plate("particles", S)`` left of every plate.
        With ``uncondition`` the model's generated sites (:attr:`Sites.generated`) are sampled
        rather than scored. With
        ``enumerate`` the sites marked for parallel enumeration take all their values at once, in
        dimensions left of the particle dimension (the guide's first, then the model's), as in
        Pyro's ``TraceEnum_ELBO``.
        """
        guide = guide or self.guide
        model = self.model
        if uncondition:
            model = UnconditionSites((sites or self.sites(data)).generated)(model)
        if num_particles is not None:
            dim = (sites or self.sites(data)).particle_dim
            guide, model = with_particles(guide, num_particles, dim), with_particles(model, num_particles, dim)
        if enumerate:
            first = (sites or self.sites(data)).enum_dim
            # The model allocates its enumeration dimensions after the guide's (Pyro's own pattern).
            guide = wrapped_program(EnumMessenger(first_available_dim=first)(guide), guide)
            model = wrapped_program(EnumMessenger()(model), model)
        guide_trace = poutine.trace(guide).get_trace(data.x, **self.arguments(guide, data, indices, num_data))
        masking = self.masking(data, uncondition)
        model_trace = poutine.trace(poutine.replay(masking(model) if masking else model, trace=guide_trace)).get_trace(
            data.x, **self.arguments(self.model, data, indices, num_data)
        )
        if masking:
            masking.check_applied()
        return guide_trace, model_trace

    def masking(self, data: Data, uncondition: bool = False) -> MaskObserved | None:
        """The masking of missing entries the tools apply: none without a mask, for an unconditioned
        model, or for a model that declares ``mask`` and masks its own likelihood."""
        if data.mask is None or uncondition or _accepts(getattr(self.model, "__wrapped_program__", self.model), "mask"):
            return None
        return MaskObserved(data.x, data.mask)

    def generate(
        self,
        rows: Data,
        *,
        condition: Mapping[str, torch.Tensor] | None = None,
        num_particles: int | None = None,
        sites: Sites | None = None,
    ) -> poutine.Trace:
        """Trace of the model on ``rows`` with its generated sites sampled (:attr:`Sites.generated`),
        latents from the prior or ``condition``.

        With ``num_particles`` the model runs under the particle plate (one draw per row and particle).
        """
        model = UnconditionSites((sites or self.sites(rows)).generated)(self.model)
        if condition:
            model = poutine.condition(model, data=dict(condition))
        if num_particles is not None:
            model = with_particles(model, num_particles, (sites or self.sites(rows)).particle_dim)
        return poutine.trace(model).get_trace(
            rows.x, **self.arguments(self.model, rows, torch.arange(len(rows)), len(rows))
        )

    def arguments(
        self, fn: Callable, data: Data, indices: torch.Tensor | None = None, num_data: int | None = None
    ) -> dict:
        """Keyword arguments of ``fn(data.x, **arguments)``: the covariates, and ``indices`` and
        ``num_data`` where ``fn`` declares them."""
        # Signatures are read from the user's callables, not from the wrappers around them.
        kwargs = dict(data.covariates)
        target = getattr(fn, "__wrapped_program__", fn)
        if data.mask is not None and _accepts(target, "mask"):
            kwargs["mask"] = data.mask
        if indices is not None and _accepts(target, "indices"):
            kwargs["indices"] = indices
        if num_data is not None and _accepts(target, "num_data"):
            kwargs["num_data"] = num_data
        return kwargs

    # ------------------------------------------------------------------ structure
    def sites(self, data: Data) -> Sites:
        """Read the program's structure from one trace on the first rows of ``data`` (cached)."""
        if self._sites is None:
            with torch.random.fork_rng(devices=[]):  # reading the structure leaves the caller's RNG alone
                self._sites = discover(self, data.rows(slice(0, min(2, len(data)))))
        return self._sites

    def check_vectorised(self, data: Data, sites: Sites) -> None:
        """Run 2 particles on the first rows, or explain the leading-dimension contract."""
        rows = data.rows(slice(0, min(2, len(data))))
        try:
            with torch.random.fork_rng(devices=[]), torch.no_grad(), pyro.validation_enabled(False):
                guide_trace, model_trace = self.traces(
                    rows,
                    2,
                    indices=torch.arange(len(rows)),
                    num_data=len(data),
                    sites=sites,
                    guide=self._guide or _no_guide,
                )
                for name in sites.observed:
                    per_point(model_trace.nodes[name], sites, self.plate, 2, len(rows))
        except (RuntimeError, IndexError) as error:
            raise ValueError(
                "The program failed when run with a leading particle dimension "
                f"(pyro.plate('{PARTICLES}', S, dim={sites.particle_dim})): {type(error).__name__}: "
                f"{str(error).splitlines()[0]}. pyro_vae draws many particles at once, so every network "
                "in the model and guide must accept inputs with extra leading dimensions, (..., B, L), "
                "as nn.Linear does. Wrap a network that takes only (B, L), e.g. a convolutional decoder, "
                "in pyro_vae.vae.networks.FlattenLeading(net)."
            ) from None


def as_program(model: Any, guide: Callable | None = None, *, plate: str | None = None) -> Program:
    """A :class:`Program` from a VAE (or anything with ``as_program()``), a Program, or callables."""
    if isinstance(model, Program):
        program = model
    elif hasattr(model, "as_program"):
        program = model.as_program()
    else:
        program = Program(model)
    if guide is not None:
        program = program.replace(guide=guide)
    if plate is not None and plate != program.plate:
        program = program.replace(plate=plate)
    return program


# ---------------------------------------------------------------------- helpers
def with_particles(fn: Callable, num: int, dim: int) -> Callable:
    def vectorised(*args, **kwargs):
        with pyro.plate(PARTICLES, num, dim=dim):
            return fn(*args, **kwargs)

    return wrapped_program(vectorised, fn)


def wrapped_program(wrapper: Callable, original: Callable) -> Callable:
    setattr(wrapper, "__wrapped_program__", getattr(original, "__wrapped_program__", original))
    return wrapper


class UnconditionSites(UnconditionMessenger):
    """Pyro's ``poutine.uncondition`` for the observed sites ``names`` only; the others stay observed."""

    def __init__(self, names: tuple[str, ...]):
        super().__init__()
        self.names = frozenset(names)

    def _pyro_sample(self, msg) -> None:
        if msg["name"] in self.names:
            super()._pyro_sample(msg)


def _no_guide(*args, **kwargs) -> None:
    return None


def _accepts(fn: Callable, name: str) -> bool:
    try:
        parameter = inspect.signature(fn).parameters.get(name)
    except (TypeError, ValueError):
        return False
    return parameter is not None and parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY)

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
  ``nn.Linear`` does. :class:`pyro_vae.networks.FlattenLeading` adapts a network that takes only
  ``(B, L)`` (a convolutional decoder, say); the check runs before any work.
* Generation runs the model on a batch of rows with its observed sites unconditioned
  (``poutine.uncondition``): the values of ``x`` passed there are never scored.

A :class:`~pyro_vae.VAE` is one user of this protocol: its ``as_program()`` supplies the two
methods, its data checks and a template batch for generation; no tool knows more about it.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyro
import torch
from pyro import poutine
from pyro.poutine.util import site_is_subsample
from torch.utils._python_dispatch import TorchDispatchMode

PARTICLES = "particles"

#: How the value of a global latent was chosen when a tool conditions on it.
GLOBAL_POLICIES = ("guide_median",)
_MEDIAN_DRAWS = 201


@dataclass(frozen=True)
class Data:
    """``x`` with its data-aligned keyword arguments; every tensor has ``N`` rows."""

    x: torch.Tensor
    covariates: dict[str, torch.Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return self.x.shape[0]

    def rows(self, index) -> "Data":
        return Data(self.x[index], {k: v[index] for k, v in self.covariates.items()})

    def cycled(self, n: int) -> "Data":
        """``n`` rows, repeating the rows in order (templates for generation)."""
        return self.rows(torch.arange(n) % len(self))


@dataclass(frozen=True)
class Sites:
    """The structure of a program, read from one trace of its guide and model.

    Attributes:
        nesting: number of plate dimensions the program uses (at least 1).
        data_dim: the (negative) dimension of the data plate.
        observed: the model's observed sites inside the data plate.
        local: the guide's latent sites inside the data plate.
        globals: latent sites outside the data plate (guide and model).
        event_shapes: per site, the event shape of its distribution.
    """

    nesting: int
    data_dim: int
    observed: tuple[str, ...]
    local: tuple[str, ...]
    globals: tuple[str, ...]
    event_shapes: dict[str, torch.Size]
    discrete: dict[str, bool]

    @property
    def particle_dim(self) -> int:
        return -(self.nesting + 1)

    def latent(self, site: str | None) -> str:
        """The local latent site a tool works on: ``site`` or the only one."""
        if site is not None:
            if site not in self.local:
                raise ValueError(f"{site!r} is not a local latent site of this program; its local latents are {list(self.local)}.")
            return site
        if len(self.local) != 1:
            raise ValueError(f"This program has local latent sites {list(self.local)}; pass site= to choose one.")
        return self.local[0]


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
    """

    def __init__(
        self,
        model: Callable,
        guide: Callable | None = None,
        *,
        plate: str = "data",
        check: Callable[[Any], torch.Tensor] | None = None,
        template: Callable[[int], Data] | None = None,
        name: str | None = None,
    ):
        if not callable(model):
            raise TypeError(f"model must be a callable Pyro program or a VAE, got {type(model).__name__}.")
        if guide is not None and not callable(guide):
            raise TypeError(f"guide must be a callable Pyro program, got {type(guide).__name__}.")
        if not isinstance(plate, str) or not plate:
            raise ValueError(f"plate must be the name of the data plate, got {plate!r}.")
        self.model, self._guide, self.plate = model, guide, plate
        self._check, self._template = check, template
        self.name = name
        self._sites: Sites | None = None

    # ------------------------------------------------------------------ construction
    def replace(self, **changes) -> "Program":
        fields = dict(model=self.model, guide=self._guide, plate=self.plate, check=self._check,
                      template=self._template, name=self.name)  # fmt: skip
        fields.update(changes)
        return Program(**fields)

    @property
    def guide(self) -> Callable:
        if self._guide is None:
            raise ValueError("This tool needs the amortized posterior: pass guide=my_guide along with the model.")
        return self._guide

    @property
    def can_generate(self) -> bool:
        """Whether the program makes its own rows for generation (a VAE's template batch)."""
        return self._template is not None

    @property
    def has_guide(self) -> bool:
        return self._guide is not None

    # ------------------------------------------------------------------ data
    def data(self, x: Any, covariates: Mapping[str, Any] | None = None, what: str = "x") -> Data:
        """Validate ``x`` and the data-aligned ``covariates`` and return them as :class:`Data`."""
        x = self._check(x, what) if self._check is not None else _as_tensor(x, what)
        if x.ndim < 1 or x.shape[0] == 0:
            raise ValueError(f"{what} must have the data points along its first dimension, N >= 1; got shape {tuple(x.shape)}.")
        if x.is_floating_point() and not bool(torch.isfinite(x).all()):
            raise ValueError(f"{what} contains non-finite values; remove or impute them.")
        out = {}
        for key, value in (covariates or {}).items():
            if key in ("indices", "num_data"):
                raise ValueError(f"{key!r} is passed by the tools themselves; it cannot be a covariate.")
            value = _as_tensor(value, f"covariate {key!r}")
            if value.ndim < 1 or value.shape[0] != x.shape[0]:
                raise ValueError(
                    f"covariate {key!r} has shape {tuple(value.shape)} but x has {x.shape[0]} rows: "
                    "covariates are data-aligned, one row per data point."
                )
            if value.is_floating_point() and not bool(torch.isfinite(value).all()):
                raise ValueError(f"covariate {key!r} contains non-finite values.")
            out[key] = value.to(x.device)
        return Data(x, out)

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
    def call(self, fn: Callable, data: Data, indices: torch.Tensor | None = None, num_data: int | None = None, **extra):
        """``fn(x, **covariates)``, with ``indices``/``num_data`` where ``fn`` declares them."""
        kwargs = dict(data.covariates)
        if indices is not None and _accepts(fn, "indices"):
            kwargs["indices"] = indices
        if num_data is not None and _accepts(fn, "num_data"):
            kwargs["num_data"] = num_data
        kwargs.update(extra)
        return fn(data.x, **kwargs)

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
    ) -> tuple[poutine.Trace, poutine.Trace]:
        """``(guide_trace, model_trace)``: the guide, then the model replayed against it.

        With ``num_particles`` both run under ``pyro.plate("particles", S)`` left of every plate.
        With ``uncondition`` the model's observed sites are sampled rather than scored.
        """
        guide = guide or self.guide
        model = poutine.uncondition(self.model) if uncondition else self.model
        if num_particles is not None:
            dim = (sites or self.sites(data)).particle_dim
            guide, model = _particles(guide, num_particles, dim), _particles(model, num_particles, dim)
        guide_trace = poutine.trace(guide).get_trace(data.x, **self._kwargs(guide, data, indices, num_data))
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(
            data.x, **self._kwargs(self.model, data, indices, num_data)
        )
        return guide_trace, model_trace

    def generate(self, rows: Data, *, condition: Mapping[str, torch.Tensor] | None = None) -> poutine.Trace:
        """Trace of the model on ``rows`` with observed sites sampled, latents from the prior or ``condition``."""
        model = poutine.uncondition(self.model)
        if condition:
            model = poutine.condition(model, data=dict(condition))
        return poutine.trace(model).get_trace(rows.x, **self._kwargs(self.model, rows, None, None))

    def _kwargs(self, fn, data: Data, indices, num_data) -> dict:
        # Signatures are read from the user's callables, not from the wrappers around them.
        kwargs = dict(data.covariates)
        target = getattr(fn, "__wrapped_program__", fn)
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
                self._sites = _discover(self, data.rows(slice(0, min(2, len(data)))))
        return self._sites

    def check_vectorised(self, data: Data, sites: Sites) -> None:
        """Run 2 particles on the first rows, or explain the leading-dimension contract."""
        rows = data.rows(slice(0, min(2, len(data))))
        try:
            with torch.random.fork_rng(devices=[]), torch.no_grad(), pyro.validation_enabled(False):
                guide_trace, model_trace = self.traces(rows, 2, indices=torch.arange(len(rows)), num_data=len(data),
                                                       sites=sites, guide=self._guide or _no_guide)  # fmt: skip
                for name in sites.observed:
                    per_point(model_trace.nodes[name], sites, self.plate, 2, len(rows))
        except (RuntimeError, IndexError) as error:
            raise ValueError(
                "The program failed when run with a leading particle dimension "
                f"(pyro.plate('{PARTICLES}', S, dim={sites.particle_dim})): {type(error).__name__}: "
                f"{str(error).splitlines()[0]}. pyro_vae draws many particles at once, so every network "
                "in the model and guide must accept inputs with extra leading dimensions, (..., B, L), "
                "as nn.Linear does. Wrap a network that takes only (B, L), e.g. a convolutional decoder, "
                "in pyro_vae.networks.FlattenLeading(net)."
            ) from None

    # ------------------------------------------------------------------ global latents
    def conditioned_on_globals(self, data: Data, values: Any) -> tuple["Program", dict[str, str]]:
        """The program with every global latent fixed, and a description of the values used.

        ``values`` is ``None`` (refuse when there are global latents), ``"guide_median"`` or a
        mapping from site name to value.
        """
        sites = self.sites(data)
        if not sites.globals:
            if values not in (None, "guide_median") and values:
                raise ValueError(f"global_values names {sorted(values)}, but this program has no global latent sites.")
            return self, {}
        if values is None:
            raise ValueError(
                f"The program has global latent site(s) {list(sites.globals)} outside the plate "
                f"{self.plate!r}: a per-point log p(x_i) exists only given their values. Pass "
                "global_values='guide_median' to condition on the guide's median, or "
                "global_values={'" + sites.globals[0] + "': value} to condition on values of your own."
            )
        if isinstance(values, str):
            if values not in GLOBAL_POLICIES:
                raise ValueError(f"global_values must be one of {GLOBAL_POLICIES} or a mapping of site names to values.")
            chosen = self._guide_median(data, sites)
            described = {name: f"guide median ({_MEDIAN_DRAWS} draws)" for name in chosen}
        elif isinstance(values, Mapping):
            missing = sorted(set(sites.globals) - set(values))
            unknown = sorted(set(values) - set(sites.globals))
            if missing or unknown:
                raise ValueError(f"global_values must give exactly the global sites {list(sites.globals)}; "
                                 f"missing {missing}, unknown {unknown}.")  # fmt: skip
            chosen = {k: torch.as_tensor(v, dtype=data.x.dtype if not torch.is_tensor(v) else None) for k, v in values.items()}
            described = {name: "given value" for name in chosen}
        else:
            raise TypeError("global_values must be None, 'guide_median' or a mapping of site names to values.")
        program = self.replace(
            model=_wrapped(poutine.condition(self.model, data=chosen), self.model),
            guide=_wrapped(poutine.condition(self._guide, data=chosen), self._guide) if self._guide else None,
        )
        program._sites = sites
        program.global_values = chosen
        return program, described

    @torch.no_grad()
    def _guide_median(self, data: Data, sites: Sites) -> dict[str, torch.Tensor]:
        rows = data.rows(slice(0, 1))
        draws: dict[str, list[torch.Tensor]] = {name: [] for name in sites.globals}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            self._draw_globals(rows, sites, draws)
        return {name: torch.stack(values).median(dim=0).values for name, values in draws.items()}

    def _draw_globals(self, rows: Data, sites: Sites, draws: dict) -> None:
        for _ in range(_MEDIAN_DRAWS):
            trace = poutine.trace(self.guide).get_trace(rows.x, **self._kwargs(self.guide, rows, None, None))
            for name in sites.globals:
                if name not in trace.nodes:
                    raise ValueError(f"The global latent {name!r} is not sampled by the guide; pass its value in global_values.")
                draws[name].append(trace.nodes[name]["value"])

    # ------------------------------------------------------------------ memory
    def bytes_per_draw(self, data: Data, sites: Sites) -> float:
        """Bytes allocated per (point, particle) by one run of guide and model, measured.

        Two runs with 2 and 6 particles on the same rows are counted tensor by tensor; their
        difference divided by the extra draws excludes what a run allocates once (weights).
        """
        rows = data.rows(slice(0, min(4, len(data))))
        counts = []
        for particles in (2, 6):
            with _AllocationCounter() as counter, torch.no_grad(), pyro.validation_enabled(False):
                self.traces(rows, particles, indices=torch.arange(len(rows)), num_data=len(data), sites=sites,
                            guide=self._guide or _no_guide)  # fmt: skip
            counts.append(counter.bytes)
        return max((counts[1] - counts[0]) / (4 * len(rows)), 64.0)


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


# ---------------------------------------------------------------------- per-site log-densities
def per_point(site: dict, sites: Sites, plate: str, num_particles: int, batch: int) -> torch.Tensor:
    """``site``'s log-density summed to shape ``(S, B)`` (inside the data plate) or ``(S,)``.

    Scales (KL warm-up, minibatch factors) are ignored; masks (``poutine.mask``) are applied.
    """
    log_prob = site["fn"].log_prob(site["value"])
    if site.get("mask") is not None:
        log_prob = torch.where(site["mask"], log_prob, torch.zeros_like(log_prob))
    rank = sites.nesting + 1
    if log_prob.ndim > rank:
        raise ValueError(
            f"Site {site['name']!r} has log_prob of shape {tuple(log_prob.shape)}, with batch dimensions that "
            "no pyro.plate declares; declare them with a plate or make them event dimensions with .to_event()."
        )
    log_prob = log_prob.reshape((1,) * (rank - log_prob.ndim) + tuple(log_prob.shape))
    keep = [0]
    if in_plate(site, plate):
        keep.append(rank + sites.data_dim)
    other = [d for d in range(rank) if d not in keep]
    if other:
        log_prob = log_prob.sum(other)
    return log_prob.expand((num_particles, batch) if len(keep) == 2 else (num_particles,))


def site_values(site: dict, sites: Sites, plate: str, *, particles: bool = True) -> torch.Tensor:
    """A site's value with the particle dimension first (with ``particles``) and, for local sites,
    the data dimension next.

    Other plate dimensions of size 1 are dropped; event dimensions follow.
    """
    value = site["value"]
    event = len(site["fn"].event_shape)
    batch = value.shape[: value.ndim - event]
    rank = sites.nesting + (1 if particles else 0)
    batch = (1,) * (rank - len(batch)) + tuple(batch)
    value = value.reshape(*batch, *value.shape[value.ndim - event:])
    keep = ([0] if particles else []) + ([rank + sites.data_dim] if in_plate(site, plate) else [])
    drop = [d for d in range(rank) if d not in keep and value.shape[d] == 1]
    for d in sorted(drop, reverse=True):
        value = value.squeeze(d)
    return value


def in_plate(site: dict, plate: str) -> bool:
    return any(frame.name == plate for frame in site["cond_indep_stack"])


# ---------------------------------------------------------------------- helpers
def _discover(program: Program, rows: Data) -> Sites:
    guide = program._guide or _no_guide
    with torch.no_grad(), pyro.validation_enabled(False):
        guide_trace, model_trace = program.traces(rows, None, indices=torch.arange(len(rows)), num_data=len(rows),
                                                  guide=guide)  # fmt: skip
    plate = program.plate
    frames, plates_seen = [], set()
    for trace in (guide_trace, model_trace):
        for site in trace.nodes.values():
            if site["type"] == "sample":
                for frame in site["cond_indep_stack"]:
                    plates_seen.add(frame.name)
                    if frame.vectorized and frame.dim is not None:
                        frames.append(frame)
    data_frames = [f for f in frames if f.name == plate]
    if not data_frames:
        raise ValueError(
            f"The model has no pyro.plate named {plate!r} around its observed sites (plates found: "
            f"{sorted(plates_seen) or 'none'}). Put the per-point sites inside pyro.plate({plate!r}, N), "
            "or pass plate='<name>' to the tool."
        )
    nesting = max(1, max(-f.dim for f in frames))
    data_dim = data_frames[0].dim

    def samples(trace):
        return {n: s for n, s in trace.nodes.items() if s["type"] == "sample" and not site_is_subsample(s)}

    model_sites, guide_sites = samples(model_trace), samples(guide_trace)
    observed = tuple(n for n, s in model_sites.items() if s["is_observed"] and in_plate(s, plate))
    if not observed:
        raise ValueError(f"The model observes no site inside the plate {plate!r}: pass the data as obs= of a sample site there.")
    # The guide's latents are the ones tools draw from q; without a guide, the model's own.
    latent_source = guide_sites if program._guide is not None else model_sites
    local = tuple(n for n, s in latent_source.items() if not s["is_observed"] and in_plate(s, plate))
    globals_ = tuple(n for n, s in {**guide_sites, **model_sites}.items()
                     if not in_plate(s, plate) and (not s["is_observed"] or n in guide_sites))  # fmt: skip
    if program._guide is not None:
        unguided = [n for n, s in model_sites.items() if not s["is_observed"] and n not in guide_sites]
        if unguided:
            raise ValueError(f"The model's latent site(s) {unguided} are not sampled by the guide; every latent "
                             "of the model needs a distribution in the guide.")  # fmt: skip
        auxiliary = [n for n in guide_sites if n not in model_sites]
        if auxiliary:
            raise ValueError(f"The guide samples {auxiliary}, which the model does not have; importance weights "
                             "need the guide's sites to be the model's latents.")  # fmt: skip
    batch = len(rows)
    for name in observed:
        value = model_sites[name]["value"]
        fn = model_sites[name]["fn"]
        size = value.shape[value.ndim - len(fn.event_shape) + data_dim] if value.ndim - len(fn.event_shape) >= -data_dim else 1
        if size != batch:
            raise ValueError(f"The plate {plate!r} runs over {size} points at site {name!r}, but the batch has "
                             f"{batch} rows: the data plate must run over the rows of x.")  # fmt: skip
    all_sites = {**model_sites, **guide_sites}
    return Sites(
        nesting=nesting,
        data_dim=data_dim,
        observed=observed,
        local=local,
        globals=globals_,
        event_shapes={n: s["fn"].event_shape for n, s in all_sites.items()},
        discrete={n: bool(getattr(model_sites[n]["fn"].support, "is_discrete", False)) for n in observed},
    )


def _particles(fn: Callable, num: int, dim: int) -> Callable:
    def vectorised(*args, **kwargs):
        with pyro.plate(PARTICLES, num, dim=dim):
            return fn(*args, **kwargs)

    return _wrapped(vectorised, fn)


def _wrapped(wrapper: Callable, original: Callable) -> Callable:
    wrapper.__wrapped_program__ = getattr(original, "__wrapped_program__", original)
    return wrapper


def _no_guide(*args, **kwargs) -> None:
    return None


def _accepts(fn: Callable, name: str) -> bool:
    try:
        parameter = inspect.signature(fn).parameters.get(name)
    except (TypeError, ValueError):
        return False
    return parameter is not None and parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY)


def _as_tensor(value: Any, what: str) -> torch.Tensor:
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(value)
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{what} must be a torch.Tensor or numpy array, got {type(value).__name__}.")
    if value.dtype == torch.bool:
        value = value.to(torch.get_default_dtype())
    # Other dtypes stay as given: a hand-written program decides what precision it works in.
    return value


class _AllocationCounter(TorchDispatchMode):
    """Sum of the bytes of every new tensor storage created inside the block."""

    def __init__(self):
        super().__init__()
        self.bytes = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(tensor, torch.Tensor) and not tensor._is_view():
                self.bytes += tensor.untyped_storage().nbytes()
        return out


def log_mean_exp(values: torch.Tensor, dim: int) -> torch.Tensor:
    return torch.logsumexp(values, dim=dim) - math.log(values.shape[dim])

"""The settings of a training run, validated once: what :func:`~pyro_vae.fit` takes, what a checkpoint
must agree with to resume, what a run folder's ``config.json`` records, and the options of
``pyro-vae train`` all come from the one frozen :class:`TrainSettings`.

Each field carries its own description (``help``), its command-line flag (``flag``, or ``None`` with
the reason it has none) and whether a resumed run must repeat it (``resume``). Adding a field adds it
to all four places at once.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .._util.checks import positive_int, positive_number, seed_value
from ..objectives import IMPORTANCE_WEIGHTED, OBJECTIVES

PROGRESS_MODES = (None, True, False, "lines", "summary")


def _option(
    default: Any,
    help: str,
    *,
    flag: str | None = "",
    resume: bool = False,
    cli_default: Any = dataclasses.MISSING,
    no_flag: str = "",
) -> Any:
    """A field of :class:`TrainSettings`. ``flag=""`` derives ``--name-with-dashes``; ``flag=None``
    keeps the option off the command line, and ``no_flag`` then says why."""
    if flag is None and not no_flag:
        raise ValueError("an option without a flag says why (no_flag=...)")
    metadata = {
        "help": help,
        "flag": flag,
        "resume": resume,
        "no_flag": no_flag,
        "cli_default": default if cli_default is dataclasses.MISSING else cli_default,
    }
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class TrainSettings:
    """How :func:`~pyro_vae.fit` trains, checked when built: a wrong type raises ``TypeError``, a value
    out of range ``ValueError``, each naming the option and what it accepts.

    ``TrainSettings(epochs=100, elbo="iwae", num_particles=10)`` can be passed to
    ``fit(vae, x, settings=...)``; ``fit``'s keyword options build one the same way.
    """

    epochs: int = _option(10, "most epochs, counting those of a resumed run", cli_default=50)
    batch_size: int = _option(128, "minibatch size B; the data plate scales each minibatch by N / B", resume=True)
    lr: float = _option(1e-3, "Adam learning rate", resume=True)
    elbo: str = _option(
        "trace",
        "objective: 'trace' (Trace_ELBO, a Monte Carlo KL), 'meanfield' "
        "(TraceMeanField_ELBO, analytic KL where one exists), 'iwae' (the importance-weighted "
        "bound with --num-particles samples), 'iwae-dreg' (the same bound with doubly "
        "reparameterised guide gradients) or 'enum' (TraceEnum_ELBO, summing the discrete sites "
        "a program marks for enumeration; chosen for such a program when 'trace' is asked)",
        resume=True,
    )
    num_particles: int = _option(
        1, "samples of z per point and step (the K of 'iwae' and 'iwae-dreg', which need K >= 2)", resume=True
    )
    kl_warmup_epochs: float = _option(
        0.0, "epochs of linear KL warm-up (the KL weight rises from 0 to 1)", flag="--kl-warmup", resume=True
    )
    patience: int | None = _option(
        None, "stop after this many epochs without a better validation ELBO (default: never; needs validation data)"
    )
    restore_best: bool = _option(
        True,
        "with validation data, end with the parameters of the best validation epoch",
        flag=None,
        no_flag="a run folder keeps the best epoch; load(best=True) reads it",
    )
    seed: int = _option(
        0,
        "seeds shuffling, dynamic binarisation and sampling (on the command line also the data "
        "split and the initialisation)",
        resume=True,
    )
    init_from_data: bool = _option(
        True,
        "start an untrained model where the training data put it",
        flag=None,
        no_flag="the command line always builds an untrained model from the data",
    )
    jit: bool = _option(
        False,
        "compile the 'trace' objective (JitTrace_ELBO): traced once per minibatch size, "
        "then run as one graph; not inside a process group",
    )
    direct: bool = _option(
        True,
        "compute a VAE's 'trace' and 'meanfield' objectives from its parts (pyro_vae.vae.own_elbo: the estimate "
        "of Trace_ELBO or TraceMeanField_ELBO on the same draws, without Pyro's effect handlers, at the "
        "pace of a plain PyTorch loop); --no-direct runs them through Pyro",
    )
    progress: bool | str | None = _option(
        None,
        "True: a progress bar; 'lines': one line per epoch on standard "
        "error; 'summary': a line every tenth of the epochs; False: none; None: a bar when standard error is a terminal",
        flag=None,
        no_flag="the command line chooses by its terminal",
    )

    def __post_init__(self) -> None:
        positive_int(self.epochs, "epochs")
        positive_int(self.batch_size, "batch_size")
        positive_int(self.num_particles, "num_particles")
        positive_number(self.lr, "lr")
        # A seed is checked here, before anything it seeds runs (the data-driven start changes the model).
        object.__setattr__(self, "seed", seed_value(self.seed))
        if not isinstance(self.elbo, str):
            raise TypeError(f"elbo must be a string, one of {sorted(OBJECTIVES)}; got {type(self.elbo).__name__}.")
        if self.elbo not in OBJECTIVES:
            raise ValueError(f"elbo must be one of {sorted(OBJECTIVES)}, got {self.elbo!r}.")
        if self.elbo in IMPORTANCE_WEIGHTED and self.num_particles < 2:
            raise ValueError(
                f"elbo={self.elbo!r} with num_particles=1 is the plain one-sample ELBO, not an importance-weighted "
                "bound: pass num_particles=K with K >= 2 (--num-particles K on the command line), or elbo='trace'."
            )
        warmup = self.kl_warmup_epochs
        if isinstance(warmup, bool) or not isinstance(warmup, (int, float)):
            raise TypeError(f"kl_warmup_epochs must be a number, got {type(warmup).__name__}.")
        if not (math.isfinite(warmup) and warmup >= 0):
            raise ValueError(f"kl_warmup_epochs must be a finite number >= 0, got {warmup!r}.")
        if self.patience is not None:
            positive_int(self.patience, "patience")
        for name in ("restore_best", "init_from_data", "jit", "direct"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be True or False, got {getattr(self, name)!r}.")
        if not (self.progress is None or isinstance(self.progress, bool) or self.progress in ("lines", "summary")):
            raise ValueError(f'progress must be True, False, None, "lines" or "summary", got {self.progress!r}.')
        if self.jit and self.elbo != "trace":
            raise ValueError(
                f"jit=True compiles the 'trace' objective (JitTrace_ELBO); train elbo={self.elbo!r} without it."
            )

    # ------------------------------------------------------------------ records
    def resume_record(self, *, dynamic_binarization: bool, num_data: int) -> dict[str, Any]:
        """What a checkpoint stores and a resumed run must match: every ``resume`` field and the data's shape."""
        record = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.metadata["resume"]}
        return {**record, "dynamic_binarization": dynamic_binarization, "num_data": num_data}

    def config(self) -> dict[str, Any]:
        """The ``training`` section of a run folder's ``config.json``: every option the command line sets."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.metadata["flag"] is not None}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> TrainSettings:
        """Read back :meth:`config`; options a run folder of an earlier version lacks take their defaults."""
        names = {f.name for f in dataclasses.fields(cls) if f.metadata["flag"] is not None}
        unknown = sorted(set(config) - names)
        if unknown:
            raise ValueError(f"Unknown training settings {unknown}; known: {sorted(names)}.")
        return cls(**dict(config))

    def replace(self, **changes: Any) -> TrainSettings:
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------ command line
    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """Add one option per field that has a flag, with its help, type and command-line default."""
        for f in dataclasses.fields(cls):
            flag = cls.flag(f)
            if flag is None:
                continue
            default = f.metadata["cli_default"]
            kwargs: dict[str, Any] = {"dest": f.name, "default": default, "help": f.metadata["help"]}
            if f.type in ("bool", bool):
                kwargs["action"] = argparse.BooleanOptionalAction
            else:
                kwargs["type"] = {"int": int, "float": float, "str": str, "int | None": int}[str(f.type)]
            if f.name == "elbo":
                kwargs["choices"] = sorted(OBJECTIVES)
            parser.add_argument(flag, **kwargs)

    @classmethod
    def from_arguments(cls, args: argparse.Namespace, **overrides: Any) -> TrainSettings:
        """The settings the parsed command line asks for (argparse checked the types)."""
        values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if cls.flag(f) is not None}
        return cls(**{**values, **overrides})

    @staticmethod
    def flag(f: dataclasses.Field) -> str | None:
        flag = f.metadata["flag"]
        return None if flag is None else flag or "--" + f.name.replace("_", "-")


#: Importance samples per point of the bound ``fit`` maximises by default on data with missing entries.
MASKED_PARTICLES = 20


def masked_defaults(chosen: Any) -> dict[str, Any]:
    """The objective of a VAE trained on data with missing entries, unless ``chosen`` (the names of
    the options the caller gave) names one: the :data:`MASKED_PARTICLES`-sample importance-weighted
    bound (MIWAE; ``docs/missing-data.md`` says why). ``fit`` and ``pyro-vae train --mask-missing``
    both read it."""
    return {} if {"elbo", "num_particles"} & set(chosen) else {"elbo": "iwae", "num_particles": MASKED_PARTICLES}


def objective_options(elbo: Any) -> dict[str, Any]:
    """The options that name a Pyro ELBO instance: ``Trace_ELBO(num_particles=4)`` is
    ``{"elbo": "trace", "num_particles": 4}``; ``JitTrace_ELBO`` adds ``jit=True``."""
    import pyro.infer as infer

    names = [
        (infer.JitTrace_ELBO, "trace", True),
        (infer.TraceMeanField_ELBO, "meanfield", False),
        (infer.TraceEnum_ELBO, "enum", False),
        (infer.Trace_ELBO, "trace", False),
    ]
    for kind, name, jit in names:
        if type(elbo) is kind:
            return {"elbo": name, "num_particles": elbo.num_particles, **({"jit": True} if jit else {})}
    raise ValueError(
        f"fit trains Trace_ELBO, JitTrace_ELBO, TraceMeanField_ELBO and TraceEnum_ELBO instances, or the names "
        f"{sorted(OBJECTIVES)}; got a {type(elbo).__name__}."
    )


def settings_from(settings: TrainSettings | None, options: Mapping[str, Any]) -> TrainSettings:
    """``settings`` with ``options`` applied, or settings built from the options alone. A Pyro ELBO
    instance as ``elbo`` becomes its name and particles (:func:`objective_options`)."""
    from pyro.infer import ELBO

    if isinstance(options.get("elbo"), ELBO):
        options = {**options, **objective_options(options["elbo"])}
    if settings is None:
        return TrainSettings(**options)
    if not isinstance(settings, TrainSettings):
        raise TypeError(f"settings must be a TrainSettings, got {type(settings).__name__}.")
    return settings.replace(**options) if options else settings


def with_training_options(function):
    """Show the fields of :class:`TrainSettings` in ``function``'s signature (as keyword arguments
    with their defaults, in place of its ``**options``) and in its docstring, so ``help(fit)`` and
    ``inspect.signature(fit)`` list every option with what it does."""
    signature = inspect.signature(function)
    kept = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    fields = dataclasses.fields(TrainSettings)
    clash = {f.name for f in fields} & {p.name for p in kept}
    if clash:
        raise TypeError(f"{function.__name__} has parameters named like training options: {sorted(clash)}")
    options = [inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default) for f in fields]
    function.__signature__ = signature.replace(parameters=[*kept, *options])
    lines = [f"        {f.name} (default {f.default!r}): {f.metadata['help']}." for f in fields]
    function.__doc__ = (function.__doc__ or "") + "\n    Training options:\n" + "\n".join(lines) + "\n"
    return function

"""Name-keyed registries of classes (likelihoods, priors): the choice is dispatched here, once."""

from __future__ import annotations

import inspect
from typing import Any


def registrar(table: dict[str, type], kind: str):
    """Return a decorator factory ``register(name)`` that adds a class to ``table`` under ``name``."""

    def register(name: str):
        def decorate(cls: type) -> type:
            if name in table:
                raise ValueError(f"A {kind} named {name!r} is already registered.")
            setattr(cls, "name", name)
            table[name] = cls
            return cls

        return decorate

    register.__doc__ = f"Class decorator that adds a {kind} class to the registry under ``name``."
    return register


def with_defaults(cls: type, config: dict[str, Any], *, skip: int = 1) -> dict[str, Any]:
    """``config`` completed with the defaults of the keyword arguments of ``cls``, as the class
    would be built; its first ``skip`` arguments (the latent dimension) are left out.

    Raises ``TypeError`` for an argument the constructor does not take.
    """
    parameters = list(inspect.signature(cls).parameters.values())[skip:]
    named = {p.name: p for p in parameters if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    takes_any = any(p.kind is p.VAR_KEYWORD for p in parameters)
    unknown = sorted(set(config) - set(named))
    if unknown and not takes_any:
        raise TypeError(f"{cls.__name__} takes no argument(s) {unknown}")
    defaults = {name: p.default for name, p in named.items() if p.default is not p.empty}
    return {**defaults, **config}

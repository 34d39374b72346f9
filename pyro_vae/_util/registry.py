"""Name-keyed registries of classes (likelihoods, priors): the choice is dispatched here, once."""

from __future__ import annotations


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

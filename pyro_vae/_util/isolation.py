"""Run Pyro code without touching the caller's global state."""

from __future__ import annotations

import contextlib

import pyro
import torch

from .checks import seed_value

#: What the private parameter store of :func:`isolated` starts with.
STARTS = ("caller", "empty")


@contextlib.contextmanager
def isolated(seed: int | None, *, start: str = "caller"):
    """A private parameter store and a private copy of torch's RNG seeded by ``seed``.

    Pyro samples with torch's global generator and registers modules in a global parameter
    store; inside this block both are private, so results depend on ``seed`` alone and nothing
    registered inside reaches the caller's store.

    ``start="caller"`` (every tool) begins the private store with the caller's parameters -- the
    same tensors, so a hand-written program's ``pyro.param`` sites keep their trained values --
    while names registered inside stay inside. ``start="empty"`` begins with nothing: training a
    :class:`~pyro_vae.VAE`, whose parameters all belong to the module, so two models in one
    process never share parameters by name.
    """
    if start not in STARTS:
        raise ValueError(f"start must be one of {STARTS}, got {start!r}.")
    seed = seed_value(seed)
    store = pyro.get_param_store()
    state = store.get_state() if start == "caller" else None
    with store.scope(state), torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        yield

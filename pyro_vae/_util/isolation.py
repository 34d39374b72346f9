"""Run Pyro code without touching the caller's global state."""

from __future__ import annotations

import contextlib

import pyro
import torch

from .checks import seed_value


@contextlib.contextmanager
def isolated(seed: int | None):
    """A private parameter store and a private copy of torch's RNG seeded by ``seed``.

    Pyro samples with torch's global generator and registers modules in a global parameter
    store; inside this block both are private, so results depend on ``seed`` alone and two
    models in one process never share parameters by name.
    """
    seed = seed_value(seed)
    with pyro.get_param_store().scope(), torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        yield

"""Run Pyro code without touching the caller's global state, one thread at a time.

Pyro's handler stack, its parameter store and torch's default generator are process-wide, not
per thread: two threads running Pyro programs at once interleave their traces (Pyro then reports
errors such as duplicate sample sites) and swap each other's parameter stores. Every pyro_vae tool
runs inside :func:`isolated`, which admits one thread at a time and refuses a second with a clear
message; for parallel work, use processes (``multiprocessing``, or ``torchrun`` for training).
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import pyro
import torch

from .checks import seed_value

#: What the private parameter store of :func:`isolated` starts with.
STARTS = ("caller", "empty")


_GUARD = threading.Lock()
_OWNER: dict[str, int | None] = {"thread": None, "depth": 0}


@contextlib.contextmanager
def _one_thread():
    me = threading.get_ident()
    with _GUARD:
        if _OWNER["thread"] not in (None, me):
            raise RuntimeError(
                "Another thread is running a pyro_vae tool. Pyro's state (its handler stack and parameter "
                "store) is shared by every thread of a process, so pyro_vae runs one call at a time: wait for "
                "the other call, or run the work in separate processes (multiprocessing, or torchrun to train)."
            )
        _OWNER["thread"] = me
        _OWNER["depth"] = (_OWNER["depth"] or 0) + 1
    try:
        yield
    finally:
        with _GUARD:
            _OWNER["depth"] = (_OWNER["depth"] or 1) - 1
            if not _OWNER["depth"]:
                _OWNER["thread"] = None


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

    A second thread entering while another is inside gets a ``RuntimeError`` (module docstring).
    """
    if start not in STARTS:
        raise ValueError(f"start must be one of {STARTS}, got {start!r}.")
    seed = seed_value(seed)
    store = pyro.get_param_store()
    state = store.get_state() if start == "caller" else None
    with _one_thread(), store.scope(state), torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        yield


F = TypeVar("F", bound=Callable[..., Any])


def leaves_pyro_state_alone(fn: F) -> F:
    """Run a public tool inside :func:`isolated` (no seed of its own): whatever it traces registers in
    a private copy of the caller's parameter store, draws from a private copy of torch's generator,
    and a call from a second thread is refused. The caller's store and RNG are as they were after it."""

    @functools.wraps(fn)
    def tool(*args, **kwargs):
        with isolated(None):
            return fn(*args, **kwargs)

    return tool  # type: ignore[return-value]

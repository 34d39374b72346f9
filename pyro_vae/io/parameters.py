"""The parameters of a hand-written Pyro program on disk: what ``fit(model, x, guide=...)`` checkpoints.

A program keeps its parameters in Pyro's parameter store (``pyro.param`` sites, and the networks
that ``pyro.module`` registers there). The file has the layout of :mod:`pyro_vae.io.checkpoint`
(``format``, ``version``, a JSON ``config``, ``state_dict``, optionally ``training``), with
``config = {"kind": "program", "parameters": {name: shape}}`` and the store's *unconstrained*
values as ``state_dict``. Nothing is unpickled on reading (``weights_only``), and the program
itself -- its code -- is never stored: rebuild it, then load the values into it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pyro
import torch

from .._util.files import atomic_write
from .checkpoint import FORMAT, PROGRAM_KIND, VERSION, read_payload, refuse_non_finite, training_fields


def save_parameters(path: str | os.PathLike) -> Path:
    """Write every parameter in Pyro's parameter store (a program's ``pyro.param`` sites and the
    networks it registers with ``pyro.module``) to ``path`` atomically; :func:`load_parameters`
    reads them back into a rebuilt program. Returns the path."""
    return write_parameters(dict(pyro.get_param_store().named_parameters()), path)


def write_parameters(
    state: dict[str, torch.Tensor], path: str | os.PathLike, *, training: dict[str, Any] | None = None
) -> Path:
    """Write a program's parameter values ``{name: unconstrained tensor}`` to ``path`` atomically."""
    path = Path(path)
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "config": json.dumps({"kind": PROGRAM_KIND, "parameters": {k: list(v.shape) for k, v in state.items()}}),
        "state_dict": {k: v.detach().cpu() for k, v in state.items()},
    }
    if training is not None:
        payload["training"] = training
    atomic_write(path, lambda handle: torch.save(payload, handle))
    return path


def read_parameters(path: str | os.PathLike) -> dict[str, Any]:
    """The checked payload of a file written by :func:`write_parameters` (or :func:`save_parameters`)."""
    payload = read_payload(path)
    config = payload["config_dict"]
    if config.get("kind") != PROGRAM_KIND or not isinstance(config.get("parameters"), dict):
        raise ValueError(f"{path} holds a saved VAE, not a program's parameters: load it with pyro_vae.load(path).")
    shapes = {k: list(v.shape) for k, v in payload["state_dict"].items()}
    if shapes != config["parameters"]:
        raise ValueError(f"{path}: the parameters do not match the shapes its configuration records (a damaged file).")
    return payload


def check_fits(saved: dict[str, torch.Tensor], current: dict[str, torch.Tensor], path) -> None:
    """Refuse saved values whose names or shapes differ from the program's own, naming the differences."""
    missing, unexpected = sorted(set(current) - set(saved)), sorted(set(saved) - set(current))
    wrong = [
        f"{k}: saved {tuple(saved[k].shape)}, program {tuple(current[k].shape)}"
        for k in current
        if k in saved and saved[k].shape != current[k].shape
    ]
    if missing or unexpected or wrong:
        parts = [
            f"the program has {missing[:5]} that the file lacks" if missing else "",
            f"the file has {unexpected[:5]} that the program lacks" if unexpected else "",
            f"shapes differ: {wrong[:5]}" if wrong else "",
        ]
        raise ValueError(f"{path} holds the parameters of another program: {'; '.join(p for p in parts if p)}.")


def load_parameters(path: str | os.PathLike, *, best: bool = False) -> list[str]:
    """Put the parameter values saved in ``path`` into Pyro's parameter store, by name.

    A name the store holds already gets the saved value in place (the rebuilt program's networks
    registered with ``pyro.module`` keep their identity); a name it lacks is added unconstrained.
    Run the rebuilt model and guide once first so the store knows each parameter's constraint.
    With ``best=True``, a training checkpoint's best validation epoch is loaded. Returns the names.
    """
    payload = read_parameters(path)
    state = payload["state_dict"]
    if best:
        if "training" not in payload:
            raise ValueError(f"{path} holds saved parameters, not a training checkpoint: load it without best=True.")
        state = training_fields(payload["training"], path)["best_state"]
        if state is None:
            raise ValueError(f"{path} has no best validation epoch yet: load it without best=True.")
        refuse_non_finite(state, path, "best-epoch parameters")
    store = pyro.get_param_store()
    current = dict(store.named_parameters())
    for name, value in state.items():
        if name in current:
            if current[name].shape != value.shape:
                raise ValueError(
                    f"{path}: {name} has shape {tuple(value.shape)} there, {tuple(current[name].shape)} in the store."
                )
            with torch.no_grad():
                current[name].copy_(value)
        else:
            store[name] = value.clone()
    return sorted(state)

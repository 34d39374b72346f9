"""Saving and loading: tensors in a ``torch.save`` file read back with ``weights_only=True``
(no unpickling of arbitrary objects), configuration as JSON, every write atomic.

A file written here is a dictionary with keys ``format``, ``version``, ``config`` (a JSON string,
see :meth:`pyro_vae.VAE.config`), ``state_dict`` and, for training checkpoints, ``training``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ._io import atomic_write
from .model import VAE

FORMAT = "pyro_vae"
VERSION = 1


def save(vae: VAE, path: str | os.PathLike, *, training: dict[str, Any] | None = None) -> Path:
    """Write ``vae`` (configuration and parameters) to ``path`` atomically.

    The file is first written beside ``path`` and then renamed over it, so a crash mid-save
    leaves any earlier file at ``path`` intact. Returns the path.
    """
    path = Path(path)
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "config": json.dumps(vae.config()),
        "state_dict": {k: v.detach().cpu() for k, v in vae.state_dict().items()},
    }
    if training is not None:
        payload["training"] = training
    atomic_write(path, lambda handle: torch.save(payload, handle))
    return path


def load(path: str | os.PathLike, *, cls: type[VAE] = VAE, **networks: nn.Module) -> VAE:
    """Rebuild a VAE saved by :func:`save`.

    A model built with user networks needs them again: ``load(path, encoder=..., decoder=...)``;
    one saved from a subclass of :class:`~pyro_vae.VAE` needs its class: ``load(path, cls=MyVAE)``.
    Raises ``ValueError`` for a truncated, corrupt or foreign file, and for parameters that do not
    fit the architecture.
    """
    payload = read_checkpoint(path)
    if not (isinstance(cls, type) and issubclass(cls, VAE)):
        raise TypeError(f"cls must be pyro_vae.VAE or a subclass of it, got {cls!r}.")
    vae = cls.from_config(json.loads(payload["config"]), **networks)
    load_state(vae, payload["state_dict"], path)
    return vae


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The raw dictionary of a file written by :func:`save`, read safely and checked."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No checkpoint at {path}.")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for damaged archives
        raise ValueError(
            f"{path} is not a readable pyro_vae checkpoint (truncated or corrupt?): "
            f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path} is not a pyro_vae checkpoint.")
    if payload.get("version") != VERSION:
        raise ValueError(
            f"{path} has checkpoint format version {payload.get('version')}; this pyro_vae reads {VERSION}."
        )
    return payload


def load_state(vae: VAE, state_dict: dict[str, torch.Tensor], source: Any = "checkpoint") -> None:
    """Copy ``state_dict`` into ``vae``, explaining any mismatch of names or shapes."""
    own = vae.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    wrong = [
        f"{k}: saved {tuple(state_dict[k].shape)}, model {tuple(own[k].shape)}"
        for k in own
        if k in state_dict and state_dict[k].shape != own[k].shape
    ]
    if missing or unexpected or wrong:
        details = "; ".join(
            part
            for part in (
                f"missing {missing[:5]}" if missing else "",
                f"unexpected {unexpected[:5]}" if unexpected else "",
                f"shape mismatch {wrong[:5]}" if wrong else "",
            )
            if part
        )
        raise ValueError(f"{source} holds parameters of another architecture: {details}.")
    vae.load_state_dict(state_dict)

"""Saving and loading: tensors in a ``torch.save`` file read back with ``weights_only=True``
(no unpickling of arbitrary objects), configuration as JSON, every write atomic.

A file written here is a dictionary with keys ``format``, ``version``, ``config`` (a JSON string,
see :meth:`pyro_vae.VAE.config`), ``state_dict`` and, for training checkpoints, ``training``.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

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


def load(path: str | os.PathLike, **networks: nn.Module) -> VAE:
    """Rebuild a VAE saved by :func:`save`.

    A model built with user networks needs them again: ``load(path, encoder=..., decoder=...)``.
    Raises ``ValueError`` for a truncated, corrupt or foreign file, and for parameters that do not
    fit the architecture.
    """
    payload = read_checkpoint(path)
    vae = VAE.from_config(json.loads(payload["config"]), **networks)
    load_state(vae, payload["state_dict"], path)
    return vae


def load_run(run: str | os.PathLike, **networks: nn.Module) -> tuple[VAE, Any, dict[str, Any]]:
    """``(vae, dataset, config)`` of a run folder written by ``pyro-vae train`` or ``pyro-vae demo``.

    The data set is loaded with the run's own settings (name, binarisation, values, seed), so its
    validation and test splits are the ones the model was checked against.
    """
    from . import data

    run = Path(run)
    if not (run / "config.json").is_file():
        raise FileNotFoundError(f"{run} is not a run folder: it has no config.json (write one with pyro-vae train).")
    config = json.loads((run / "config.json").read_text())
    vae = load(run / "model.pt", **networks)
    dataset = data.load(config["data"], binarize=config["binarize"], values=config.get("values", "unit"),
                        seed=config["seed"])  # fmt: skip
    return vae, dataset, config


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


def atomic_write(path: Path, write) -> None:
    """Call ``write(handle)`` on a temporary file beside ``path``, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

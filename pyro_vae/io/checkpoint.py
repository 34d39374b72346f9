"""Saving and loading: tensors in a ``torch.save`` file read back with ``weights_only=True``
(no unpickling of arbitrary objects), configuration as JSON, every write atomic.

A file written here is a dictionary with keys ``format``, ``version``, ``config`` (a JSON string,
see :meth:`pyro_vae.VAE.config`), ``state_dict`` and, for training checkpoints, ``training``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Set as AbstractSet
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._util.files import atomic_write
from .._util.untrusted import bounded_int, parse_json, read_torch_file
from ..vae.config import class_path, current_class_path, normalised_config
from ..vae.guides import GUIDES
from ..vae.hierarchy import HierarchicalVAE
from ..vae.model import VAE
from ..vae.networks import mlp_parameter_count
from ..vae.priors import PRIORS

FORMAT = "pyro_vae"
VERSION = 1
#: The VAE classes of pyro_vae itself, which load finds by the class path a file records.
_BUILT_IN: dict[str, type[VAE]] = {class_path(VAE): VAE, class_path(HierarchicalVAE): HierarchicalVAE}


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


def load(path: str | os.PathLike, *, cls: type[VAE] = VAE, best: bool = False, **networks: nn.Module) -> VAE:
    """Rebuild a VAE saved by :func:`save`.

    A model built with user networks needs them again: ``load(path, encoder=..., decoder=...)``;
    one saved from a subclass of :class:`~pyro_vae.VAE` needs its class: ``load(path, cls=MyVAE)``.
    With ``best=True``, ``path`` is a training checkpoint written by ``fit(..., checkpoint=path,
    val=...)`` and the model gets the parameters of its best validation epoch so far rather than
    those of its last epoch (useful while a long run is still going).
    Raises ``ValueError`` for a truncated, corrupt or foreign file, for parameters that do not fit
    the architecture, and with ``best=True`` for a file that holds no best validation epoch.
    """
    if not (isinstance(cls, type) and issubclass(cls, VAE)):
        raise TypeError(f"cls must be pyro_vae.VAE or a subclass of it, got {cls!r}.")
    payload = read_checkpoint(path)
    config = payload["config_dict"]
    if cls is VAE:  # a built-in subclass (HierarchicalVAE) is found from the file itself
        cls = _BUILT_IN.get(current_class_path(config["class"]), VAE)
    state = _best_state(payload, path) if best else payload["state_dict"]
    check_budget(config, state, path, custom=set(networks))
    vae = cls.from_config(config, **networks)
    load_state(vae, state, path)
    vae.trained = True
    return vae


def _best_state(payload: dict[str, Any], path) -> dict[str, torch.Tensor]:
    if "training" not in payload:
        raise ValueError(
            f"{path} holds a saved model, not a training checkpoint, so it has no best epoch: "
            "load it without best=True."
        )
    state = training_fields(payload["training"], path)["best_state"]
    if state is None:
        raise ValueError(
            f"{path} has no best validation epoch yet (training without val=, or before its first "
            "validated epoch): load it without best=True for its last parameters."
        )
    refuse_non_finite(state, path, "best-epoch parameters")
    return state


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The raw dictionary of a file written by :func:`save`, read safely and checked."""
    payload = read_payload(path)
    config = payload["config_dict"]
    if config.get("kind") == PROGRAM_KIND:
        raise ValueError(
            f"{path} holds the parameters of a hand-written Pyro program, not a VAE: rebuild the program "
            "and load them with pyro_vae.load_parameters(path), or resume with fit(model, x, guide=guide, "
            "checkpoint=path, resume=True)."
        )
    _check_config_fields(config, path)
    return {**payload, "config_dict": normalised_config(config)}


def refuse_non_finite(state: dict[str, torch.Tensor], path: Any, what: str = "parameters") -> None:
    """Parameters that are complex, or floating-point and not finite, are refused: every result of such
    a model would be NaN (or silently the real part)."""
    complex_ = [k for k, v in state.items() if v.is_complex()]
    if complex_:
        raise ValueError(f"{path} holds complex {what} ({complex_[:3]}); a model's parameters are real numbers.")
    not_finite = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if not_finite:
        raise ValueError(
            f"{path} holds {what} that are not finite numbers ({not_finite[:3]}): every result of such a "
            "model would be NaN. Load an earlier checkpoint, or retrain."
        )


#: The ``kind`` in the configuration of a file holding a hand-written program's parameters.
PROGRAM_KIND = "program"


def read_payload(path: str | os.PathLike) -> dict[str, Any]:
    """A file written by :func:`save` or :func:`pyro_vae.io.parameters.write_parameters`, read safely:
    format, version, the JSON configuration (as ``config_dict``), a mapping of names to tensors."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No checkpoint at {path}.")
    payload = read_torch_file(path, "pyro_vae checkpoint")
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path} is not a pyro_vae checkpoint.")
    if payload.get("version") != VERSION:
        raise ValueError(
            f"{path} has checkpoint format version {payload.get('version')!r}; this pyro_vae reads {VERSION}."
        )
    config = parse_json(payload.get("config"), f"{path}: the configuration")
    if not isinstance(config, dict):
        raise ValueError(f"{path}: the configuration is not a JSON object.")
    state = payload.get("state_dict")
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise ValueError(f"{path}: the parameters are not a mapping of names to tensors.")
    refuse_non_finite(state, path)
    if "training" in payload and not isinstance(payload["training"], dict):
        raise ValueError(f"{path}: the training state is damaged.")
    return {**payload, "config_dict": config}


#: Caps on the sizes a configuration read from a file may name.
CAPS = {
    "input_dim": 2**24,
    "latent_dim": 2**16,
    "covariate_dim": 2**16,
    "hidden": 2**16,
    "layers": 64,
    "options": 2**24,
    "flows": 256,
    "components": 2**20,
}
_FIELDS = {
    "input_dim": int,
    "latent_dim": int,
    "hidden_sizes": list,
    "activation": str,
    "likelihood": str,
    "likelihood_kwargs": dict,
    "prior": str,
    "prior_kwargs": dict,
}


def _check_config_fields(config: dict, path) -> None:
    where = f"{path}: the configuration"
    for key, kind in _FIELDS.items():
        if not isinstance(config.get(key), kind):
            raise ValueError(f"{where} lacks a valid {key!r} (expected {kind.__name__}, got {config.get(key)!r}).")
    bounded_int(config["input_dim"], "input_dim", CAPS["input_dim"], where)
    bounded_int(config["latent_dim"], "latent_dim", CAPS["latent_dim"], where)
    bounded_int(config.get("covariate_dim", 0), "covariate_dim", CAPS["covariate_dim"], where, minimum=0)
    hidden = config["hidden_sizes"]
    if len(hidden) > CAPS["layers"]:
        raise ValueError(f"{where} names {len(hidden)} hidden layers, more than {CAPS['layers']}.")
    for size in hidden:
        bounded_int(size, "each hidden size", CAPS["hidden"], where)
    for group in ("likelihood_kwargs", "prior_kwargs", "guide_kwargs", "latent_mixture"):
        _check_options(config.get(group) or {}, f"{where}, {group}")


def _check_options(options: Any, where: str) -> None:
    if not isinstance(options, dict):
        raise ValueError(f"{where} must be a JSON object, got {type(options).__name__}.")
    for key, value in options.items():
        values = value if isinstance(value, list) else [value]
        if len(values) > CAPS["layers"]:
            raise ValueError(f"{where}: {key} has {len(values)} entries, more than {CAPS['layers']}.")
        for item in values:
            if isinstance(item, (int, float)) and not isinstance(item, bool) and not abs(item) <= CAPS["options"]:
                raise ValueError(f"{where}: {key} = {item!r} is beyond the {CAPS['options']:,} a size may be.")


def check_budget(config: dict, state: dict[str, torch.Tensor], path, *, custom: AbstractSet[str] = frozenset()) -> int:
    """Refuse a configuration that would build far more numbers than the file's tensors hold.

    The bound is computed from the configuration alone (no module is built), so a small file whose
    configuration names enormous sizes is refused before any allocation. Returns the bound.
    """
    held = sum(t.numel() for t in state.values())
    budget = parameter_bound(config, custom=custom)
    if budget > 4 * held + 2**20:
        raise ValueError(
            f"{path}: its configuration describes a model of about {budget:,} numbers, but the file holds "
            f"{held:,}: the configuration does not match the tensors (a damaged or foreign file)."
        )
    return budget


def parameter_bound(config: dict, *, custom: AbstractSet[str] = frozenset()) -> int:
    """An upper bound on the numbers a VAE built from ``config`` holds (within a factor of ~2)."""
    from ..likelihoods import get_likelihood

    d, latent, k = config["input_dim"], config["latent_dim"], config.get("covariate_dim", 0)
    hidden = list(config["hidden_sizes"])
    gated = config.get("activation") == "gated"  # two linear maps per hidden layer
    try:
        per_feature = get_likelihood(config["likelihood"], **config["likelihood_kwargs"]).params_per_feature
    except (ValueError, TypeError) as error:
        raise ValueError(f"the configuration's likelihood is invalid: {error}") from None
    total = 4 * d  # per-feature likelihood parameters
    if "encoder" not in custom:
        total += mlp_parameter_count([d + k, *hidden, 2 * latent], gated)
    if "decoder" not in custom:
        total += mlp_parameter_count([latent + k, *reversed(hidden), d * per_feature], gated)
    # Each registered prior and guide family states its own count from its configuration.
    try:
        total += PRIORS[config["prior"]].parameter_count(latent, d, **(config.get("prior_kwargs") or {}))
        total += GUIDES[config.get("guide", "normal")].parameter_count(latent, **(config.get("guide_kwargs") or {}))
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"the configuration's prior or guide is invalid: {error}") from None
    mixture = config.get("latent_mixture") or {}
    total += mixture.get("num_components", 0) * (1 + latent + latent * latent)
    return int(total)


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
    # Whole numbers where the model holds real ones (or the other way round) are another model's.
    wrong += [
        f"{k}: saved {state_dict[k].dtype}, model {own[k].dtype}"
        for k in own
        if k in state_dict and state_dict[k].is_floating_point() != own[k].is_floating_point()
    ]
    if missing or unexpected or wrong:
        details = "; ".join(
            part
            for part in (
                f"missing {missing[:5]}" if missing else "",
                f"unexpected {unexpected[:5]}" if unexpected else "",
                f"shape or type mismatch {wrong[:5]}" if wrong else "",
            )
            if part
        )
        raise ValueError(f"{source} holds parameters of another architecture: {details}.")
    vae.load_state_dict(state_dict)


#: The training state of a checkpoint: field -> accepted types.
_TRAINING_FIELDS: dict[str, type | tuple[type, ...]] = {
    "epoch": int,
    "rows": list,
    "best_val": float,
    "best_epoch": (int, type(None)),
    "best_state": (dict, type(None)),
    "bad_epochs": int,
    "rng_state": (torch.Tensor, type(None)),
    "optimizer": dict,
    "settings": str,
}


def training_fields(training: dict, path) -> dict:
    """The training state, or a ``ValueError`` naming the first missing or mistyped field."""
    for key, kind in _TRAINING_FIELDS.items():
        value = training.get(key, KeyError)
        if value is KeyError or not isinstance(value, kind) or isinstance(value, bool):
            raise ValueError(f"{path}: the training state is damaged ({key!r} is missing or of the wrong type).")
    if training["epoch"] < 0 or not all(isinstance(r, dict) for r in training["rows"]):
        raise ValueError(f"{path}: the training state is damaged (epoch or history rows).")
    if training["best_state"] is not None and not all(
        isinstance(v, torch.Tensor) for v in training["best_state"].values()
    ):
        raise ValueError(f"{path}: the training state is damaged (best_state).")
    return training

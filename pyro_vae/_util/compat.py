"""Every private or version-dependent API of torch, Pyro and ArviZ that pyro_vae uses, in one place.

A new release that moves one of these breaks this module alone.
"""

from __future__ import annotations

import warnings
from types import ModuleType
from typing import Any

from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ["TorchDispatchMode", "active_plate_size", "arviz", "write_dataset", "write_inference_data"]


def active_plate_size(name: str) -> int | None:
    """The full size of the active ``pyro.plate`` called ``name`` (``N`` for a subsampling plate), read
    from Pyro's handler stack: a trace frame records only the subsample's size."""
    from pyro.poutine.plate_messenger import PlateMessenger
    from pyro.poutine.runtime import _PYRO_STACK

    for messenger in reversed(_PYRO_STACK):
        if isinstance(messenger, PlateMessenger) and messenger.name == name:
            return messenger.size
    return None


def arviz() -> ModuleType:
    """Import ArviZ without its import-time notice about a future refactor."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        import arviz as az
    return az


def write_dataset(
    values: dict[str, Any], *, coords: dict[str, Any], dims: dict[str, list[str]], attrs: dict[str, str], sampled: bool
) -> Any:
    """One ArviZ group from NumPy arrays: ``(chain, draw, ...)`` when ``sampled``, else data as it is."""
    import pyro

    return arviz().dict_to_dataset(
        values, attrs=attrs, library=pyro, coords=coords, dims=dims, default_dims=None if sampled else []
    )


def write_inference_data(groups: dict[str, Any]) -> Any:
    """ArviZ's container of the groups; refuses to hand back one that silently lost a group."""
    idata = arviz().InferenceData(**groups)
    missing = sorted(set(groups) - set(idata.groups()))
    if missing:
        raise RuntimeError(f"ArviZ dropped the group(s) {missing} of this export; please report this as a bug.")
    return idata

"""Every private or version-dependent API of torch, Pyro and ArviZ that pyro_vae uses, in one place.

A new release that moves one of these breaks this module alone.
"""

from __future__ import annotations

import warnings
from types import ModuleType

from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ["TorchDispatchMode", "arviz"]


def arviz() -> ModuleType:
    """Import ArviZ without its import-time notice about a future refactor."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        import arviz as az
    return az

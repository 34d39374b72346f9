"""Every private or version-dependent API of torch and Pyro that pyro_vae uses, in one place.

A new release that moves one of these breaks this module alone. ArviZ, whose two supported lines
differ widely, has a module of its own: :mod:`pyro_vae._util.arviz_compat`.
"""

from __future__ import annotations

from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ["TorchDispatchMode", "active_plate_size"]


def active_plate_size(name: str) -> int | None:
    """The full size of the active ``pyro.plate`` called ``name`` (``N`` for a subsampling plate), read
    from Pyro's handler stack: a trace frame records only the subsample's size."""
    from pyro.poutine.plate_messenger import PlateMessenger
    from pyro.poutine.runtime import _PYRO_STACK

    for messenger in reversed(_PYRO_STACK):
        if isinstance(messenger, PlateMessenger) and messenger.name == name:
            return messenger.size
    return None

"""Every private or version-dependent API of torch and Pyro that pyro_vae uses, in one place.

A new release that moves one of these breaks this module alone. ArviZ, whose two supported lines
differ widely, has a module of its own: :mod:`pyro_vae._util.arviz_compat`.
"""

from __future__ import annotations

from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ["TorchDispatchMode", "active_plate_size"]


def active_plate_size(name: str) -> int | None:
    """The full size of the active ``pyro.plate`` called ``name`` (``N`` for a subsampling plate), read
    from Pyro's handler stack: a trace frame records only the subsample's size.

    A plate declared without a size (``pyro.plate("data")``, as Pyro's examples write it) has no
    size of its own: Pyro records ``-1`` and lets it broadcast. ``None`` is returned for it, as for
    a plate that is not active; the caller reads the size from the data it passed.
    """
    from pyro.poutine.plate_messenger import PlateMessenger
    from pyro.poutine.runtime import _PYRO_STACK

    for messenger in reversed(_PYRO_STACK):
        if isinstance(messenger, PlateMessenger) and messenger.name == name:
            return messenger.size if messenger.size is not None and messenger.size > 0 else None
    return None

"""Warnings that point at the user's line: the first frame outside pyro_vae (and its wrappers)."""

from __future__ import annotations

import os
import sys
import warnings

_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
# Frames of the decorators that wrap the public tools (torch.no_grad, contextlib) are skipped too.
_WRAPPERS = (os.sep + "contextlib.py", os.sep + os.path.join("torch", "utils", "_contextlib.py"))


def warn_user(message: str, category: type[Warning] = UserWarning) -> None:
    """``warnings.warn`` with the stack level of the caller's own code, however deep inside the
    package (and behind which decorators) the warning is raised, so that the location printed with
    it is a line the user wrote, not a file of the library."""
    frame = sys._getframe(1)
    level = 2  # warnings.warn's stacklevel of warn_user's caller
    while frame.f_back is not None and (
        frame.f_code.co_filename.startswith(_PACKAGE) or frame.f_code.co_filename.endswith(_WRAPPERS)
    ):
        frame = frame.f_back
        level += 1
    warnings.warn(message, category, stacklevel=level)

"""Argument checks shared by the public functions, so every message reads the same."""

from __future__ import annotations

from typing import Any

import numpy as np


def positive_int(value: Any, name: str) -> int:
    """Return ``value`` as an ``int`` if it is a whole number >= 1 (not a bool); else raise ``ValueError``."""
    if not (isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 1):
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    return int(value)

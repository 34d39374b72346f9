"""Argument checks shared by the public functions, so every message reads the same."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from .value_checks import all_whole, extremes


def positive_int(value: Any, name: str) -> int:
    """Return ``value`` as an ``int`` if it is a whole number >= 1.

    Raises ``TypeError`` for anything but a Python or numpy integer (a bool, a float such as ``2.0``,
    a string), and ``ValueError`` for an integer below 1.
    """
    return _integer(value, name, 1, "a positive integer")


def nonnegative_int(value: Any, name: str) -> int:
    """Return ``value`` as an ``int`` if it is a whole number >= 0; ``TypeError``/``ValueError`` as
    :func:`positive_int`."""
    return _integer(value, name, 0, "a non-negative integer")


#: Seeds lie within this magnitude: torch takes 64-bit seeds, and the tools add small offsets to them.
SEED_LIMIT = 2**62


def seed_value(value: Any, name: str = "seed") -> int | None:
    """A seed: ``None`` or a Python or numpy integer of magnitude below ``2**62`` (``TypeError`` for
    another type, ``ValueError`` for one out of range), as an ``int``."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int or None, got {type(value).__name__}.")
    if not -SEED_LIMIT < int(value) < SEED_LIMIT:
        raise ValueError(f"{name} must be an integer of magnitude below 2**62, got {int(value)}.")
    return int(value)


def _integer(value: Any, name: str, minimum: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be {what}, got {value!r} of type {type(value).__name__}.")
    if value < minimum:
        raise ValueError(f"{name} must be {what}, got {value!r}.")
    return int(value)


def positive_number(value: Any, name: str) -> float:
    """Return ``value`` as a ``float`` if it is a finite real number > 0: ``TypeError`` for anything but
    a Python or numpy real number (a bool, a string), ``ValueError`` for one that is not finite and > 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a finite positive number, got {value!r} of type {type(value).__name__}.")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite positive number, got {value!r}.")
    return float(value)


def as_tensor(value: Any, what: str, dtype: torch.dtype | None = None, *, keep_bool: bool = False) -> torch.Tensor:
    """``value`` (tensor, numpy array or pandas frame/series) as a tensor, or a ``TypeError``/``ValueError``.

    Booleans, integers and floats of any width become ``dtype`` when it is given (the model's
    floating type), else booleans become the default float type (unless ``keep_bool``: masks a
    program passes to ``obs_mask=`` or ``poutine.mask`` stay boolean) and the rest keep theirs.
    Complex values, object arrays and other containers are refused.
    """
    if hasattr(value, "to_numpy") and type(value).__module__.startswith("pandas"):
        value = value.to_numpy()
    if isinstance(value, np.ndarray):
        if value.dtype == object or value.dtype.kind in "USV":
            raise TypeError(f"{what} is a numpy array of {value.dtype} values; pass numbers (a float array).")
        if value.dtype.kind == "c":
            raise ValueError(f"{what} has complex values; pass real numbers (e.g. x.real or abs(x)).")
        value = np.ascontiguousarray(value)
        # A read-only array (a memory map, a pandas 3 frame's values) is copied: a tensor shares its
        # memory and may be written to.
        value = torch.from_numpy(value if value.flags.writeable else value.copy())
    if not isinstance(value, torch.Tensor):
        raise TypeError(
            f"{what} must be a torch.Tensor or numpy array (or a pandas DataFrame), got {type(value).__name__}; "
            "convert it first, e.g. torch.as_tensor(x, dtype=torch.float32)."
        )
    if value.is_complex():
        raise ValueError(f"{what} has complex values; pass real numbers (e.g. x.real or x.abs()).")
    if dtype is not None and value.dtype != dtype:
        refuse_inexact_counts(value, dtype, what)
        return value.to(dtype)
    if value.dtype == torch.bool and not keep_bool:
        return value.to(torch.get_default_dtype())
    return value


def refuse_inexact_counts(values: Any, dtype: torch.dtype, what: str) -> None:
    """``ValueError`` when whole numbers (an integer tensor or array, or a wider floating one whose
    values are all whole) are too large for ``dtype`` to hold exactly: above 2**24 for float32
    (2**11 for float16), where counts would silently round."""
    exact = _EXACT_INTEGERS.get(dtype)
    if exact is None or not isinstance(values, (torch.Tensor, np.ndarray)):
        return
    tensor = torch.as_tensor(values)
    if tensor.dtype == torch.bool or tensor.numel() == 0:
        return
    if tensor.is_floating_point():
        if torch.finfo(tensor.dtype).bits <= torch.finfo(dtype).bits or not bool(torch.isfinite(tensor).all()):
            return  # no narrowing, or values the data checks refuse anyway
        low, high = extremes(tensor)
        if max(abs(low), abs(high)) <= exact or not all_whole(tensor):
            return  # real values round as real values do; only whole numbers are counts
    largest = int(tensor.abs().max())
    if largest > exact:
        raise ValueError(
            f"{what} holds whole numbers up to {largest:,}, beyond {exact:,}, the largest {dtype} holds exactly: "
            "counts would be rounded. Rescale them (e.g. divide by a size factor) or use float64."
        )


#: Largest whole number each floating type holds exactly (with all the smaller ones).
_EXACT_INTEGERS = {torch.float16: 2**11, torch.bfloat16: 2**8, torch.float32: 2**24}

"""Missing entries: a boolean ``mask`` beside ``x``, True where a value was observed.

Every tool that reads ``x`` takes ``mask=`` (same shape as ``x``; ``x`` may hold NaN where the mask
is False). The observed site's log-density then counts the observed entries only,

.. math::

    \\log p(x_{\\mathrm{obs}} \\mid z) = \\sum_{d:\\, m_d} \\log p(x_d \\mid z),

for a likelihood that factorises over features (an ``Independent`` distribution, as every
registered likelihood is). A program that declares a ``mask`` keyword parameter receives the mask
and handles it itself (the :class:`~pyro_vae.VAE` does, and its encoder sees it); for any other
program the tools mask the observed site whose value is ``x`` (:class:`MaskObserved`).

Missing entries are filled before anything runs (:func:`fill_missing`) with a value of the same
feature that was observed elsewhere, so every value is in the likelihood's support; the fill is
never scored.
"""

from __future__ import annotations

from typing import Any

import pyro.distributions as dist
import torch
from pyro.poutine.messenger import Messenger

from .._util.checks import as_tensor


def check_mask(mask: Any, x: Any, what: str = "x") -> torch.Tensor:
    """``mask`` as a boolean tensor of ``x``'s shape, or a ``ValueError``/``TypeError`` saying why not."""
    mask = as_tensor(mask, f"the mask of {what}", keep_bool=True)
    if mask.dtype != torch.bool:
        raise TypeError(
            f"mask must be boolean (True where {what} was observed), got {mask.dtype}; pass e.g. ~torch.isnan(x)."
        )
    shape = tuple(x.shape)
    if tuple(mask.shape) != shape:
        raise ValueError(f"mask has shape {tuple(mask.shape)} but {what} has {shape}: one flag per value.")
    return mask


def fill_missing(x: torch.Tensor, mask: torch.Tensor, what: str = "x") -> torch.Tensor:
    """``x`` with every entry where ``mask`` is False replaced by an observed value of the same feature.

    Refuses NaN where the mask says observed, and features observed in no row (nothing to fill
    them with, and nothing to learn about them).
    """
    if x.is_floating_point() and bool(torch.isnan(x[mask]).any()):
        raise ValueError(f"{what} has NaN where the mask says observed: set the mask to False there.")
    flat, flat_mask = x.reshape(x.shape[0], -1), mask.reshape(mask.shape[0], -1)
    seen = flat_mask.any(0)
    if not bool(seen.all()):
        missing = torch.nonzero(~seen).flatten()[:5].tolist()
        raise ValueError(f"Features {missing} of {what} are observed in no row; drop them or observe them somewhere.")
    first = flat_mask.to(torch.int8).argmax(0)  # the first row where each feature was observed
    fill = flat[first, torch.arange(flat.shape[1])]
    return torch.where(flat_mask, flat, fill.expand_as(flat)).reshape(x.shape)


def mask_features(fn: dist.TorchDistribution, mask: torch.Tensor) -> dist.TorchDistribution:
    """``fn`` (``Independent`` over features, or with the features in a plate) scoring only the
    entries where ``mask`` is True. A distribution of features transformed one by one (a likelihood
    on standardised data) says how with its own ``mask_features(mask, masked_base)``."""
    if hasattr(fn, "mask_features") and hasattr(fn, "base"):
        return fn.mask_features(mask, mask_features(fn.base, mask))
    if not isinstance(fn, torch.distributions.Independent):
        if tuple(fn.batch_shape[len(fn.batch_shape) - mask.ndim :]) == tuple(mask.shape):
            return fn.mask(mask)  # features in a plate of their own: the batch is elementwise already
        raise ValueError(
            f"Masking missing entries needs a likelihood that factorises over features (an Independent "
            f"distribution, .to_event(1)); the observed site has a {type(fn).__name__}."
        )
    return dist.MaskedDistribution(fn.base_dist, mask).to_event(fn.reinterpreted_batch_ndims)


class MaskObserved(Messenger):
    """Scores only the observed entries of the sites whose observed value is ``x`` itself, or a view
    of it with another shape (Pyro's tutorials write ``obs=x.reshape(-1, 784)``)."""

    def __init__(self, x: torch.Tensor, mask: torch.Tensor):
        super().__init__()
        self.x, self.mask = x, mask
        self.applied = False

    def _process_message(self, msg):
        if msg["type"] == "sample" and msg["is_observed"] and views_x(msg["value"], self.x):
            msg["fn"] = mask_features(msg["fn"], self.mask.reshape(msg["value"].shape))
            self.applied = True

    def check_applied(self) -> None:
        if not self.applied:
            raise ValueError(
                "The model does not observe x itself (obs=x, or a view of x such as x.reshape(...)), so the "
                "tools cannot mask its missing entries: "
                "declare a keyword parameter mask and mask the likelihood yourself, e.g. "
                "dist.Normal(loc, scale).mask(mask).to_event(1)."
            )


def views_x(value, x: torch.Tensor) -> bool:
    """Whether ``value`` is ``x`` or a view of all of it in the same order (a reshape without a copy)."""
    if value is x:
        return True
    return (
        isinstance(value, torch.Tensor)
        and value.numel() == x.numel()
        and value.data_ptr() == x.data_ptr()
        and value.is_contiguous()
        and x.is_contiguous()
    )

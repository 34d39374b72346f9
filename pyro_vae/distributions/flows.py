"""Stacks of flow layers, as the flow prior and the IAF guide build them."""

from __future__ import annotations

from collections.abc import Sequence

import pyro.distributions.transforms as T
import torch


def reversing_stack(
    layers: Sequence[T.Transform], latent_dim: int, device: torch.device | None = None
) -> list[T.Transform]:
    """``layers`` in order with the coordinates reversed between consecutive layers, so that a layer
    that transforms some coordinates by the others (a coupling, an autoregressive map) reaches them all.

    The reversal is a fixed permutation with log-determinant 0: ``f_K o R o ... o R o f_1``.
    """
    reverse = torch.arange(latent_dim - 1, -1, -1, device=device)
    stack: list[T.Transform] = []
    for i, layer in enumerate(layers):
        if i:
            stack.append(T.Permute(reverse))
        stack.append(layer)
    return stack

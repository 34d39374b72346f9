"""What each epoch trains on: its minibatch order and, under dynamic binarisation, its draw of the
data. Both come from generators seeded by ``(seed, epoch)`` alone, so a resumed run sees exactly
what the uninterrupted run would have."""

from __future__ import annotations

import torch

from ..data.loading import binarize

_PURPOSES = {"shuffle": 0, "binarize": 1}


def derived_seed(seed: int, epoch: int, purpose: str) -> int:
    """The seed of ``purpose`` (``"shuffle"`` or ``"binarize"``) in ``epoch``."""
    return (int(seed) * 1_000_003 + epoch * 2 + _PURPOSES[purpose]) % (2**63)


def epoch_order(seed: int, epoch: int, num_data: int) -> torch.Tensor:
    """A permutation of ``range(num_data)``: the order of the points in ``epoch``."""
    return torch.randperm(num_data, generator=torch.Generator().manual_seed(derived_seed(seed, epoch, "shuffle")))


def epoch_values(x: torch.Tensor, dynamic: bool, seed: int, epoch: int) -> torch.Tensor:
    """``x`` itself, or under dynamic binarisation a fresh Bernoulli draw of it for ``epoch``."""
    return binarize(x, derived_seed(seed, epoch, "binarize")) if dynamic else x

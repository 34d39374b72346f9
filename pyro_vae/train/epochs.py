"""What each epoch trains on: its minibatch order and, under dynamic binarisation, its draw of the
data. Both come from generators seeded by ``(seed, epoch)`` alone, so a resumed run sees exactly
what the uninterrupted run would have. The training data themselves are checked here once
(:func:`training_data`), and the first rows that the program's checks run on are read here."""

from __future__ import annotations

from typing import Any

import torch

from ..data.loading import Split, binarize
from ..data.rows import RowSource

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


def training_data(program, train: Any, covariates, mask=None) -> tuple[torch.Tensor | RowSource, bool, dict]:
    """The checked training values, whether they are binarised afresh every epoch, and the covariates
    (with the mask of missing entries under ``"mask"``, sliced with them)."""
    if isinstance(train, Split) and train.dynamic_binarization:
        if mask is not None:
            raise ValueError(
                "Pass data with missing entries as a tensor with mask=, not a dynamically binarised split."
            )
        if not bool(((train.x >= 0) & (train.x <= 1)).all()):
            raise ValueError("Dynamic binarisation needs training values in [0, 1] (Bernoulli probabilities).")
        # Any draw is binary; checking one draw checks shape, finiteness and support.
        program.data(binarize(train.x, 0), what="train (binarised)")
        return train.x, True, program.data(train.x, covariates, checked=True).covariates
    data = program.data(train.x if isinstance(train, Split) else train, covariates, what="train", mask=mask)
    extra = {} if data.mask is None else {"mask": data.mask}
    return data.x, False, {**data.covariates, **extra}


def first_rows(x, dynamic: bool, *, seed: int) -> torch.Tensor:
    """The first two training rows, as the program sees them (binarised under dynamic binarisation)."""
    rows = x[torch.arange(min(2, len(x)))]
    return binarize(rows, seed) if dynamic else rows


def first_rows_of(covariates: dict) -> dict:
    return {k: v[: min(2, len(v))] for k, v in covariates.items()}

"""Class labels as model inputs: :func:`one_hot` rows, the covariates of a class-conditional VAE."""

from __future__ import annotations

import torch

from .._util.checks import positive_int

__all__ = ["one_hot"]


def one_hot(labels, num_classes: int) -> torch.Tensor:
    """Labels ``(N,)`` (or one label) as one-hot rows ``(N, num_classes)`` of the default float type,
    the covariates of a class-conditional VAE: ``covariates={"y": one_hot(split.labels, 10)}``."""
    values = torch.as_tensor(labels)
    if values.is_floating_point() and not bool((values == values.round()).all()):
        raise ValueError(
            f"labels must be whole numbers, got {values.reshape(-1)[:3].tolist()} (a fraction is no class)."
        )
    if values.dtype == torch.bool or values.is_complex():
        raise ValueError(f"labels must be whole numbers, got {values.dtype}.")
    labels = values.long().reshape(-1)
    num_classes = positive_int(num_classes, "num_classes")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(
            f"labels must lie in 0..{num_classes - 1}, got values from {int(labels.min())} to {int(labels.max())}."
        )
    return torch.nn.functional.one_hot(labels, num_classes).to(torch.get_default_dtype())

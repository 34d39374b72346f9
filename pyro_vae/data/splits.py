"""A data set and its splits: points, labels, covariates, and the binarisation of images."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from typing import Any

import torch


@dataclass(frozen=True)
class Split:
    """One split of a data set.

    Attributes:
        x: float tensor ``(N, D)`` in ``[0, 1]``; under dynamic binarisation, the grey levels
            that act as Bernoulli probabilities.
        labels: long tensor ``(N,)``.
        image_shape: ``(height, width)``, or ``None`` for a table.
        dynamic_binarization: ``True`` when :func:`pyro_vae.fit` should binarise ``x`` afresh
            each epoch.
        num_levels: grey levels of the source images (``None`` if unknown).
        covariates: float tensor ``(N, K)`` of a table's covariate columns (one-hot blocks), or
            ``None``; :meth:`covariates_for` passes them on as a VAE's ``y``.
        mask: bool tensor ``(N, D)``, True where an entry was observed, for a table read with
            missing entries (``load(..., missing=True)``; ``x`` holds NaN where it is False), or
            ``None``. Every tool that takes ``mask=`` reads it from the split unless given one; the
            tools that read complete rows refuse such a split.
    """

    x: torch.Tensor
    labels: torch.Tensor
    image_shape: tuple[int, int] | None
    dynamic_binarization: bool = False
    num_levels: int | None = None
    covariates: torch.Tensor | None = None
    mask: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.x.shape[0]

    def __getitem__(self, index) -> Split:
        """A sub-split: ``split[:100]``, ``split[split.labels == 3]``."""
        covariates = None if self.covariates is None else self.covariates[index]
        mask = None if self.mask is None else self.mask[index]
        return replace(self, x=self.x[index], labels=self.labels[index], covariates=covariates, mask=mask)

    def covariates_for(self) -> dict[str, torch.Tensor] | None:
        """The tools' ``covariates=`` argument for a conditional VAE: ``{"y": covariates}``, or ``None``."""
        return None if self.covariates is None else {"y": self.covariates}

    def binarized(self, seed: int) -> torch.Tensor:
        """One Bernoulli draw per pixel of ``x``, reproducible from ``seed``."""
        return binarize(self.x, seed)


@dataclass(frozen=True)
class Dataset:
    """A named data set with ``train``, ``val`` and ``test`` splits.

    ``source`` says where it came from: ``"digits"``, a known name, or the absolute path of the
    IDX folder or table that was read (what :func:`load` needs to read it again).
    """

    name: str
    train: Split
    val: Split
    test: Split
    source: str = ""
    #: For a table: which columns are features and which the label (:mod:`pyro_vae.data.table_columns`).
    columns: dict[str, Any] | None = None

    def fingerprint(self, *, with_covariates: bool = True) -> str:
        """A short SHA-256 of every split's values and labels (and covariates, unless
        ``with_covariates=False``): two loads with the same settings agree, and a changed file does not."""
        digest = hashlib.sha256()
        for split in (self.train, self.val, self.test):
            # Data without covariates hash as before they existed.
            extra = [] if split.covariates is None or not with_covariates else [split.covariates]
            for tensor in (split.x, split.labels, *extra):
                digest.update(str(tuple(tensor.shape)).encode())
                digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()[:16]

    @property
    def is_image(self) -> bool:
        return self.train.image_shape is not None

    @property
    def image_shape(self) -> tuple[int, int] | None:
        return self.train.image_shape

    @property
    def input_dim(self) -> int:
        return self.train.x.shape[1]

    @property
    def num_levels(self) -> int | None:
        return self.train.num_levels


#: ``mask=`` of a tool that reads complete rows only (it takes no mask): a split with missing
#: entries is refused rather than read as if complete.
COMPLETE_ROWS: Any = type("CompleteRows", (), {"__repr__": lambda self: "COMPLETE_ROWS"})()


def data_parts(x: Any, covariates: Any, mask: Any = None) -> tuple[Any, Any, Any]:
    """``(x, covariates, mask)`` for a tool: a :class:`Split` gives its points and, unless given,
    its covariates (a VAE's ``y``) and its mask of missing entries; a :class:`Dataset` is refused,
    naming its splits (a tool does not guess which one); anything else passes through. A tool that
    reads complete rows passes ``mask=COMPLETE_ROWS`` and gets ``None`` back, or a refusal for a split
    with missing entries."""
    if isinstance(x, Dataset):
        raise ValueError(
            f"Pass one split of the data set {x.name!r}: its .train, .val or .test (a tool does not guess which)."
        )
    complete = mask is COMPLETE_ROWS
    if complete:
        if isinstance(x, Split) and x.mask is not None and not bool(x.mask.all()):
            raise ValueError(
                "This split has missing entries (its mask), and this tool reads complete rows only: pass "
                "the complete rows, split[split.mask.all(1)], or use a tool that takes mask=."
            )
        mask = None
    if isinstance(x, Split):
        own_mask = None if complete else x.mask
        return x.x, covariates if covariates is not None else x.covariates_for(), mask if mask is not None else own_mask
    return x, covariates, mask


def binarize(x: torch.Tensor, seed: int) -> torch.Tensor:
    """``Bernoulli(x)`` drawn with a private generator seeded by ``seed``; same shape as ``x``."""
    generator = torch.Generator().manual_seed(int(seed))
    # Drawn on the CPU whatever the device of x, so a seed gives the same pixels everywhere.
    return torch.bernoulli(x.cpu(), generator=generator).to(x.device)

"""Data with missing entries, read as values and a mask: a CSV file's empty and ``NA`` cells, NaN in
a ``.npy`` array or an AnnData matrix.

.. code-block:: python

    x, mask = pyro_vae.data.read_missing("survey.csv")        # mask: True where observed
    filled = pyro_vae.impute(vae, x, mask=mask)

:func:`pyro_vae.impute` reads a path or an AnnData object this way itself.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .anndata_files import H5AD_SUFFIX, matrix_of, read_h5ad_object, refuse_duplicated_names, var_positions
from .readers import read_table

__all__ = ["is_data_source", "read_missing"]


def is_data_source(x: Any) -> bool:
    """Whether ``x`` names a file (a string or path) or is an AnnData object, rather than values."""
    return isinstance(x, (str, os.PathLike)) or type(x).__name__ == "AnnData"


def read_missing(
    source: str | os.PathLike | Any, *, columns: Sequence[Any] | None = None, layer: str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, mask)`` of a table whose missing entries are empty cells or NaN: ``x`` float32 ``(N, D)``
    with NaN where an entry is missing, ``mask`` boolean ``(N, D)``, True where observed.

    Args:
        source: a ``.csv`` file (empty cells and the markers pandas reads as missing, ``NA``, ``NaN``,
            ``null``, ..., are missing; a header row and the column choice as :func:`pyro_vae.data.load`
            reads tables), a ``.npy`` array, an ``.h5ad`` file, or an ``anndata.AnnData`` object.
        columns: the feature columns (a table's header names or positions, an AnnData's
            ``var_names``); default every column.
        layer: an AnnData layer (default its ``X``).

    ``inf`` is refused: it is a value out of range, not a missing one.
    """
    if type(source).__name__ == "AnnData":
        x = _of_adata(source, columns, layer, "the AnnData object")
    else:
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"No table at {path}.")
        if path.suffix.lower() == H5AD_SUFFIX:
            x = _of_adata(read_h5ad_object(path, layer), columns, layer, path)
        elif layer is not None:
            raise ValueError(f"layer= names a layer of an AnnData file (.h5ad); {path} is not one.")
        elif path.suffix.lower() == ".npy":
            if columns is not None:
                raise ValueError("columns= chooses columns of a CSV table or an AnnData; slice the array instead.")
            x = _values(np.load(path, allow_pickle=False), path)
        else:
            x = read_table(path, columns=columns, missing=True)[0]
    if bool(torch.isinf(x).any()):
        raise ValueError(f"{source} holds inf: a value out of range, not a missing one; fix or drop it.")
    return x, ~torch.isnan(x)


def _of_adata(adata: Any, columns: Sequence[Any] | None, layer: str | None, what: Any) -> torch.Tensor:
    matrix = matrix_of(adata, layer, what)
    if columns is not None:
        names = [str(n) for n in adata.var_names]
        refuse_duplicated_names(names, what)
        matrix = matrix[:, var_positions(columns, names, what)]
    return _values(matrix, what)


def _values(array: np.ndarray, what: Any) -> torch.Tensor:
    if array.ndim != 2 or array.dtype.kind not in "biuf":
        raise ValueError(f"{what} must hold a numeric matrix (N, D), got {array.dtype} of shape {array.shape}.")
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))

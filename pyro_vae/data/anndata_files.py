"""AnnData files (``.h5ad``, the format of scanpy and scvi-tools): a count layer and ``obs`` columns in.

An ``.h5ad`` file holds a matrix of cells by genes (``X``, and named ``layers`` such as raw
``"counts"``), a table of cell annotations (``obs``: batch, donor, cell type) and gene names
(``var_names``). :func:`read_h5ad` reads one matrix as the points ``x`` ``(N, D)``, an ``obs``
column as class labels and ``obs`` columns as categorical covariates (one-hot blocks, as a table's
covariate columns are; :mod:`pyro_vae.data.table_columns`). HDF5 holds arrays and strings, so
nothing is unpickled. :func:`obs_covariates` encodes the covariates of any AnnData with the classes
recorded at training, for :func:`pyro_vae.io.anndata_latent.add_latent`.

Needs the optional dependency ``anndata``: ``pip install 'pyro_vae[anndata]'``.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._util.checks import refuse_inexact_counts
from .._util.memory import available_bytes
from .table_columns import label_codes, one_hot_columns, one_hot_recorded

__all__ = [
    "H5AD_SUFFIX",
    "import_anndata",
    "matrix_of",
    "obs_covariates",
    "read_h5ad",
    "read_h5ad_object",
    "refuse_duplicated_names",
    "var_positions",
]

H5AD_SUFFIX = ".h5ad"


def import_anndata():
    """The ``anndata`` module, or an ``ImportError`` that says how to install it."""
    try:
        import anndata
    except ImportError:
        raise ImportError(
            "Reading and writing .h5ad files needs the package anndata: pip install 'pyro_vae[anndata]' "
            "(or pip install anndata)."
        ) from None
    return anndata


def read_h5ad(
    path: str | os.PathLike,
    *,
    layer: str | None = None,
    columns: Sequence[Any] | None = None,
    label: str | None = None,
    covariates: Sequence[str] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any], torch.Tensor | None]:
    """``(x (N, D) float32, labels (N,) long, record, y)`` of an AnnData file.

    Args:
        path: an ``.h5ad`` file.
        layer: the matrix read as ``x``: a name in ``adata.layers`` (e.g. ``"counts"``), or ``None``
            for ``adata.X``. Sparse matrices are made dense.
        columns: the features, as names in ``var_names`` or 0-based positions (default: every gene).
        label: an ``obs`` column read as class labels (whole numbers as they are, other values as
            classes in sorted order); default: every label 0.
        covariates: ``obs`` columns read as categorical covariates: one-hot blocks ``y`` ``(N, K)``.

    Returns: what :func:`pyro_vae.data.readers.read_table` returns for a table; ``record`` also
    names the ``layer``.
    """
    path = Path(path)
    adata = read_h5ad_object(path, layer)
    matrix = matrix_of(adata, layer, path)
    names = [str(n) for n in adata.var_names]
    refuse_duplicated_names(names, path)
    positions = list(range(len(names))) if columns is None else var_positions(columns, names, path)
    array = matrix[:, positions]
    record: dict[str, Any] = {
        "layer": layer,
        "features": None if columns is None else [names[p] for p in positions],
        "label": label,
        "dropped_index": None,
        "columns": [names[p] for p in positions],
    }
    names_of_covariates = [c["column"] if isinstance(c, dict) else c for c in covariates or []]
    chosen = [*([] if label is None else [label]), *names_of_covariates]
    _check_obs_columns(adata, chosen, path, label=label, covariates=names_of_covariates if covariates else covariates)
    labels = np.zeros(array.shape[0], dtype=np.int64)
    if label is not None:
        labels, classes = label_codes(None, _cells(adata, label))  # a missing label is refused there
        if classes is not None:
            record["label_classes"] = classes
    y = None
    if covariates:
        y, record["covariates"] = obs_covariates(adata, covariates, path)
    return _points(array, path), torch.from_numpy(labels), record, y


def read_h5ad_object(path: Path, layer: str | None) -> Any:
    """The ``anndata.AnnData`` of an ``.h5ad`` file, once its matrices are known to fit in memory."""
    anndata = import_anndata()
    if not path.is_file():
        raise FileNotFoundError(f"No AnnData file at {path}.")
    _refuse_matrices_beyond_memory(path, layer)
    try:
        return anndata.read_h5ad(path)
    except Exception as error:  # h5py, anndata and OS errors alike: the file is not one we can read
        raise ValueError(
            f"{path} is not a readable AnnData file ({type(error).__name__}: {str(error)[:300]})."
        ) from None


def _refuse_matrices_beyond_memory(path: Path, layer: str | None) -> None:
    """Refuse, before anything is read, a file whose matrices would not fit in memory once dense.

    ``read_h5ad`` reads every matrix of the file (``X`` and each layer) and the chosen one is made
    dense: their declared shapes (HDF5 metadata, read without the data) give the bytes that takes.
    """
    import h5py

    try:
        with h5py.File(path, "r") as handle:
            declared = {}
            for name, node in [
                ("X", handle.get("X")),
                *((f"layer {k!r}", v) for k, v in handle.get("layers", {}).items()),
            ]:
                if node is None:
                    continue
                shape = tuple(node.attrs.get("shape", ())) if isinstance(node, h5py.Group) else node.shape
                stored = (
                    sum(v.nbytes for v in node.values() if isinstance(v, h5py.Dataset))
                    if isinstance(node, h5py.Group)
                    else 0
                )
                declared[name] = (shape, stored)
    except (OSError, ValueError, KeyError, TypeError):
        return  # read_h5ad says what is wrong with the file
    chosen = "X" if layer is None else f"layer {layer!r}"
    total = 0
    for name, (shape, stored) in declared.items():
        dense = int(np.prod(shape, dtype=np.float64)) * 8 if len(shape) == 2 else 0
        # A sparse matrix is read as stored; a dense one whole; the chosen one is made dense and float32.
        total += (stored if stored else dense) + (dense + dense // 2 if name == chosen else 0)
    free = available_bytes()
    if free is not None and total > free:
        raise ValueError(
            f"{path}: reading it needs about {total / 2**30:.1f} GiB (its matrices, the {chosen} made dense), "
            f"more than the {free / 2**30:.1f} GiB of memory available; select fewer cells or genes into a "
            "smaller file first."
        )


def matrix_of(adata: Any, layer: str | None, path: Any) -> np.ndarray:
    """``adata.X`` or ``adata.layers[layer]`` as a dense NumPy array ``(N, D)``, checked to be numeric."""
    if layer is not None and not isinstance(layer, str):
        raise TypeError(f"{path}: layer must be the name of a layer, got {layer!r}.")
    if layer is not None and layer not in adata.layers:
        raise ValueError(f"{path} has no layer {layer!r}; its layers are {list(adata.layers.keys())} (None reads X).")
    matrix = adata.X if layer is None else adata.layers[layer]
    if matrix is None:
        raise ValueError(f"{path} has no matrix X; pass layer= with one of {list(adata.layers.keys())}.")
    matrix = matrix.toarray() if hasattr(matrix, "toarray") else np.asarray(matrix)
    what = "X" if layer is None else f"layer {layer!r}"
    if matrix.ndim != 2 or matrix.shape[0] < 3 or matrix.shape[1] < 1:
        raise ValueError(f"{path}: {what} must be a matrix (N, D) with N >= 3 cells, got shape {matrix.shape}.")
    if matrix.dtype.kind not in "biuf":
        raise ValueError(f"{path}: {what} holds {matrix.dtype} values; it must be numeric.")
    return matrix


def obs_covariates(adata: Any, covariates: Sequence[Any], what: Any) -> tuple[torch.Tensor, list[dict[str, Any]]]:
    """``(y (N, K), record)``: ``adata``'s ``obs`` columns as one-hot blocks. ``covariates`` names the
    columns (each one's classes are its values in sorted order) or is the record of a training
    (``[{"column": name, "classes": [...]}]``, what this returns), whose classes are used, so that
    other cells are encoded as the training cells were."""
    if covariates and all(isinstance(c, dict) for c in covariates):
        names = [entry["column"] for entry in covariates]
        _check_obs_columns(adata, names, what, label=None, covariates=names)
        blocks = [
            one_hot_recorded(_cells(adata, e["column"]), e["classes"], f"{what}: obs {e['column']!r}")
            for e in covariates
        ]
        return torch.from_numpy(np.concatenate(blocks, axis=1)), list(covariates)
    _check_obs_columns(adata, list(covariates), what, label=None, covariates=covariates)
    texts = {i: _cells(adata, name) for i, name in enumerate(covariates)}
    block, record = one_hot_columns(
        np.full((adata.n_obs, len(texts)), np.nan), list(covariates), texts, range(len(texts))
    )
    return torch.from_numpy(block), record


def _points(array: np.ndarray, path: Any) -> torch.Tensor:
    if (
        array.dtype.kind == "f"
        and array.size
        and bool(np.all(array == np.round(array)))
        and np.abs(array).max() < 2**62
    ):
        refuse_inexact_counts(array.astype(np.int64), torch.float32, str(path))
    elif array.dtype.kind in "iu":
        refuse_inexact_counts(array, torch.float32, str(path))
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


def refuse_duplicated_names(names: Sequence[str], what: Any) -> None:
    """Genes are matched by name, so a name given to two genes is refused rather than resolved by position."""
    counts = Counter(names)
    twice = sorted(name for name, count in counts.items() if count > 1)
    if twice:
        raise ValueError(
            f"{what}: var_names name {len(twice)} gene(s) twice (e.g. {twice[:5]}); genes are matched by name, so "
            "make them unique first (adata.var_names_make_unique())."
        )


def var_positions(columns: Sequence[Any], names: list[str], path: Any) -> list[int]:
    """Positions in ``names`` (an AnnData's ``var_names``) of ``columns``: names or 0-based positions."""
    if isinstance(columns, str) or not isinstance(columns, Sequence) or not columns:
        raise ValueError(f"{path}: columns must be a non-empty list of gene names or positions, got {columns!r}.")
    lookup = {name: i for i, name in enumerate(names)}
    positions = []
    for column in columns:
        if isinstance(column, (int, np.integer)) and not isinstance(column, bool):
            if not 0 <= int(column) < len(names):
                raise ValueError(f"{path}: column {column} is not a position (there are {len(names)} genes).")
            positions.append(int(column))
        elif isinstance(column, str) and column in lookup:
            positions.append(lookup[column])
        elif isinstance(column, str) and column.isdigit() and int(column) < len(names):  # from the command line
            positions.append(int(column))
        else:
            raise ValueError(f"{path}: {column!r} is not in var_names (e.g. {names[:5]}).")
    if len(set(positions)) != len(positions):
        raise ValueError(f"{path}: columns {list(columns)} name a gene twice.")
    return positions


def _check_obs_columns(adata: Any, names: Sequence[Any], path: Any, *, label: Any, covariates: Any) -> None:
    if covariates is not None and (isinstance(covariates, str) or not isinstance(covariates, Sequence)):
        raise ValueError(f"{path}: covariates must be a list of obs column names, got {covariates!r}.")
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: the label and covariates {list(names)} name an obs column twice.")
    for name in names:
        if name not in adata.obs.columns:
            raise ValueError(f"{path}: obs has no column {name!r}; its columns are {list(adata.obs.columns)[:20]}.")
        if bool(adata.obs[name].isna().any()):
            raise ValueError(f"{path}: obs column {name!r} has missing values; fill or drop those cells first.")


def _cells(adata: Any, name: str) -> list[str]:
    """An ``obs`` column as text (numbers as ``repr`` of their value, so that they sort as numbers)."""
    column = adata.obs[name]
    values = column.astype(object).tolist()
    return [
        repr(float(v)) if isinstance(v, (int, float, np.number)) and not isinstance(v, bool) else str(v) for v in values
    ]

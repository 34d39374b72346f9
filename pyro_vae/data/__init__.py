"""Data: the embedded digits, IDX image folders, tables, and rows read from disk as they are needed.

* :mod:`~pyro_vae.data.loading` -- :func:`load`, :class:`Split`, binarisation;
* :mod:`~pyro_vae.data.labels` -- one-hot labels (:func:`one_hot`);
* :mod:`~pyro_vae.data.rows` -- row sources for data larger than memory (:func:`open_rows`);
* :mod:`~pyro_vae.data.readers` -- the bounded readers of IDX files, ``.npy`` headers and tables;
* :mod:`~pyro_vae.data.anndata_files` -- AnnData ``.h5ad`` files (:func:`read_h5ad`), with ``anndata``;
* :mod:`~pyro_vae.data.missing_values` -- tables with missing entries as values and a mask (:func:`read_missing`)."""

from .anndata_files import read_h5ad
from .labels import one_hot
from .loading import (
    BINARIZE_MODES,
    DATA_ENV_VAR,
    DEBIAN_DATASETS,
    DIGITS_LEVELS,
    IDX_FILES,
    KNOWN_IDX,
    VALUE_MODES,
    Dataset,
    Split,
    binarize,
    idx_to_npy,
    load,
)
from .missing_values import read_missing
from .readers import read_idx
from .rows import CHUNK_BYTES, IndexedRows, MappedArray, RowSource, open_rows

__all__ = [
    "binarize",
    "BINARIZE_MODES",
    "CHUNK_BYTES",
    "DATA_ENV_VAR",
    "Dataset",
    "DEBIAN_DATASETS",
    "DIGITS_LEVELS",
    "IDX_FILES",
    "idx_to_npy",
    "IndexedRows",
    "KNOWN_IDX",
    "load",
    "read_missing",
    "MappedArray",
    "one_hot",
    "open_rows",
    "read_h5ad",
    "read_idx",
    "RowSource",
    "Split",
    "VALUE_MODES",
]

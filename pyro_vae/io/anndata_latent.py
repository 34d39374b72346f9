"""The latent representation written back into an AnnData object or ``.h5ad`` file (``obsm``).

scvi-tools users keep a model's codes beside the data: ``adata.obsm["X_scVI"]``, which scanpy's
neighbours, UMAP and clustering read. :func:`add_latent` does the same for any program pyro_vae
reads: ``adata.obsm[key] = E_q[z | x_i]`` for every cell, in the file's own order.

Needs the optional dependency ``anndata``: ``pip install 'pyro_vae[anndata]'``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._util.files import atomic_write_path, check_writable
from .._util.isolation import leaves_pyro_state_alone
from ..data.anndata_files import H5AD_SUFFIX, import_anndata, matrix_of, obs_covariates, refuse_duplicated_names
from ..latent.predictive import get_latent

__all__ = ["DEFAULT_KEY", "add_latent"]

#: ``obsm`` key of the codes, after scvi-tools' ``"X_scVI"``.
DEFAULT_KEY = "X_pyro_vae"


@leaves_pyro_state_alone
def add_latent(
    model: Any,
    adata: Any,
    *,
    dataset: Any = None,
    layer: str | None = None,
    columns: Sequence[Any] | None = None,
    covariates: Sequence[Any] | None = None,
    key: str = DEFAULT_KEY,
    guide: Callable | None = None,
    site: str | None = None,
    out: str | os.PathLike | None = None,
) -> Any:
    """Store the posterior means of every cell, ``(N, L)``, in ``adata.obsm[key]``.

    Args:
        model: a trained :class:`~pyro_vae.VAE` or any program :func:`pyro_vae.get_latent` reads.
        adata: an ``anndata.AnnData``, or the path of an ``.h5ad`` file, which is read, given the
            codes and written back (to ``out`` if given), atomically.
        dataset: the :class:`~pyro_vae.data.Dataset` the model was trained on, loaded from an
            ``.h5ad`` file: its layer, genes and covariate classes are used, so that other cells
            are encoded as the training cells were. Otherwise ``layer``, ``columns`` and
            ``covariates`` say it, as for :func:`pyro_vae.data.load` (covariate classes then come
            from ``adata``'s own values).
        key: the ``obsm`` key.
        guide, site: as for :func:`pyro_vae.get_latent`.
        out: where to write when ``adata`` is a path (default: that path).

    Returns: the AnnData object, with ``obsm[key]`` a float32 array ``(N, L)``.
    """
    anndata = import_anndata()
    path = None
    if isinstance(adata, (str, os.PathLike)):
        path = Path(adata)
        if path.suffix.lower() != H5AD_SUFFIX or not path.is_file():
            raise FileNotFoundError(f"No .h5ad file at {path}.")
        target = Path(out) if out is not None else path
        check_writable(target.parent, f"the AnnData file {target.name}")
        adata = anndata.read_h5ad(path)
    elif out is not None:
        raise ValueError("out= is where an .h5ad path is written back; for an AnnData object, call its write_h5ad.")
    if not isinstance(adata, anndata.AnnData):
        raise TypeError(f"adata must be an anndata.AnnData or the path of an .h5ad file, got {type(adata).__name__}.")
    if not isinstance(key, str) or not key or "/" in key:
        raise ValueError(f"key must be a non-empty obsm name without '/' (HDF5 reads '/' as a subgroup), got {key!r}.")
    what = path or "adata"
    if dataset is not None:
        record = dataset.columns or {}
        if "layer" not in record:
            raise ValueError("dataset= must be a data set loaded from an .h5ad file (pyro_vae.data.load('x.h5ad')).")
        # The genes are matched by name, never by position: the training's names, all of them.
        layer, columns, covariates = record["layer"], record["features"] or record["columns"], record.get("covariates")
    x = _features(matrix_of(adata, layer, what), adata, columns, what)
    codes = get_latent(model, x, guide=guide, site=site, covariates=_covariates(adata, covariates, what))
    adata.obsm[key] = codes.detach().cpu().numpy().astype(np.float32)
    if path is not None:

        def write_and_verify(tmp: Path) -> None:
            # The user's file is replaced only by one that reads back with the codes in place.
            adata.write_h5ad(tmp)
            written = anndata.read_h5ad(tmp)
            if key not in written.obsm or tuple(written.obsm[key].shape) != tuple(codes.shape):
                raise ValueError(
                    f"{target}: the written file did not read back with obsm[{key!r}]; it was left as it was."
                )

        atomic_write_path(target, write_and_verify)
    return adata


def _features(matrix: np.ndarray, adata: Any, columns: Sequence[Any] | None, what: Any) -> torch.Tensor:
    if columns is not None:
        names = [str(n) for n in adata.var_names]
        refuse_duplicated_names(names, what)
        lookup = {name: i for i, name in enumerate(names)}
        missing = [c for c in columns if not isinstance(c, int) and c not in lookup]
        if missing:
            raise ValueError(f"{what}: the genes {missing[:10]} the model was trained on are not in var_names.")
        matrix = matrix[:, [c if isinstance(c, int) else lookup[c] for c in columns]]
    return torch.from_numpy(np.ascontiguousarray(matrix, dtype=np.float32))


def _covariates(adata: Any, covariates: Sequence[Any] | None, what: Any) -> dict[str, torch.Tensor] | None:
    return {"y": obs_covariates(adata, covariates, what)[0]} if covariates else None

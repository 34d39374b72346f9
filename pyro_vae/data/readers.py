"""Readers of the files data sets come in: IDX files (MNIST's format) and tables (``.npy``, ``.csv``).

Both are written to be safe on files a user hands us: an IDX file, gzipped or not, is read as a
stream that never goes beyond the size its header announces, and a ``.npy`` array is read without
unpickling. Every malformed file raises ``ValueError`` naming it.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._util.checks import refuse_inexact_counts
from .csv_tables import read_csv, read_header
from .table_columns import choose_columns, column_positions, covariate_positions, one_hot_as_recorded, one_hot_columns

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


#: Largest IDX payload read (bytes); Fashion-MNIST's training images are 47 MB.
MAX_IDX_BYTES = 2**31
#: Largest label value accepted (labels index classes, and classes are counted from them).
MAX_LABEL = 65_535


def read_idx(path: str | os.PathLike) -> torch.Tensor:
    """Read one IDX file (gzipped or not) into a tensor, checking its header against its size.

    A gzipped file is decompressed as a stream and never beyond the size its header announces
    (plus one byte, to detect trailing data), so a small archive cannot expand to gigabytes
    before the check. Every malformed file raises ``ValueError`` naming it.
    """
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            compressed = handle.read(2) == b"\x1f\x8b"
        with gzip.open(path, "rb") if compressed else open(path, "rb") as stream:
            shape, dtype = idx_header(stream, path)
            ndim = len(shape)
            size = math.prod(shape) * dtype.itemsize
            if size > MAX_IDX_BYTES:
                raise ValueError(
                    f"{path}: its header {shape} announces {size:,} bytes, more than the "
                    f"{MAX_IDX_BYTES:,} pyro_vae reads (pyro_vae.data.readers.MAX_IDX_BYTES)."
                )
            if not compressed and path.stat().st_size != 4 + 4 * ndim + size:
                raise ValueError(
                    f"{path} holds {path.stat().st_size} bytes but its header {shape} implies {4 + 4 * ndim + size}."
                )
            payload = _read_at_most(stream, size + 1)
    except (OSError, EOFError, zlib.error) as error:
        raise ValueError(f"{path} is unreadable or a damaged gzip file ({type(error).__name__}: {error}).") from None
    if len(payload) != size:
        raise ValueError(
            f"{path} holds {4 + 4 * ndim + len(payload)}{'+' if len(payload) > size else ''} bytes "
            f"(decompressed) but its header {shape} implies {4 + 4 * ndim + size}."
        )
    array = np.frombuffer(payload, dtype=dtype).reshape(shape)
    return torch.from_numpy(array.astype(array.dtype.newbyteorder("=")).copy())


def idx_header(stream, path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """The shape and element type an IDX header announces, read from the start of ``stream``;
    the stream is left at the first byte of the payload (``4 + 4 * ndim`` bytes in)."""
    magic = stream.read(4)
    if len(magic) < 4 or magic[0] != 0 or magic[1] != 0 or magic[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic number).")
    ndim = magic[3]
    dims = stream.read(4 * ndim)
    if len(dims) < 4 * ndim:
        raise ValueError(f"{path} is truncated inside its header.")
    shape = tuple(int.from_bytes(dims[4 * i : 4 * i + 4], "big") for i in range(ndim))
    return shape, np.dtype(_IDX_DTYPES[magic[2]])


def _read_at_most(stream, limit: int, block: int = 2**24) -> bytes:
    """Up to ``limit`` bytes in blocks, so that what is allocated follows what the stream holds,
    not what a header announced."""
    parts, total = [], 0
    while total < limit:
        part = stream.read(min(block, limit - total))
        if not part:
            break
        parts.append(part)
        total += len(part)
    return b"".join(parts)


def check_labels(labels: torch.Tensor, path: Path) -> torch.Tensor:
    if labels.is_floating_point():
        raise ValueError(f"{path}: labels must be integers, got {labels.dtype} values.")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) > MAX_LABEL):
        raise ValueError(
            f"{path}: labels must lie in 0..{MAX_LABEL}, got values from {int(labels.min())} to {int(labels.max())}."
        )
    return labels.to(torch.int64)


#: File suffixes read as tables of shape (N, D): one row per data point.
TABLE_SUFFIXES = (".npy", ".csv")


def load_table(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """A ``.npy`` array (read without unpickling) or a numeric ``.csv`` (an optional header row; see
    :mod:`pyro_vae.data.csv_tables` for what is accepted) as ``(x, labels)``: :func:`read_table`
    with its defaults."""
    x, labels, _, _ = read_table(path)
    return x, labels


def read_table(
    path: Path,
    *,
    columns: Sequence[Any] | None = None,
    label: Any = None,
    covariates: Sequence[Any] | None = None,
    missing: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any], torch.Tensor | None]:
    """``(x (N, D) float32, labels (N,) long, record, y)`` of a table, with the feature columns, the
    label column and the covariate columns (``y``, one-hot blocks ``(N, K)``, or ``None``) chosen as
    :mod:`pyro_vae.data.table_columns` says (``record`` says what was chosen). With ``missing``,
    empty and ``NA`` cells of a CSV file are NaN in ``x`` (:func:`~pyro_vae.data.csv_tables.read_csv`).

    Length: both file kinds' column choices are resolved and their reading errors translated in one
    place, then covariates, labels and the exact-count check follow in the order the record lists them.
    """
    if not path.is_file():
        raise FileNotFoundError(f"No table at {path}.")
    header: list[str] | None = None
    texts: dict[int, list[str]] = {}
    # Covariates named, or the record of a training ([{"column", "classes"}]) whose classes are reused.
    recorded = covariates if covariates and all(isinstance(c, dict) for c in covariates) else None
    if recorded is not None:
        covariates = [entry["column"] for entry in recorded]
    try:
        if path.suffix.lower() == ".npy":
            shape = check_npy_header(path)[0]
            width = shape[1] if len(shape) == 2 else 0
            positions, label_at = column_positions(None, width, path, columns=columns, label=label)
            covariate_at = covariate_positions(None, width, path, covariates, _taken(positions, label_at))
            array = np.load(path, allow_pickle=False)
        else:
            header, width = read_header(path)
            positions, label_at = column_positions(header, width, path, columns=columns, label=label)
            covariate_at = covariate_positions(header, width, path, covariates, _taken(positions, label_at))
            # Columns that are not features are read as text: a label or a covariate may be, a
            # left-out column anything.
            text_columns = set() if positions is None else set(range(width)) - set(positions)
            text_columns |= set(covariate_at) | (set() if label_at is None else {label_at})
            array, header, texts = read_csv(path, text_columns, missing=missing)
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not a text table (it is not UTF-8).") from None
    except ValueError as error:
        if str(error).startswith(str(path)):
            raise
        raise ValueError(f"{path} is not a numeric table ({type(error).__name__}: {str(error)[:400]}).") from None
    except (OSError, EOFError, MemoryError) as error:
        raise ValueError(f"{path} is not a numeric table ({type(error).__name__}: {str(error)[:400]}).") from None
    if array.ndim != 2 or array.shape[0] < 3 or array.shape[1] < 1:
        raise ValueError(f"{path} must hold a table of shape (N, D) with N >= 3 rows, got shape {array.shape}.")
    if array.dtype.kind not in "biuf":
        raise ValueError(f"{path} holds {array.dtype} values; a table must be numeric.")
    y = None
    if covariate_at and recorded is not None:
        y, record_covariates = (
            torch.from_numpy(one_hot_as_recorded(array, texts, covariate_at, recorded, path)),
            list(recorded),
        )
    elif covariate_at:
        y_values, record_covariates = one_hot_columns(array, header, texts, covariate_at)
        y = torch.from_numpy(y_values)
    array, labels, record = choose_columns(
        array, header, texts, path, columns=positions, label=label_at, exclude=covariate_at
    )
    if y is not None:
        record["covariates"] = record_covariates
    whole = array if array.dtype.kind in "biu" else None
    if whole is None and array.size and bool(np.all(array == np.round(array))):
        whole = array.astype(np.int64) if np.abs(array).max() < 2**62 else array
    if whole is not None and whole.dtype.kind in "iu":
        refuse_inexact_counts(whole, torch.float32, str(path))
    x = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    return x, torch.from_numpy(labels), record, y


def _taken(positions: list[int] | None, label_at: int | None) -> list[int]:
    return [*(positions or []), *([] if label_at is None else [label_at])]


def check_npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype, bool, int]:
    """Refuse a ``.npy`` file whose header announces more data than the file holds, before numpy
    allocates it; return its ``(shape, dtype, fortran_order, offset of the data)``."""
    with open(path, "rb") as handle:
        try:
            version = np.lib.format.read_magic(handle)
            reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = reader(handle)
        except (ValueError, EOFError) as error:
            raise ValueError(f"{path} is not a .npy file ({error}).") from None
        header_end = handle.tell()
    if dtype.hasobject:
        raise ValueError(f"{path} holds Python objects; a table must be numeric.")
    announced = math.prod(shape) * dtype.itemsize
    if header_end + announced != path.stat().st_size:
        raise ValueError(
            f"{path} announces an array of shape {shape} ({announced:,} bytes) in a file of "
            f"{path.stat().st_size - header_end:,} data bytes."
        )
    return shape, dtype, fortran, header_end


def verify_idx_checksums(directory: Path, name: str, files: dict[str, str], sha256: dict[str, str]) -> None:
    """Refuse a folder found for the known data set ``name`` whose files (``role -> file name``, each
    maybe ``.gz``) are not that data set: the SHA-256 of each decompressed file must be ``sha256[role]``.
    Streams each file once, in blocks."""
    for role, expected in sha256.items():
        path = next((p for p in (directory / files[role], directory / (files[role] + ".gz")) if p.is_file()), None)
        if path is None:
            continue
        digest = hashlib.sha256()
        with open(path, "rb") as probe:
            compressed = probe.read(2) == b"\x1f\x8b"
        try:
            with gzip.open(path, "rb") if compressed else open(path, "rb") as stream:
                while block := stream.read(2**22):
                    digest.update(block)
        except (OSError, EOFError, zlib.error) as error:
            raise ValueError(f"{path} is unreadable or a damaged gzip file ({type(error).__name__}).") from None
        if digest.hexdigest() != expected:
            raise ValueError(
                f"{path} is not the {name!r} data set's {files[role]} (its checksum differs). Restore the "
                f"data set, or pass the folder's path to pyro_vae.data.load(path) to read it as your own IDX data."
            )

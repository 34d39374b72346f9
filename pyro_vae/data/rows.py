"""Data larger than memory: rows read on demand from a file or any indexable source.

Every tool works on data in chunks of rows (minibatches, evaluation chunks), so it never needs the
whole data set at once. A :class:`RowSource` is what a tool receives in place of a tensor: it has a
``shape`` and a ``dtype`` like one, and indexing it (``source[indices]``, ``source[a:b]``) reads
those rows only, as a tensor. Sources::

    open_rows("train.npy")                 a .npy file (written by numpy.save or data.idx_to_npy)
    open_rows("train-images-idx3-ubyte")   an uncompressed IDX file
    np.load("train.npy", mmap_mode="r")    a numpy memory map, passed to any tool as it is
    IndexedRows(h5py_dataset)              anything with len() and numpy-style row indexing

Why files are not simply mapped once: the pages of a memory map that a process has touched count
towards its resident memory until the map is closed, so one pass over a mapped file of 10 GB leaves
10 GB resident. A :class:`MappedArray` therefore reads the rows it is asked for with positioned
reads (``preadv``) straight into the result: the resident memory of a pass is one chunk, whatever
the size of the file, and a numpy memory map handed to a tool is read through its file the same way.

The rows come back as stored (``uint8`` images stay ``uint8``); ``scale`` multiplies them as they
are read (``1/255`` turns 8-bit grey levels into ``[0, 1]``). Tools convert and check each chunk
with the model's own checks (:meth:`pyro_vae.VAE.check_data`): a source is validated in one
chunked pass before any work starts.
"""

from __future__ import annotations

import math
import mmap
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._util.memory import release_freed_memory
from .readers import check_npy_header, idx_header

#: Bytes read per chunk when a tool passes over a whole source (validation, initialisation).
CHUNK_BYTES = 8 * 2**20


class RowSource:
    """``N`` rows of shape ``row_shape``, read on demand; indexing returns a tensor of those rows.

    Subclasses implement :meth:`_read` for sorted, unique positions. Indices may be an integer
    tensor or array, a boolean mask, a slice or an int.
    """

    #: The element type of the rows as they are read.
    dtype: torch.dtype
    device = torch.device("cpu")

    def __init__(self, shape: tuple[int, ...], scale: float | None = None):
        if len(shape) < 1:
            raise ValueError(f"A row source needs the data points along a first dimension, got shape {shape}.")
        self.shape = torch.Size(shape)
        if scale is not None and not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
            raise ValueError(f"scale must be a finite positive number, got {scale!r}.")
        self.scale = scale

    # ------------------------------------------------------------------ tensor-like surface
    def __len__(self) -> int:
        return self.shape[0]

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def row_bytes(self) -> int:
        return int(math.prod(self.shape[1:])) * self.dtype.itemsize

    def is_floating_point(self) -> bool:
        return self.dtype.is_floating_point

    def __getitem__(self, index) -> torch.Tensor:
        positions = self._positions(index)
        if positions.size == 0:
            return torch.empty((0, *self.shape[1:]), dtype=self.dtype)
        if positions.size == 1 or bool((np.diff(positions) > 0).all()):
            values = self._read(positions)  # increasing positions (chunks, sorted samples): no reordering copy
        else:
            unique, inverse = np.unique(positions, return_inverse=True)
            values = self._read(unique)[inverse]
        tensor = torch.from_numpy(np.ascontiguousarray(values))
        if self.scale is not None:  # values are a fresh array, so scaling in place touches nothing shared
            tensor = tensor.to(torch.float32).mul_(self.scale)
        return tensor

    def subset(self, index) -> RowSource:
        """The rows ``index`` as a source of their own, read only when indexed."""
        return _Subset(self, self._positions(index))

    def chunks(self, rows: int | None = None) -> Iterator[tuple[int, torch.Tensor]]:
        """``(start, rows)`` over the whole source, about :data:`CHUNK_BYTES` at a time."""
        rows = rows or max(1, CHUNK_BYTES // max(1, self.row_bytes))
        for start in range(0, len(self), rows):
            yield start, self[start : start + rows]

    def sample(self, n: int, seed: int = 0) -> torch.Tensor:
        """``min(n, N)`` rows drawn without replacement, reproducibly from ``seed``."""
        if n >= len(self):
            return self[:]
        generator = np.random.default_rng(seed)
        return self[np.sort(generator.choice(len(self), size=n, replace=False))]

    # ------------------------------------------------------------------ helpers
    def _positions(self, index) -> np.ndarray:
        n = len(self)
        if isinstance(index, slice):
            return np.arange(n)[index]
        if isinstance(index, (int, np.integer)) and not isinstance(index, bool):
            raise TypeError("Index a row source with a slice or an array of positions (source[[i]]), not one int.")
        positions = index.detach().cpu().numpy() if torch.is_tensor(index) else np.asarray(index)
        if positions.dtype == bool:
            if positions.shape != (n,):
                raise IndexError(
                    f"A boolean mask over a source of {n} rows must have shape ({n},), got {positions.shape}."
                )
            return np.flatnonzero(positions)
        if positions.dtype.kind not in "iu" or positions.ndim != 1:
            raise IndexError(
                f"Rows are selected by a 1-D array of integer positions, got {positions.dtype} of shape "
                f"{positions.shape}."
            )
        positions = positions.astype(np.int64)
        positions = np.where(positions < 0, positions + n, positions)
        if positions.size and (positions.min() < 0 or positions.max() >= n):
            raise IndexError(f"Row positions must lie in 0..{n - 1} (or -{n}..-1).")
        return positions

    def _read(self, positions: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(shape={tuple(self.shape)}, dtype={self.dtype})"


class MappedArray(RowSource):
    """A C-ordered array stored in a file at ``offset``, read row range by row range.

    Args:
        path: the file.
        dtype: numpy element type as stored (byte order included).
        shape: ``(N, ...)``.
        offset: bytes before the first element (a ``.npy`` or IDX header).
        scale: optional factor applied to every value read.
    """

    def __init__(
        self, path: str | os.PathLike, dtype: Any, shape: tuple[int, ...], offset: int = 0, scale: float | None = None
    ):
        super().__init__(tuple(int(s) for s in shape), scale)
        self.path = Path(path)
        self.stored_dtype = np.dtype(dtype)
        if self.stored_dtype.hasobject or self.stored_dtype.kind not in "biuf":
            raise ValueError(f"{self.path} holds {self.stored_dtype} values; rows must be numbers.")
        self.offset = int(offset)
        needed = self.offset + int(math.prod(self.shape)) * self.stored_dtype.itemsize
        size = self.path.stat().st_size
        if size < needed:
            raise ValueError(
                f"{self.path} holds {size:,} bytes, fewer than the {needed:,} its shape "
                f"{tuple(self.shape)} of {self.stored_dtype} from byte {self.offset} needs."
            )
        native = self.stored_dtype.newbyteorder("=")
        self.dtype = torch.float32 if scale is not None else torch.from_numpy(np.zeros(0, dtype=native)).dtype

    def _read(self, positions: np.ndarray) -> np.ndarray:
        """Read each run of consecutive rows with one positioned read straight into the result."""
        out = np.empty((len(positions), *self.shape[1:]), dtype=self.stored_dtype)
        flat = out.reshape(len(positions), -1).view(np.uint8)
        row_bytes = flat.shape[1]
        breaks = np.flatnonzero(np.diff(positions) != 1) + 1
        with open(self.path, "rb", buffering=0) as handle:
            for first, end in zip(np.concatenate([[0], breaks]), np.concatenate([breaks, [len(positions)]])):
                target = memoryview(flat[first:end].reshape(-1))
                at, done = self.offset + int(positions[first]) * row_bytes, 0
                while done < len(target):  # large reads may come back in parts
                    count = os.preadv(handle.fileno(), [target[done:]], at + done)
                    if count == 0:
                        raise ValueError(
                            f"{self.path} ended while reading row {int(positions[first])}: the file "
                            "was truncated after it was opened."
                        )
                    done += count
        return out if out.dtype.isnative else out.astype(out.dtype.newbyteorder("="))


class IndexedRows(RowSource):
    """Rows of any object with ``len()`` and indexing: numpy-style arrays (h5py, zarr) are read with one
    sorted array of positions, anything else row by row.

    Args:
        source: the object; ``source[i]`` must return one row as an array or tensor.
        scale: optional factor applied to every value read.
    """

    def __init__(self, source: Any, scale: float | None = None):
        if not hasattr(source, "__len__") or not hasattr(source, "__getitem__"):
            raise TypeError(f"A row source needs len() and indexing; {type(source).__name__} has not both.")
        self.source = source
        n = len(source)
        if n == 0:
            raise ValueError("The row source is empty; it needs N >= 1 rows.")
        first = _as_numpy(source[0])
        super().__init__((n, *first.shape), scale)
        self._vectorised = hasattr(source, "shape")
        self.dtype = (
            torch.float32 if scale is not None else torch.from_numpy(first.astype(first.dtype.newbyteorder("="))).dtype
        )

    def _read(self, positions: np.ndarray) -> np.ndarray:
        if self._vectorised:
            values = _as_numpy(self.source[positions])
        else:
            values = np.stack([_as_numpy(self.source[int(i)]) for i in positions])
        if values.shape[1:] != tuple(self.shape[1:]):
            raise ValueError(
                f"The row source returned rows of shape {values.shape[1:]}, but its first row has "
                f"shape {tuple(self.shape[1:])}; every row must have the same shape."
            )
        return values.astype(values.dtype.newbyteorder("="), copy=False)


class _Subset(RowSource):
    """Some rows of another source, in a given order."""

    def __init__(self, parent: RowSource, positions: np.ndarray):
        super().__init__((len(positions), *parent.shape[1:]))
        self.parent, self.positions, self.dtype = parent, positions, parent.dtype

    def _read(self, positions: np.ndarray) -> np.ndarray:
        return self.parent[self.positions[positions]].numpy()


class CheckedRows(RowSource):
    """A source whose chunks pass through ``convert`` (a model's checks and conversion) as they are read.

    Built by :func:`checked_rows` after one validating pass, so tools hand it on without checking again.
    """

    def __init__(self, parent: RowSource, convert: Callable[[torch.Tensor], torch.Tensor], shape, dtype, what: str):
        super().__init__(tuple(shape))
        self.parent, self.convert, self.dtype, self.what = parent, convert, dtype, what

    def __getitem__(self, index) -> torch.Tensor:
        return self.convert(self.parent[index])

    def subset(self, index) -> CheckedRows:
        positions = self._positions(index)
        return CheckedRows(
            self.parent.subset(positions), self.convert, (len(positions), *self.shape[1:]), self.dtype, self.what
        )


def _as_numpy(value: Any) -> np.ndarray:
    if torch.is_tensor(value):
        return value.detach().cpu().numpy()
    array = np.asarray(value)
    if array.dtype.hasobject or array.dtype.kind not in "biuf":
        raise TypeError(f"A row source returned {array.dtype} values; rows must be numbers.")
    return array


def open_rows(path: str | os.PathLike, *, scale: float | None = None) -> MappedArray:
    """Open a ``.npy`` file or an uncompressed IDX file as a :class:`MappedArray` (nothing is read yet).

    The ``.npy`` header is parsed without unpickling and checked against the file size; arrays of
    Python objects and Fortran-ordered arrays are refused. A gzipped IDX file cannot be read in
    place: convert its folder once with :func:`pyro_vae.data.idx_to_npy`.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No data file at {path}.")
    if path.suffix.lower() == ".npy":
        shape, dtype, fortran, offset = check_npy_header(path)
        if fortran:
            raise ValueError(
                f"{path} is stored in Fortran order; rows must be contiguous: save it with "
                "numpy.save(path, numpy.ascontiguousarray(x))."
            )
        return MappedArray(path, dtype, shape, offset, scale)
    with open(path, "rb") as handle:
        if handle.read(2) == b"\x1f\x8b":
            raise ValueError(
                f"{path} is gzipped and cannot be read in place; convert its folder once with "
                "pyro_vae.data.idx_to_npy(folder, out_folder) and open the .npy files."
            )
        handle.seek(0)
        shape, dtype = idx_header(handle, path)
        offset = handle.tell()
    expected = offset + int(math.prod(shape)) * dtype.itemsize
    if path.stat().st_size != expected:
        raise ValueError(f"{path} holds {path.stat().st_size:,} bytes but its IDX header {shape} implies {expected:,}.")
    return MappedArray(path, dtype, shape, offset, scale)


def as_row_source(value: Any) -> RowSource | None:
    """``value`` as a :class:`RowSource` when it is one or a numpy memory map, else ``None`` (in-memory data)."""
    if isinstance(value, RowSource):
        return value
    if isinstance(value, np.memmap):
        # A view of a memory map keeps the map's offset, so only a whole map says where its rows are.
        if value.filename is None or not value.flags.c_contiguous or not isinstance(value.base, mmap.mmap):
            raise ValueError(
                "Pass the whole memory map as np.load(path, mmap_mode='r') returns it (C order), or a "
                "RowSource (pyro_vae.data.rows.open_rows(path).subset(rows)) for a part of it."
            )
        return MappedArray(value.filename, value.dtype, value.shape, value.offset)
    return None


def checked_rows(source: RowSource, check: Callable[[torch.Tensor, str], torch.Tensor], what: str) -> CheckedRows:
    """Run ``check`` over every chunk of ``source`` (one pass, one chunk in memory at a time) and return
    the source whose reads pass through it; ``check(rows, what)`` raises ``ValueError`` on bad rows."""
    if isinstance(source, CheckedRows):
        return source
    shape = dtype = None
    for start, chunk in source.chunks():
        try:
            converted = check(chunk, what)
        except ValueError as error:
            raise ValueError(f"{what}, rows {start}..{start + len(chunk) - 1}: {error}") from None
        shape, dtype = (len(source), *converted.shape[1:]), converted.dtype
        del chunk, converted  # one chunk in memory at a time
    release_freed_memory()
    return CheckedRows(source, lambda rows: check(rows, what), shape, dtype, what)

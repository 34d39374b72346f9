"""Numeric tables from CSV files, read so that no row is ever dropped or silently changed.

The rules, applied line by line in bounded memory:

* A UTF-8 byte-order mark (as Excel writes) is removed. Lines holding only white space are not
  rows and are skipped.
* The first row is a header when none of its cells is a number (empty cells allowed, as in the
  index column pandas' ``to_csv`` writes); otherwise it is data like every other row. A header is
  never guessed from a row that merely fails to parse: ``1,NA,3`` is a data row with a missing value.
* Every data row has as many cells as the first row, and every cell is a finite number that
  float32 holds (up to about 3.4e38): ``NA``, empty cells, ``inf``, ``nan`` and ``1e39`` are refused
  with their line and column. A table with missing entries needs them filled, or a mask
  (``docs/programs.md``, "Missing entries"); read with ``missing=True`` (as
  :func:`pyro_vae.data.read_missing` does), the cells pandas reads as missing
  (:data:`~pyro_vae.data.table_columns.MISSING_MARKERS`: empty, ``NA``, ``NaN``, ...) are NaN instead.
* A line longer than :data:`MAX_LINE_CHARS` is refused as soon as that many characters have
  been read, so a huge single-line file costs neither the time nor the memory to read it whole.

Each failure is a ``ValueError`` naming the file, the line and what to do.
"""

from __future__ import annotations

import csv
from collections.abc import Collection
from pathlib import Path

import numpy as np

from .table_columns import MISSING_MARKERS

__all__ = ["MAX_LINE_CHARS", "read_csv", "read_header"]

#: Longest line read (characters): a million features of 15 characters each.
MAX_LINE_CHARS = 16 * 2**20
#: Rows per block of values while reading.
_BLOCK_ROWS = 4096
#: Largest magnitude float32 holds.
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def read_header(path: Path) -> tuple[list[str] | None, int]:
    """``(names, width)``: the column names of ``path`` (its first non-blank row, when no cell of it is
    a number, else ``None``) and the number of cells of that row (0 for an empty file)."""
    with open(path, encoding="utf-8-sig", newline="") as handle:
        while line := handle.readline(MAX_LINE_CHARS + 1):
            if line.strip():
                try:
                    cells = next(csv.reader([line]))
                except csv.Error:
                    return None, 0
                return (None if any(_is_number(c) for c in cells) else [c.strip() for c in cells]), len(cells)
    return None, 0


def read_csv(
    path: Path, text_columns: Collection[int] = (), *, missing: bool = False
) -> tuple[np.ndarray, list[str] | None, dict]:
    """``(values, header, texts)``: the table's values as float64 ``(N, D)`` (each a float32 value),
    its column names (``None`` without a header row), and the cells of ``text_columns`` (0-based)
    as strings, ``{column: [N strings]}``, whose places in ``values`` hold NaN; ``ValueError`` as
    the module docstring says for every other column. With ``missing``, a cell of
    :data:`~pyro_vae.data.table_columns.MISSING_MARKERS` is NaN rather than refused."""
    texts: dict[int, list[str]] = {c: [] for c in text_columns}
    # Rows go into blocks of _BLOCK_ROWS preallocated rows: no array object per row, and one copy at the end.
    blocks: list[np.ndarray] = []
    filled = 0
    header: list[str] | None = None
    width: int | None = None
    with open(path, encoding="utf-8-sig", newline="") as handle:
        line_number = 0
        while True:
            line = handle.readline(MAX_LINE_CHARS + 1)
            if not line:
                break
            line_number += 1
            if len(line) > MAX_LINE_CHARS and not line.endswith("\n"):
                raise ValueError(
                    f"{path}, line {line_number}: longer than {MAX_LINE_CHARS:,} characters; a table has one "
                    "point per line (is this a CSV file?)."
                )
            if not line.strip():
                continue
            try:
                cells = next(csv.reader([line]))
            except csv.Error as error:
                raise ValueError(f"{path}, line {line_number}: not a CSV row ({error}).") from None
            if width is None:
                width = len(cells)
                if not any(_is_number(c) for c in cells):
                    header = [c.strip() for c in cells]
                    continue
            if len(cells) != width:
                raise ValueError(
                    f"{path}, line {line_number}: {len(cells)} values where the first row has {width}; every row "
                    "needs one value per column."
                )
            for column, kept in texts.items():
                kept.append(cells[column].strip())
                cells[column] = "nan"
            absent = {i for i, c in enumerate(cells) if c.strip() in MISSING_MARKERS} if missing else set()
            for column in absent:
                cells[column] = "nan"
            if not blocks or filled == len(blocks[-1]):
                blocks.append(np.empty((_BLOCK_ROWS, width), dtype=np.float64))
                filled = 0
            blocks[-1][filled] = _numbers(cells, path, line_number, header, set(texts) | absent)
            filled += 1
    if not blocks:
        raise ValueError(f"{path} holds no data rows.")
    blocks[-1] = blocks[-1][:filled]
    return (blocks[0] if len(blocks) == 1 else np.concatenate(blocks)), header, texts


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _numbers(cells: list[str], path: Path, line_number: int, header: list[str] | None, text_at: set) -> np.ndarray:
    try:
        values = np.array([float(c) for c in cells], dtype=np.float64)
    except ValueError:
        values = None
    bad = (
        next(i for i, c in enumerate(cells) if not _is_number(c))
        if values is None
        else next((i for i, v in enumerate(values) if i not in text_at and not abs(v) <= _FLOAT32_MAX), None)
    )
    if bad is None:
        return values
    column = f"column {bad + 1}" + (f" ({header[bad]!r})" if header and header[bad] else "")
    text = cells[bad].strip()
    if values is None:
        what = "an empty cell" if not text else f"{text[:40]!r}, which is not a number"
        advice = "fill or drop missing values first (or give the model a mask of the observed entries)"
        if text and header:
            advice = "leave a text column out of the features with columns=[...] (--columns), or read it as the label"
            advice += " with label=... (--label-column)"
    else:
        what = f"{text[:40]!r}, beyond the float32 range (about 3.4e38) or not finite"
        advice = "rescale the column"
    raise ValueError(f"{path}, line {line_number}, {column}: {what}; {advice}.")

"""Which columns of a table are features, which is the label: chosen by the user, or found.

* ``columns=`` names the feature columns (header names, or 0-based positions); by default every
  column but the label is a feature.
* ``label=`` names one column read as the class labels: whole numbers ``>= 0`` as they are, any
  other values (text such as ``"setosa"``) as classes ``0..K-1`` in sorted order, the names kept.
* ``covariates=`` names columns read as categorical covariates (a batch, a donor): each becomes a
  one-hot block of its values in sorted order (:func:`one_hot_columns`), never a feature.
* A row index is never taken for a feature: a first column with an empty or pandas' ``Unnamed: 0``
  header that holds exactly ``0, 1, ..., N-1`` (what ``DataFrame.to_csv`` writes by default) is
  left out unless ``columns=`` asks for it.

:func:`choose_columns` returns the features, the labels and a record of the choice (what a run
folder stores, and what reading the table again needs).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "INDEX_NAMES",
    "choose_columns",
    "column_positions",
    "covariate_positions",
    "label_codes",
    "one_hot_columns",
    "one_hot_recorded",
    "refuse_missing_classes",
]

#: Header names of a row-index column as pandas writes them.
INDEX_NAMES = ("", "Unnamed: 0")

#: Cells that mean "no value" (pandas' defaults): never a class of a label or covariate column.
MISSING_MARKERS = frozenset(
    ["", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>", "N/A", "NA"]
    + ["NULL", "NaN", "None", "n/a", "nan", "null"]
)


def refuse_missing_classes(cells: Sequence[Any], what: str) -> None:
    """A label or covariate cell that says "no value" is refused with its row, not made a class."""
    for row, cell in enumerate(cells):
        if (
            cell is None
            or (isinstance(cell, str) and cell.strip() in MISSING_MARKERS)
            or (isinstance(cell, float) and cell != cell)
        ):
            raise ValueError(
                f"{what}: row {row} has no value ({cell!r}); a label or covariate needs one in every row. "
                "Fill it in or leave the row out."
            )


def _position(name: Any, header: list[str] | None, width: int, path: Any, what: str) -> int:
    if isinstance(name, bool) or not isinstance(name, (int, str)):
        raise TypeError(f"{path}: {what} must name columns by header name or 0-based position, got {name!r}.")
    if isinstance(name, int) or (isinstance(name, str) and name.isdigit() and (header is None or name not in header)):
        position = int(name)
        if not 0 <= position < width:
            raise ValueError(f"{path}: {what} {name!r} is not a column position (the table has {width} columns).")
        return position
    if header is None:
        raise ValueError(f"{path} has no header row, so {what} {name!r} must be a 0-based position.")
    if name not in header:
        raise ValueError(f"{path}: {what} {name!r} is not a column; the columns are {header[:20]}.")
    return header.index(name)


def column_positions(
    header: list[str] | None, width: int, path: Any, *, columns: Sequence[Any] | None, label: Any
) -> tuple[list[int] | None, int | None]:
    """The 0-based positions of the chosen feature columns (``None``: not chosen) and of the label.

    A header that names two columns alike is refused: columns are recorded and found again by name."""
    if header is not None:
        twice = sorted({name for name in header if header.count(name) > 1 and name not in INDEX_NAMES})
        if twice:
            raise ValueError(
                f"{path}: the header names the column(s) {twice[:5]} twice; give every column its own name."
            )
    label_at = None if label is None else _position(label, header, width, path, "label")
    if columns is None:
        return None, label_at
    positions = _positions(columns, header, width, path, "columns")
    if label_at in positions:
        raise ValueError(f"{path}: the feature columns {list(columns)} name the label column too.")
    return positions, label_at


def covariate_positions(
    header: list[str] | None, width: int, path: Any, covariates: Sequence[Any] | None, taken: Sequence[int]
) -> list[int]:
    """The 0-based positions of the covariate columns; none of them a feature or the label (``taken``)."""
    if covariates is None:
        return []
    positions = _positions(covariates, header, width, path, "covariates")
    if set(positions) & set(taken):
        raise ValueError(f"{path}: the covariate columns {list(covariates)} are features or the label as well.")
    return positions


def _positions(names: Any, header: list[str] | None, width: int, path: Any, what: str) -> list[int]:
    if isinstance(names, str) or not isinstance(names, Sequence) or not names:
        raise ValueError(f"{path}: {what} must be a non-empty list of column names or positions, got {names!r}.")
    positions = [_position(c, header, width, path, "column") for c in names]
    if len(set(positions)) != len(positions):
        raise ValueError(f"{path}: {what} {list(names)} name a column twice.")
    return positions


def one_hot_columns(
    values: np.ndarray, header: list[str] | None, texts: dict[int, list[str]], positions: Sequence[int]
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Covariate columns as one-hot blocks, ``(N, K_1 + ... + K_c)`` float32, each column's values read
    as classes in sorted order (numbers by value, text by name), with a record of the classes."""
    blocks, record = [], []
    for position in positions:
        cells = texts.get(position)
        name = header[position] if header else position
        refuse_missing_classes(values[:, position].tolist() if cells is None else cells, f"covariate column {name!r}")
        numbers = values[:, position] if cells is None else _as_numbers(cells)
        if numbers is not None:
            classes: list[Any] = sorted({float(v) for v in numbers})
            index = {c: i for i, c in enumerate(classes)}
            codes = np.array([index[float(v)] for v in numbers], dtype=np.int64)
            classes = [int(c) if c == int(c) else c for c in classes]
        else:
            assert cells is not None
            classes = sorted(set(cells))
            index = {c: i for i, c in enumerate(classes)}
            codes = np.array([index[c] for c in cells], dtype=np.int64)
        blocks.append(np.eye(len(classes), dtype=np.float32)[codes])
        record.append({"column": name, "classes": classes})
    return np.concatenate(blocks, axis=1), record


def one_hot_as_recorded(
    values: np.ndarray,
    texts: dict[int, list[str]],
    positions: Sequence[int],
    recorded: Sequence[dict[str, Any]],
    path: Any,
) -> np.ndarray:
    """Covariate columns as one-hot blocks over the classes a training recorded (``recorded``, what
    :func:`one_hot_columns` returned), so that new rows are encoded as the model was trained."""
    blocks = []
    for position, entry in zip(positions, recorded):
        cells = texts.get(position) or values[:, position].tolist()
        what = f"{path}: covariate column {entry['column']!r}"
        refuse_missing_classes(cells, what)
        blocks.append(one_hot_recorded(cells, entry["classes"], what))
    return np.concatenate(blocks, axis=1)


def choose_columns(
    values: np.ndarray, header: list[str] | None, texts: dict[int, list[str]], path: Any, *,
    columns: list[int] | None, label: int | None, exclude: Sequence[int] = (),
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:  # fmt: skip
    """``(x (N, D), labels (N,), record)`` from the table ``values`` (text columns hold NaN there and
    their cells in ``texts``), as the module docstring says; ``exclude`` are never default features
    (the covariate columns)."""
    width = values.shape[1]
    record: dict[str, Any] = {"features": None, "label": None, "dropped_index": None}
    if columns is None:
        columns = [c for c in range(width) if c != label and c not in exclude]
        first = header[0] if header else None
        if first in INDEX_NAMES and 0 not in texts and columns[:1] == [0] and len(columns) > 1:
            if np.array_equal(values[:, 0], np.arange(len(values))):
                columns = columns[1:]
                record["dropped_index"] = first
    else:
        record["features"] = [header[c] if header else c for c in columns]
    text_features = [c for c in columns if c in texts]
    if text_features:
        names = [header[c] if header else c for c in text_features]
        raise ValueError(f"{path}: the feature column(s) {names} hold text; leave them out with columns=[...].")
    x = values[:, columns]
    labels = np.zeros(len(values), dtype=np.int64)
    if label is not None:
        record["label"] = header[label] if header else label
        labels, classes = label_codes(values[:, label], texts.get(label))
        if classes is not None:
            record["label_classes"] = classes
    record["columns"] = [header[c] if header else c for c in columns]
    return x, labels, record


def label_codes(numbers: np.ndarray | None, cells: list[str] | None) -> tuple[np.ndarray, list[str] | None]:
    """Class labels ``(N,)`` of one column and the class names (``None`` where the column holds whole
    numbers ``>= 0``, taken as they are; otherwise its values as text, classes in sorted order).
    ``cells`` is the column as text where it was read as text, else ``None`` and ``numbers`` holds it."""
    refuse_missing_classes(
        cells if cells is not None else (numbers.tolist() if numbers is not None else []), "label column"
    )
    if cells is not None:
        numbers = _as_numbers(cells)
    if numbers is not None and np.all(numbers >= 0) and np.all(numbers == np.round(numbers)):
        return numbers.astype(np.int64), None
    if cells is None:
        assert numbers is not None
        cells = [repr(float(v)) for v in numbers]
    classes = sorted(set(cells))
    lookup = {name: i for i, name in enumerate(classes)}
    return np.array([lookup[c] for c in cells], dtype=np.int64), classes


def one_hot_recorded(cells: Sequence[Any], classes: Sequence[Any], what: str) -> np.ndarray:
    """One column's values as a one-hot block ``(N, len(classes))`` over classes recorded at training
    (what :func:`one_hot_columns` wrote), so that new data are encoded as the model was trained; a
    value that is not one of the classes is refused."""
    numeric = all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in classes)
    keys = [float(c) for c in classes] if numeric else [str(c) for c in classes]
    index = {k: i for i, k in enumerate(keys)}
    codes = np.empty(len(cells), dtype=np.int64)
    for row, cell in enumerate(cells):
        try:
            code = index.get(float(cell) if numeric else str(cell))
        except (TypeError, ValueError):
            code = None
        if code is None:
            raise ValueError(
                f"{what}: the value {cell!r} (row {row}) is none of the classes {list(classes)[:20]} "
                "the model was trained with."
            )
        codes[row] = code
    return np.eye(len(classes), dtype=np.float32)[codes]


def _as_numbers(cells: list[str]) -> np.ndarray | None:
    try:
        numbers = np.array([float(c) for c in cells], dtype=np.float64)
    except ValueError:
        return None
    return numbers if bool(np.isfinite(numbers).all()) else None

"""Data: the embedded digits, any directory of MNIST-format IDX files, splits and binarisation.

Entry point: :func:`load`. Every split holds ``x`` of shape ``(N, D)``, integer ``labels`` of
shape ``(N,)``, the ``image_shape`` and the number of grey levels ``num_levels`` of the source
(17 for the digits, whose pixels count inked cells from 0 to 16; 256 for 8-bit IDX images).

Values (``values=``):

* ``"unit"`` -- grey levels scaled to ``[0, 1]`` (``k / (num_levels - 1)``), the default;
* ``"levels"`` -- the integer levels ``k`` themselves (as floats), for mass functions on counts
  and levels and for densities with ``num_levels`` (uniform dequantisation).

Binarisation modes (``binarize=``):

* ``"none"`` -- grey levels scaled to ``[0, 1]``;
* ``"fixed"`` -- every split is replaced by one Bernoulli draw per pixel with a fixed seed;
* ``"dynamic"`` -- validation and test are binarised once with a fixed seed, while the training
  split keeps its grey levels and :func:`pyro_vae.fit` draws a fresh binarisation each epoch
  (the usual protocol for binarised MNIST-type benchmarks).
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import urllib.request
import zlib
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._util.checks import seed_value
from .._util.files import atomic_write, check_writable
from .anndata_files import H5AD_SUFFIX, read_h5ad
from .readers import TABLE_SUFFIXES, check_labels, idx_header, read_idx, read_table, verify_idx_checksums
from .splits import Dataset, Split, binarize

__all__ = ["BINARIZE_MODES", "Dataset", "Split", "VALUE_MODES", "binarize", "load"]

BINARIZE_MODES = ("none", "fixed", "dynamic")
VALUE_MODES = ("unit", "levels")
DATA_ENV_VAR = "PYRO_VAE_DATA"
DEBIAN_DATASETS = Path("/usr/share/datasets")

# IDX files by role; each may be gzipped (".gz") or not.
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

# Known IDX data sets: where to download them and the SHA-256 of each *decompressed* file
# (compressed archives differ between mirrors; their content does not).
KNOWN_IDX: dict[str, dict[str, Any]] = {
    "fashion-mnist": {
        "debian_package": "dataset-fashion-mnist",
        "mirrors": ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
        "sha256": {
            "train_images": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            "train_labels": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            "test_images": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            "test_labels": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        },
    },
    "mnist": {"debian_package": None, "mirrors": [], "sha256": {}},
}


def load(
    name_or_path: str | os.PathLike = "digits",
    *,
    binarize: str = "none",
    values: str = "unit",
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
    download: bool = True,
    columns: Any = None,
    label: Any = None,
    covariates: Any = None,
    layer: str | None = None,
    missing: bool = False,
) -> Dataset:
    """Load a data set with deterministic train/validation/test splits.

    Args:
        name_or_path: ``"digits"`` (scikit-learn's bundled 8x8 digits, 1,797 images, the embedded
            default), ``"fashion-mnist"`` or ``"mnist"`` (IDX files found as described below), the
            path of a directory holding MNIST-format IDX files (gzipped or not), or a table: a
            ``.npy`` file (read without unpickling) or a numeric ``.csv`` of shape ``(N, D)``,
            split like the digits, with every label 0; or an AnnData ``.h5ad`` file (cells by
            genes; needs ``pip install 'pyro_vae[anndata]'``), read as a table whose columns are
            ``var_names`` and whose label and covariates are ``obs`` columns.
        binarize: ``"none"``, ``"fixed"`` or ``"dynamic"`` (see the module docstring).
        values: ``"unit"`` (scaled to ``[0, 1]``) or ``"levels"`` (integer grey levels); see the
            module docstring. Binarisation needs ``"unit"``.
        val_fraction: share of the training images held out for validation.
        test_fraction: share held out for testing; only for ``"digits"`` and tables, since IDX
            data sets come with their own test split.
        seed: seeds the split and the fixed binarisation.
        download: for a known IDX data set whose files are found nowhere, try its mirrors
            (checksums verified) before failing.
        columns, label: for a table, the feature columns (header names or 0-based positions;
            default every column but the label and a row index) and the column of class labels
            (whole numbers, or any values read as sorted classes); see
            :mod:`pyro_vae.data.table_columns`. The choice is in the result's ``columns``.
        covariates: for a table, columns read as categorical covariates (a batch): one-hot blocks
            in each split's ``covariates``, ``(N, K)``, never features; pass
            ``split.covariates_for()`` to the tools and ``covariate_dim=K`` to the VAE. Pass the
            record of a training (``dataset.columns["covariates"]``: columns with their classes) to
            encode new rows over the training's classes; a value outside them is refused, as is an
            empty or ``NA`` cell in any label or covariate column.
        layer: for an ``.h5ad`` file, the layer read as the points (e.g. ``"counts"``); ``None``
            reads ``X`` (:func:`pyro_vae.data.anndata_files.read_h5ad`).
        missing: for a table, read missing entries (a CSV file's empty and ``NA`` cells, NaN in a
            ``.npy`` array or an AnnData matrix) as missing: ``x`` holds NaN there and every split a
            ``mask``, True where observed, which ``fit`` and the tools that take ``mask=`` read from
            the split (:mod:`pyro_vae.data.missing_values`). Without it such entries are refused.

    IDX files of a named data set are searched for in this order: ``$PYRO_VAE_DATA/<name>``, the
    user cache ``~/.cache/pyro_vae/<name>`` (or under ``$XDG_CACHE_HOME``), then Debian's
    ``/usr/share/datasets/<name>``.

    Returns: a :class:`Dataset`.

    Length: checks every option before any file is read, then one branch per source (digits, IDX folders,
    tables, AnnData) into one Dataset.
    """
    checked_seed = seed_value(seed)
    if checked_seed is None:
        raise TypeError("seed must be an int (it seeds the split), got None.")
    seed = checked_seed
    if binarize not in BINARIZE_MODES:
        raise ValueError(f"binarize must be one of {BINARIZE_MODES}, got {binarize!r}.")
    if values not in VALUE_MODES:
        raise ValueError(f"values must be one of {VALUE_MODES}, got {values!r}.")
    if values == "levels" and binarize != "none":
        raise ValueError("Binarised data has two levels already; use values='unit' with binarize.")
    for option, fraction in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 < fraction < 1.0:
            raise ValueError(f"{option} must lie strictly between 0 and 1, got {fraction!r}.")

    key = str(name_or_path)
    source, chosen = key, None
    suffix = Path(key).suffix.lower()
    chosen_any = columns is not None or label is not None or covariates is not None
    if chosen_any and suffix not in (*TABLE_SUFFIXES, H5AD_SUFFIX):
        raise ValueError(
            f"columns=, label= and covariates= choose the columns of a table (.csv, .npy or .h5ad); {key} is not one."
        )
    if layer is not None and suffix != H5AD_SUFFIX:
        raise ValueError(f"layer= names a layer of an AnnData file (.h5ad); {key} is not one.")
    if missing and suffix not in (*TABLE_SUFFIXES, H5AD_SUFFIX):
        raise ValueError(f"missing=True reads the empty cells of a table (.csv, .npy or .h5ad); {key} is not one.")
    if missing and binarize != "none":
        raise ValueError("missing=True needs binarize='none': a missing entry has no value to binarise.")
    y = None
    if key == "digits":
        x, labels, image_shape = _load_digits()
        test_x, test_labels = None, None
        num_levels = DIGITS_LEVELS
    elif suffix in (*TABLE_SUFFIXES, H5AD_SUFFIX):
        if values == "levels":
            raise ValueError(f"{key}: values='levels' applies to 8-bit images; a table is read as it is.")
        if suffix == H5AD_SUFFIX:
            x, labels, chosen, y = read_h5ad(
                Path(key), layer=layer, columns=columns, label=label, covariates=covariates
            )
        else:
            x, labels, chosen, y = read_table(
                Path(key), columns=columns, label=label, covariates=covariates, missing=missing
            )
        source, key = str(Path(key).resolve()), Path(key).name
        test_x, test_labels, image_shape, num_levels = None, None, None, None
    else:
        directory = _find_idx_directory(key, download=download)
        source = key if key in KNOWN_IDX else str(directory.resolve())
        x, labels = _read_idx_pair(directory, "train")
        test_x, test_labels = _read_idx_pair(directory, "test")
        image_shape = tuple(x.shape[1:])
        key = key if key in KNOWN_IDX else Path(key).name
        num_levels = 256 if x.dtype == torch.uint8 else None
        if values == "levels" and num_levels is None:
            raise ValueError(f"{key}: values='levels' needs 8-bit (unsigned byte) IDX images, got {x.dtype}.")
    scale = 1.0 if values == "levels" else float(num_levels - 1) if num_levels else 1.0
    x = _flatten_scale(x, scale)

    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    test_idx = None  # an IDX data set brings its own test split (and no covariates)
    if test_x is None:
        if test_fraction + val_fraction >= 1.0:
            raise ValueError("val_fraction + test_fraction must be below 1.")
        n_test = max(1, round(test_fraction * len(x)))
        test_idx, order = order[:n_test], order[n_test:]
        test_x, test_labels = x[test_idx], labels[test_idx]
    else:
        test_x = _flatten_scale(test_x, scale)
    n_val = max(1, round(val_fraction * len(x)))
    val_idx, train_idx = order[:n_val], order[n_val:]

    observed = _observed(x, key) if missing else None
    if missing:  # recorded with the columns, so that a run's data is read again the same way
        chosen = {**(chosen or {}), "missing": True}

    def split(points, point_labels, index):  # with the covariates and the mask of these rows
        covariates = None if y is None or index is None else y[index]
        seen = None if observed is None or index is None else observed[index]
        return Split(points, point_labels, image_shape, num_levels=num_levels, covariates=covariates, mask=seen)

    splits = {
        "train": split(x[train_idx], labels[train_idx], train_idx),
        "val": split(x[val_idx], labels[val_idx], val_idx),
        "test": split(test_x, test_labels, test_idx),
    }
    if binarize != "none":
        # Distinct fixed seeds per split, so validation and test noise are independent.
        for offset, part in enumerate(("val", "test")):
            splits[part] = replace(splits[part], x=splits[part].binarized(seed + 1000 + offset))
        if binarize == "fixed":
            splits["train"] = replace(splits["train"], x=splits["train"].binarized(seed + 999))
        else:
            splits["train"] = replace(splits["train"], dynamic_binarization=True)
    return Dataset(key, splits["train"], splits["val"], splits["test"], source=source, columns=chosen)


def _observed(x: torch.Tensor, key: str) -> torch.Tensor:
    """The mask of a table read with ``missing=True``: True where a value was read; ``inf`` refused."""
    if bool(torch.isinf(x).any()):
        raise ValueError(f"{key} holds inf: a value out of range, not a missing one; fix or drop it.")
    observed = ~torch.isnan(x)
    if not bool(observed.any(0).all()):
        empty = int((~observed.any(0)).nonzero()[0])
        raise ValueError(f"{key}: feature {empty} is missing in every row; drop that column (columns=...).")
    return observed


# ---------------------------------------------------------------------- embedded digits
#: Each digits pixel counts the inked cells of a 4x4 block: 0 to 16.
DIGITS_LEVELS = 17


def _load_digits():
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.from_numpy(bunch.images.astype(np.float32))
    return images, torch.from_numpy(bunch.target.astype(np.int64)), (8, 8)


def _flatten_scale(x: torch.Tensor, scale: float) -> torch.Tensor:
    """Rows of ``x`` as float32 divided by ``scale`` (1 keeps the integer levels)."""
    x = x.reshape(x.shape[0], -1).to(torch.float32)
    return x if scale == 1.0 else x / scale


# ---------------------------------------------------------------------- IDX files
def _candidate_directories(name: str) -> list[Path]:
    found = []
    if os.environ.get(DATA_ENV_VAR):
        found.append(Path(os.environ[DATA_ENV_VAR]) / name)
    found.append(_cache_root() / name)
    found.append(DEBIAN_DATASETS / name)
    return found


def _cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "pyro_vae"


def _has_idx_files(directory: Path) -> bool:
    return all(_idx_path(directory, role) is not None for role in IDX_FILES)


def _existing_idx_path(directory: Path, role: str) -> Path:
    """The IDX file of ``role`` in ``directory`` (plain or gzipped), or ``FileNotFoundError``."""
    path = _idx_path(directory, role)
    if path is None:
        raise FileNotFoundError(f"{directory} has no {IDX_FILES[role]} (nor {IDX_FILES[role]}.gz).")
    return path


def _idx_path(directory: Path, role: str) -> Path | None:
    for suffix in ("", ".gz"):
        path = directory / (IDX_FILES[role] + suffix)
        if path.is_file():
            return path
    return None


def _find_idx_directory(name_or_path: str, *, download: bool) -> Path:
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        if not _has_idx_files(path):
            missing = [IDX_FILES[r] for r in IDX_FILES if _idx_path(path, r) is None]
            raise FileNotFoundError(f"{path} lacks the IDX file(s) {missing} (each may be gzipped, ending in .gz).")
        return path
    if name_or_path not in KNOWN_IDX:
        raise ValueError(
            f"{name_or_path!r} is neither a directory nor a known data set; use 'digits', "
            f"{sorted(KNOWN_IDX)}, or the path of a directory of MNIST-format IDX files."
        )
    candidates = _candidate_directories(name_or_path)
    for directory in candidates:
        if _has_idx_files(directory):
            verify_idx_checksums(directory, name_or_path, IDX_FILES, KNOWN_IDX[name_or_path]["sha256"])
            return directory
    info = KNOWN_IDX[name_or_path]
    target = candidates[-2]  # the user cache
    errors: list[str] = []
    if download and info["mirrors"]:
        try:
            _download_idx(name_or_path, target)
            return target
        except OSError as error:  # no network, a broken mirror, a checksum mismatch
            errors.append(str(error))
    how = [f"put the four IDX files ({', '.join(IDX_FILES.values())}, optionally .gz) in one of:"]
    how += [f"  {d}" for d in candidates]
    if info["debian_package"]:
        how.insert(0, f"install Debian's package: sudo apt-get install {info['debian_package']}; or")
    how.append(f"or set ${DATA_ENV_VAR} to a directory holding a '{name_or_path}' folder,")
    how.append("or pass the directory path to pyro_vae.data.load(path).")
    tried = f" Download failed: {'; '.join(errors)}." if errors else ""
    raise FileNotFoundError(f"Could not find the {name_or_path!r} IDX files.{tried} To get them, " + "\n".join(how))


def _download_idx(name: str, target: Path, timeout: float = 20.0) -> None:
    """Fetch every IDX file of ``name`` into ``target``, verifying the decompressed SHA-256."""
    info = KNOWN_IDX[name]
    target.mkdir(parents=True, exist_ok=True)
    for role, stem in IDX_FILES.items():
        last_error: Exception | None = None
        for mirror in info["mirrors"]:
            url = mirror.rstrip("/") + "/" + stem + ".gz"
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    payload = response.read()
                content = gzip.decompress(payload)
            except (OSError, EOFError) as error:
                last_error = error
                continue
            digest = hashlib.sha256(content).hexdigest()
            if digest != info["sha256"][role]:
                last_error = OSError(f"checksum mismatch for {url}: got {digest}")
                continue
            atomic_write(target / (stem + ".gz"), lambda handle, payload=payload: handle.write(payload))
            break
        else:
            raise OSError(f"could not fetch {stem}: {last_error}")


def _read_idx_pair(directory: Path, part: str) -> tuple[torch.Tensor, torch.Tensor]:
    images = read_idx(_existing_idx_path(directory, f"{part}_images"))
    labels_path = _existing_idx_path(directory, f"{part}_labels")
    labels = read_idx(labels_path)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(
            f"{directory}: {part} images of shape {tuple(images.shape)} do not match labels of "
            f"shape {tuple(labels.shape)}; expected (N, H, W) and (N,)."
        )
    return images, check_labels(labels, labels_path)


def idx_to_npy(
    directory: str | os.PathLike, out_directory: str | os.PathLike, *, block_bytes: int = 2**24
) -> dict[str, Path]:
    """Convert a folder of MNIST-format IDX files (gzipped or not) into ``.npy`` files, once, in blocks.

    Writes ``train_images.npy`` and ``test_images.npy`` of shape ``(N, H * W)`` in the files' own
    element type (``uint8`` grey levels for MNIST-type data) and ``train_labels.npy``,
    ``test_labels.npy`` of shape ``(N,)`` (``int64``). Nothing larger than ``block_bytes`` is held in
    memory, so folders larger than memory convert too; every file is written beside its final name
    and renamed into place when complete, so an interrupted conversion leaves no partial file.
    Open the results with :func:`pyro_vae.data.rows.open_rows` (``scale=1/255`` for values in
    ``[0, 1]``) and pass them to any tool.

    Returns: the path of each written file, by role.
    """
    directory = _find_idx_directory(str(directory), download=False)
    out_directory = Path(out_directory)
    check_writable(out_directory, "the converted data")
    written = {}
    for role in IDX_FILES:
        target = out_directory / f"{role}.npy"
        atomic_write(
            target, lambda handle, role=role: _copy_idx(_existing_idx_path(directory, role), handle, role, block_bytes)
        )
        written[role] = target
    for part in ("train", "test"):
        if np.load(written[f"{part}_images"], mmap_mode="r").shape[0] != np.load(written[f"{part}_labels"]).shape[0]:
            raise ValueError(f"{directory}: the {part} images and labels have different numbers of rows.")
    return written


def _copy_idx(path: Path, handle, role: str, block_bytes: int) -> None:
    """Stream one IDX file into ``handle`` as a ``.npy`` array (see :func:`idx_to_npy`)."""
    with open(path, "rb") as probe:
        compressed = probe.read(2) == b"\x1f\x8b"
    try:
        with gzip.open(path, "rb") if compressed else open(path, "rb") as stream:
            shape, dtype = idx_header(stream, path)
            images = role.endswith("images")
            if (images and len(shape) < 2) or (not images and len(shape) != 1):
                raise ValueError(f"{path}: {role} have shape {shape}; expected (N, H, W) images or (N,) labels.")
            native = np.dtype(np.int64) if not images else dtype.newbyteorder("=")
            rows = (shape[0], math.prod(shape[1:])) if images else shape
            np.lib.format.write_array_header_1_0(
                handle, {"descr": np.lib.format.dtype_to_descr(native), "fortran_order": False, "shape": rows}
            )
            remaining = math.prod(shape) * dtype.itemsize
            block = max(dtype.itemsize, block_bytes // dtype.itemsize * dtype.itemsize)
            while remaining:
                part = stream.read(min(block, remaining))
                if not part:
                    raise ValueError(f"{path} ends {remaining:,} bytes before the size its header {shape} announces.")
                if len(part) % dtype.itemsize:  # a short read inside an element: complete it
                    part += stream.read(dtype.itemsize - len(part) % dtype.itemsize)
                values = np.frombuffer(part, dtype=dtype)
                if not images:
                    values = check_labels(torch.from_numpy(values.astype(np.int64)), path).numpy()
                handle.write(values.astype(native, copy=False).tobytes())
                remaining -= len(part)
            if stream.read(1):
                raise ValueError(f"{path} holds more data than its header {shape} announces.")
    except (OSError, EOFError, zlib.error) as error:
        raise ValueError(f"{path} is unreadable or a damaged gzip file ({type(error).__name__}: {error}).") from None

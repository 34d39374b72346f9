"""``pyro-vae impute``: fill the missing entries of a table with a trained run's model.

Missing entries are the empty and ``NA`` cells of a CSV file, or NaN in a ``.npy`` array or an
``.h5ad`` matrix (:func:`pyro_vae.data.read_missing`). The feature columns are the ones the run was
trained on where it recorded them. The imputed means go to a CSV file (the data's own header), and
the draws, which carry the model's uncertainty, to ``.npy`` beside it, shape ``(num_samples, N, D)``.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from .._util.files import atomic_write, check_writable
from ..data.missing_values import read_missing
from ..io import runs
from ..io.checkpoint import load
from ..latent.imputation import impute


def run_impute(args) -> dict:
    """``pyro-vae impute``: read, impute, write the means and the draws, print a summary."""
    run, source = Path(args.run), Path(args.data)
    out = Path(args.out) if args.out else source.with_name(f"{source.stem}-imputed.csv")
    if out.suffix.lower() != ".csv":
        raise ValueError(f"--out must be a .csv path, got {out}.")
    draws_path = out.with_name(f"{out.stem}-draws.npy")
    if not args.overwrite and (out.exists() or draws_path.exists()):
        raise FileExistsError(f"{out} or {draws_path} exists; pass --overwrite to replace them.")
    check_writable(out.parent, "the imputed table")
    config = runs.read_config(run)
    chosen = config.get("data_columns") or {}
    if chosen.get("covariates"):
        raise ValueError(
            f"{run} was trained with covariate columns; impute from Python with pyro_vae.impute(..., covariates=...)."
        )
    vae = load(run / "model.pt")
    x, mask = read_missing(source, columns=chosen.get("features"), layer=chosen.get("layer"))
    imputed = impute(vae, x, mask=mask, num_particles=args.num_particles, num_samples=args.num_samples, seed=args.seed)
    names = chosen.get("columns") or [str(i) for i in range(x.shape[1])]
    atomic_write(out, lambda handle: handle.write(_csv_bytes(names, imputed.mean.numpy())))
    atomic_write(draws_path, lambda handle: np.save(handle, imputed.draws.numpy(), allow_pickle=False))
    summary = {
        "imputed": str(out),
        "draws": str(draws_path),
        "rows": int(x.shape[0]),
        "missing_entries": int((~mask).sum()),
        "median_effective_sample_size": float(imputed.effective_sample_size.float().median()),
    }
    print(
        f"{summary['missing_entries']} missing entries of {summary['rows']} rows imputed: means in {out}, "
        f"{args.num_samples} draws per row in {draws_path} (median effective sample size "
        f"{summary['median_effective_sample_size']:.1f} of {args.num_particles})."
    )
    return summary


def _csv_bytes(names, values: np.ndarray) -> bytes:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(names)
    writer.writerows([[repr(float(v)) for v in row] for row in values])
    return text.getvalue().encode()

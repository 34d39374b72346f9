"""Run folders of the command line: what ``pyro-vae train`` writes, and how the other commands read it.

A run folder holds::

    config.json      data (name, resolved source, fingerprint, binarisation, values, seed),
                     the model's configuration and the training settings -- written atomically,
                     only once the settings are checked
    checkpoint.pt    the training state after every epoch (resumable)
    model.pt         the trained model
    history.csv      one row per epoch
    summary.json     test ELBO, best epoch and the files written
    *.png            figures

``config.json`` also lists, under ``outputs``, every file a command wrote into the folder (train,
evaluate, sample, report; :func:`record_outputs`), so that ``--overwrite`` removes exactly the
previous run's files and nothing else.

While a training writes to the folder, ``.lock`` holds its process id: a second training into the
same folder is refused, and the lock is taken before anything in the folder is checked or removed. :func:`load_run` rebuilds the model and the data set and refuses a pairing
that does not match (another data set, a changed file, another number of features).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from .._util.files import FileLock, write_json
from .._util.untrusted import MAX_JSON_CHARS, parse_json, read_text_at_most
from ..data import loading as data_module
from ..vae.model import VAE
from .checkpoint import load

#: Files that make a folder a run folder; training into one needs --resume or --overwrite.
RUN_FILES = ("config.json", "model.pt", "checkpoint.pt", "history.csv", "summary.json")
#: The keys of config.json that a resumed run must share with the original (everything but epochs).
_RESUME_KEYS = ("data", "data_source", "data_fingerprint", "data_columns", "binarize", "values", "seed", "model")


def lock(out: Path, holder: str = "training") -> FileLock:
    """The run folder's lock: a training holds it while it writes there, and an evaluation or a report
    while it reads the run and writes beside it, so that no command's files land in another run."""
    return FileLock(out / ".lock", f"The run folder {out}", holder)


def describe(dataset, vae: VAE, *, binarize: str, values: str, seed: int, training: dict[str, Any]) -> dict[str, Any]:
    """The content of config.json for a run of ``vae`` on ``dataset``."""
    return {
        "data": dataset.name,
        "data_source": dataset.source,
        "data_fingerprint": dataset.fingerprint(),
        "data_columns": dataset.columns,
        "binarize": binarize,
        "values": values,
        "seed": seed,
        "model": vae.config(),
        "training": training,
    }


#: What ``pyro-vae train``, ``evaluate`` and ``report`` wrote into a run folder before config.json
#: listed its outputs: removed by ``--overwrite`` in folders without that list.
_EARLIER_OUTPUTS = (
    "training_curve.png", "prior_samples.png", "aggregate_samples.png", "reconstructions.png",
    "latent_map.png", "evaluation.json", "report/report.json",
)  # fmt: skip


def prepare(
    out: Path, config: dict[str, Any], *, resume: bool, overwrite: bool, training_defaults: dict[str, Any] | None = None
) -> None:
    """Refuse a training into ``out`` that would mix two runs; with ``overwrite``, clear the old one.

    Call it holding :func:`lock`. A resumed run must repeat every training setting but ``epochs``
    (a setting that the saved ``config.json`` lacks, written before the setting existed, counts as
    its ``training_defaults`` value) and needs the run's ``checkpoint.pt``. ``overwrite`` removes
    the files the previous run lists as its outputs (and the run files themselves), and refuses a
    folder whose ``config.json`` is not a pyro_vae run's.

    Nothing else is written here: config.json is written once training has checked its settings.
    """
    if resume and overwrite:
        raise ValueError("--resume continues a run and --overwrite replaces it; pass one of them.")
    existing = [name for name in RUN_FILES if (out / name).exists()]
    if existing and not (resume or overwrite):
        raise ValueError(
            f"{out} already holds a run ({', '.join(existing)}); pass --overwrite to replace it "
            "(or, with pyro-vae train, --resume to continue it), or choose another --out."
        )
    if resume and not (out / "checkpoint.pt").is_file():
        raise ValueError(
            f"Nothing to resume in {out}: it has no checkpoint.pt"
            + (" (the run stopped before its first epoch ended)" if (out / "config.json").exists() else "")
            + ". Start the run again with --overwrite, or drop --resume to train into a new --out."
        )
    if overwrite and existing:
        _remove_previous_run(out)
    if resume:
        saved = read_config(out)
        differing = [k for k in _RESUME_KEYS if saved.get(k) != config.get(k)]
        before = {**(training_defaults or {}), **saved.get("training", {})}
        training = {
            k
            for k in set(before) | set(config["training"])
            if k != "epochs" and before.get(k) != config["training"].get(k)
        }
        if differing or training:
            raise ValueError(
                f"Cannot resume {out}: this command differs from the run's config.json in "
                f"{sorted(differing) + sorted(training)}; repeat the original options, changing only "
                "--epochs."
            )


def _remove_previous_run(out: Path) -> None:
    """Delete the previous run's outputs (listed in its config.json) and run files, nothing else."""
    try:
        saved = read_config(out)
    except (FileNotFoundError, ValueError) as error:
        raise ValueError(
            f"--overwrite refuses {out}: it is not a pyro_vae run folder ({error}), so pyro_vae cannot tell "
            "its own files from yours. Choose another --out, or empty the folder yourself."
        ) from None
    listed = saved.get("outputs")
    names = listed if isinstance(listed, list) else list(_EARLIER_OUTPUTS)
    for name in [*names, *RUN_FILES]:
        path = _inside(out, name)
        if path is not None and path.is_file():
            path.unlink()
    for folder in sorted({p.parent for n in names if (p := _inside(out, n)) is not None}, reverse=True):
        if folder != out.resolve() and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


def inside(run: Path, path: Path) -> bool:
    """Whether ``path`` lies inside the run folder ``run``."""
    return run.resolve() in Path(path).resolve().parents


def _inside(out: Path, name: Any) -> Path | None:
    """``out / name`` if ``name`` is a relative path that stays inside ``out``, else ``None``."""
    if not isinstance(name, str) or not name or Path(name).is_absolute():
        return None
    path = (out / name).resolve()
    root = out.resolve()
    return path if root in path.parents else None


def record_outputs(run: Path, paths: Any) -> None:
    """Add the files among ``paths`` that lie inside the run folder ``run`` to its config.json's
    ``outputs`` (what ``--overwrite`` removes); paths elsewhere are the user's and are not listed."""
    config_path = run / "config.json"
    if not config_path.is_file():
        return
    config = read_config(run)
    outputs = list(config.get("outputs") or [])
    root = run.resolve()
    for path in paths:
        resolved = Path(path).resolve()
        if root in resolved.parents:
            name = resolved.relative_to(root).as_posix()
            if name not in outputs:
                outputs.append(name)
    if outputs != config.get("outputs"):
        write_json(config_path, {**config, "outputs": outputs})


def write_config(out: Path, config: dict[str, Any]) -> None:
    """Write config.json, keeping the ``outputs`` a resumed run's config.json already lists."""
    outputs = None
    if (out / "config.json").is_file():
        outputs = read_config(out).get("outputs")
    write_json(out / "config.json", {**config, "outputs": outputs} if isinstance(outputs, list) else config)


def read_config(run: Path) -> dict[str, Any]:
    path = run / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{run} is not a run folder: it has no config.json (write one with pyro-vae train).")
    config = parse_json(read_text_at_most(path, MAX_JSON_CHARS, "a run's configuration"), str(path))
    if not isinstance(config, dict) or not {"data", "binarize", "seed", "model"} <= set(config):
        raise ValueError(f"{path} is not the description of a run (keys missing).")
    return config


@dataclass(frozen=True)
class Run:
    """A run folder, loaded: its model, its data set (splits as in training) and its ``config.json``."""

    path: Path
    vae: VAE
    dataset: Any
    config: dict[str, Any]


def load_run(run: str | os.PathLike, **networks: nn.Module) -> Run:
    """The :class:`Run` of a folder written by ``pyro-vae train`` or ``pyro-vae demo``: ``.vae``,
    ``.dataset`` and ``.config``.

    The data set is loaded with the run's own settings (source, binarisation, values, seed), so its
    validation and test splits are the ones the model was checked against. A data set whose
    fingerprint differs from the one recorded at training, or whose points do not have the model's
    number of features, is refused.
    """
    run = Path(run)
    if not (run / "model.pt").is_file() and not (run / "config.json").is_file():
        raise FileNotFoundError(
            f"No checkpoint at {run / 'model.pt'}: {run} is not a run folder (it has no "
            "config.json either); write one with pyro-vae train."
        )
    config = read_config(run)
    vae = load(run / "model.pt", **networks)
    source = config.get("data_source") or config["data"]
    chosen = config.get("data_columns") or {}
    dataset = data_module.load(
        source,
        binarize=config["binarize"],
        values=config.get("values", "unit"),
        seed=config["seed"],
        columns=chosen.get("features"),
        label=chosen.get("label"),
        covariates=chosen.get("covariates") or None,  # with the classes recorded at training
        layer=chosen.get("layer"),
        missing=bool(chosen.get("missing", False)),
    )
    if dataset.input_dim != vae.input_dim:
        raise ValueError(
            f"{run}: the model describes {vae.input_dim} features per point but {source} has "
            f"{dataset.input_dim}; this model was not trained on this data."
        )
    recorded = config.get("data_fingerprint")
    if recorded is not None and dataset.fingerprint() != recorded:
        raise ValueError(
            f"{run}: the data at {source} has changed since training (fingerprint "
            f"{dataset.fingerprint()}, recorded {recorded}); evaluate on the data it was trained on."
        )
    if json.dumps(vae.config(), sort_keys=True) != json.dumps(_normalised(config["model"]), sort_keys=True):
        raise ValueError(f"{run}: model.pt and config.json describe different models; the folder mixes two runs.")
    return Run(run, vae, dataset, config)


def _normalised(model_config: dict) -> dict:
    from ..vae.config import normalised_config

    return normalised_config(model_config)


def training_codes_input(dataset):
    """Training images as the model saw them: one fixed binarisation under dynamic binarisation."""
    return dataset.train.binarized(0) if dataset.train.dynamic_binarization else dataset.train.x

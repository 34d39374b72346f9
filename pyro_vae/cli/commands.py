"""The commands of ``pyro-vae``: demo, train, sample, evaluate and compare (``report`` in report.py)."""

from __future__ import annotations

import os
import sys
import warnings
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from .._util.files import atomic_write, write_json
from ..data import loading as data_module
from ..evaluate.elbo import mean_elbo
from ..io import runs
from ..io.checkpoint import save
from ..latent.aggregate import AggregatePosterior
from ..latent.mixture import LatentMixture
from ..latent.predictive import prior_predictive, reconstruct
from ..latent.sampling import sample
from ..latent.sources import SOURCES
from ..likelihoods.base import get_likelihood
from ..train.distributed import Distributed, init_from_environment
from ..train.loop import fit
from ..train.settings import TrainSettings, masked_defaults
from ..vae.model import VAE


def run_demo(out: Path, *, epochs: int = 400, seed: int = 0, overwrite: bool = False) -> dict:
    """The embedded-digits demo: a 2-D latent space, Bernoulli likelihood, dynamic binarisation."""
    check_out(str(out))
    torch.set_num_threads(min(2, torch.get_num_threads()))
    dataset = data_module.load("digits", binarize="dynamic", seed=seed)
    torch.manual_seed(seed)
    vae = VAE(dataset.input_dim, 2, hidden_sizes=(256,), likelihood="bernoulli", image_shape=dataset.image_shape)
    settings = TrainSettings(epochs=epochs, batch_size=64, lr=3e-3, kl_warmup_epochs=20, patience=40, seed=seed)
    summary = train_and_report(
        vae,
        dataset,
        out,
        settings,
        resume=False,
        title="digits demo",
        binarize="dynamic",
        values="unit",
        overwrite=overwrite,
        more_epochs="run it again with a larger --epochs and --overwrite",
    )
    print(DEMO_NOTE)
    return summary


#: What the demo's pictures are for, printed after its files.
DEMO_NOTE = (
    "The latent space has 2 dimensions so that latent_map.png can draw it; 8x8 digits need more for sharp,\n"
    "recognisable samples (pyro-vae train --data digits --latent-dim 10 --out runs/digits10)."
)


def run_train(args) -> dict:
    device = parse_device(args.device)
    joined = init_from_environment(args.device)  # one of several processes under torchrun
    finished = False
    try:
        summary = _train(args, device)
        finished = True
        return summary
    finally:
        if joined:
            # Leave the group together, before the interpreter exits: rank 0 still writes the run
            # folder after training, and a rank that tore its connections down meanwhile (or at
            # exit) could abort inside the communication library. After a failure there is no
            # waiting: torchrun stops the other ranks.
            import torch.distributed as torch_dist

            if finished:
                torch_dist.barrier()
            torch_dist.destroy_process_group()


def _train(args, device) -> dict:
    check_out(args.out)
    settings = TrainSettings.from_arguments(args)  # refused here, before any data is read
    likelihood_kwargs = {**args.likelihood_kwargs, **({"size_factors": True} if args.size_factors else {})}
    get_likelihood(args.likelihood, **likelihood_kwargs)  # options that do not fit refused here too
    binarize = "none" if args.binarize == "auto" else args.binarize
    chosen = {
        "columns": args.columns,
        "label": args.label_column,
        "covariates": args.covariate_columns,
        "layer": args.layer,
    }
    if args.mask_missing:
        chosen["missing"] = True
        # fit's default for data with missing entries, which explicit settings would otherwise replace
        given = {flag.lstrip("-").replace("-", "_") for flag in getattr(args, "given_flags", set())}
        settings = settings.replace(**masked_defaults(given))
    dataset = data_module.load(args.data, binarize=binarize, values=args.values, seed=args.seed, **chosen)
    if args.binarize == "auto":
        binarize = auto_binarize(dataset, args.likelihood)
        if binarize != "none":
            dataset = data_module.load(args.data, binarize=binarize, values=args.values, seed=args.seed, **chosen)
    if dataset.columns is not None:
        dropped = dataset.columns["dropped_index"]
        print(
            f"Table columns: features {dataset.columns['columns'][:10]}"
            + ("..." if len(dataset.columns["columns"]) > 10 else "")
            + (f", label {dataset.columns['label']!r}" if dataset.columns["label"] is not None else "")
            + (f"; left out the row index (column {dropped!r} holding 0..N-1)" if dropped is not None else "")
            + "."
        )
    torch.manual_seed(args.seed)
    vae = VAE(
        dataset.input_dim,
        args.latent_dim,
        hidden_sizes=args.hidden,
        activation=args.activation,
        likelihood=args.likelihood,
        likelihood_kwargs=likelihood_kwargs,
        prior=args.prior,
        prior_kwargs=args.prior_kwargs,
        guide=args.guide,
        guide_kwargs=args.guide_kwargs,
        standardize=args.standardize,
        image_shape=dataset.image_shape,
        input_transform=None if args.input_transform == "auto" else args.input_transform,
        covariate_dim=0 if dataset.train.covariates is None else dataset.train.covariates.shape[1],
        missing=args.mask_missing,
    ).to(device)
    return train_and_report(
        vae,
        on_device(dataset, device),
        Path(args.out),
        settings,
        resume=args.resume,
        title=dataset.name,
        binarize=binarize,
        values=args.values,
        overwrite=args.overwrite,
    )


def auto_binarize(dataset, likelihood: str) -> str:
    """``--binarize auto``: ``"dynamic"`` where a Bernoulli likelihood meets values in [0, 1] that are
    not all 0 or 1 (grey images), else ``"none"``; the choice is printed and recorded in config.json."""
    x = dataset.train.x
    binary = bool(((x == 0) | (x == 1)).all())
    in_unit = bool(((x >= 0) & (x <= 1)).all())
    if likelihood != "bernoulli" or binary or not in_unit:
        return "none"
    print(
        "--binarize auto: the Bernoulli likelihood needs values 0 or 1 and these lie in [0, 1], so each "
        "epoch binarises them afresh (dynamic). Pass --binarize fixed or none, or another --likelihood "
        "(e.g. continuous_bernoulli), to choose otherwise."
    )
    return "dynamic"


def train_and_report(
    vae: VAE,
    dataset,
    out: Path,
    settings: TrainSettings,
    *,
    resume: bool,
    title: str,
    binarize: str,
    values: str,
    overwrite: bool,
    more_epochs: str = "resume with --resume and a larger --epochs",
) -> dict:
    """Train as ``args`` say and write the run folder: model, history, evaluation, figures, summary.
    ``more_epochs`` says how to train longer, for a run whose validation ELBO was still rising.

    Length: the steps of ``pyro-vae train`` in order under the run folder's lock: data, model, training,
    evaluation, figures, summary.
    """
    from ..diagnostics.plots import image_grid, latent_map, training_curve

    settings = settings.replace(progress=None if sys.stderr.isatty() else "summary")
    config = runs.describe(
        dataset, vae, binarize=binarize, values=values, seed=settings.seed, training=settings.config()
    )
    group = Distributed.current()  # under torchrun: rank 0 writes the run folder, every rank trains
    # The lock comes first: nothing in the folder is checked or removed while another training runs there.
    with runs.lock(out) if group.is_main else nullcontext():
        if group.is_main:
            runs.prepare(out, config, resume=resume, overwrite=overwrite, training_defaults=TrainSettings().config())
            print(
                f"Training on {dataset.name}: {len(dataset.train)} train / {len(dataset.val)} validation / "
                f"{len(dataset.test)} test points, latent dimension {vae.latent_dim}"
                + (f", on {group.world_size} processes." if group.active else ".")
            )
        group.barrier()
        with warnings.catch_warnings():
            # Convergence advice goes into the summary below, as one sentence.
            warnings.filterwarnings("ignore", message="The ELBO was still rising", category=RuntimeWarning)
            history = fit(
                vae,
                dataset.train,
                val=dataset.val,
                settings=settings,
                checkpoint=out / "checkpoint.pt",
                resume=resume,
                history_path=out / "history.csv",
                before_training=lambda: runs.write_config(out, config),
            )
        if not group.is_main:
            return {}
        save(vae, out / "model.pt")
        # The test split brings its covariates and, for a table with missing entries, its mask.
        test_elbo = mean_elbo(vae, dataset.test, seed=settings.seed)
        files = {
            "model": out / "model.pt",
            "checkpoint": out / "checkpoint.pt",
            "config": out / "config.json",
            "history": out / "history.csv",
            "training curve": training_curve(history, out / "training_curve.png"),
        }
        if dataset.is_image:
            agg = AggregatePosterior.from_data(vae, runs.training_codes_input(dataset))
            files.update(
                {
                    "prior samples": image_grid(
                        prior_predictive(vae, 100, seed=1).mean,
                        dataset.image_shape,
                        out / "prior_samples.png",
                        title="Likelihood means E[x|z], z ~ prior p(z)",
                        value_max=vae.input_scale,
                    ),
                    "aggregate-posterior samples": image_grid(
                        _decode(vae, agg.sample(100, seed=1)),
                        dataset.image_shape,
                        out / "aggregate_samples.png",
                        title="Likelihood means E[x|z], z ~ aggregate posterior q(z)",
                        value_max=vae.input_scale,
                    ),
                    "reconstructions": _reconstruction_grid(vae, dataset, out / "reconstructions.png"),
                }
            )
        files["latent map"] = latent_map(
            vae,
            dataset.test.x,
            dataset.test.labels.cpu(),
            out / "latent_map.png",
            title=f"{title}: encoded test points over the prior density",
            y=dataset.test.covariates,
            mask=dataset.test.mask,
        )
        converged = history.stopped_early or not history.still_rising
        summary = {
            "test_elbo_per_point": test_elbo,
            "best_val_elbo": max(history.column("val_elbo")),
            "epochs_run": len(history.rows),
            "best_epoch": history.best_epoch,
            "stopped_early": history.stopped_early,
            "converged": converged,
            "files": {k: str(v) for k, v in files.items()},
        }
        if group.active:
            summary.update(processes=group.world_size, parameter_difference_across_ranks=history.rank_difference)
        write_json(out / "summary.json", summary)
        runs.record_outputs(out, [*files.values(), out / "summary.json"])
    print(
        f"Test ELBO: {test_elbo:.2f} nats per point (best validation epoch {history.best_epoch} "
        f"of {len(history.rows)})." + ("" if converged else f" The validation ELBO was still rising: {more_epochs}.")
    )
    for name, path in files.items():
        print(f"  {name:28s} {path}")
    return summary


def run_sample(args) -> Path:
    from ..diagnostics.plots import image_grid

    run = Path(args.run)
    loaded = runs.load_run(run)
    vae, dataset = loaded.vae, loaded.dataset
    device = parse_device(args.device)
    vae = vae.to(device)
    if args.label is not None and args.source != "subset":
        raise ValueError("--label selects a subset; pass --source subset.")
    if args.source == "mixture" and vae.latent_mixture is None:
        print(
            f"This model has no fitted mixture: fitting K={args.components} components to its training codes "
            "for this command (not saved)."
        )
        vae.latent_mixture = LatentMixture.fit(
            vae, runs.training_codes_input(dataset).to(device), args.components, seed=args.seed
        )
    train = replace(dataset.train, x=runs.training_codes_input(dataset), dynamic_binarization=False)
    from_data = args.source in ("aggregate", "subset")
    # With covariate columns, the training rows' covariates go with their codes (aggregate, subset),
    # and codes from the prior or a mixture are decoded under them in turn.
    covariates = train.covariates_for() or {}
    drawn = sample(
        vae,
        args.num,
        source=args.source,
        x=train if from_data else None,
        covariates=covariates if from_data else None,
        label=args.label,
        seed=args.seed,
        **({} if from_data else {k: v.to(device) for k, v in covariates.items()}),
    )
    stem = f"samples-{args.source}{'' if args.label is None else args.label}"
    figure = ".png" if dataset.is_image else ".csv"
    path = Path(args.out) if args.out else run / f"{stem}{figure}"
    what = args.source + ("" if args.label is None else f" of label {args.label}")
    if drawn.mean is None:
        raise ValueError("This model's likelihood has no mean to write; draw samples with pyro_vae.sample instead.")
    means = drawn.mean.detach().cpu()
    arrays = path.with_suffix(".npy")  # for scripts, images and tables alike: (num, D) float32
    # Into the run folder: under its lock (no training replaces the run meanwhile), listed before written.
    with runs.lock(run, "sampling") if runs.inside(run, path) else nullcontext():
        runs.record_outputs(run, [path, arrays])
        if dataset.is_image:
            image_grid(
                means, vae.image_shape, path, title=f"likelihood means, z from the {what}", value_max=vae.input_scale
            )
        else:  # a table: one row per draw, the likelihood means E[x|z]
            atomic_write(path, lambda handle: np.savetxt(handle, means.numpy(), delimiter=",", fmt="%.8g"))
        atomic_write(arrays, lambda handle: np.save(handle, means.numpy(), allow_pickle=False))
    print(f"wrote {path} and {arrays}")
    return path


# ---------------------------------------------------------------------- helpers
def parse_device(name: str) -> torch.device:
    """``--device``: ``cpu`` or a CUDA device that exists here, or ``ValueError`` saying which do."""
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ValueError(f"--device {name!r} is not a device name; use cpu, cuda or cuda:N.") from None
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"--device {name}: pyro_vae runs on cpu or cuda devices only; use --device cpu.")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {name}: no CUDA device is available here; use --device cpu.")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s).")
    return device


def check_out(out: str) -> Path:
    """``--out`` of a command that writes a folder: not empty, not an existing file, and creatable or
    writable, checked before any work (and without creating anything)."""
    if not str(out).strip():
        raise ValueError("--out is empty; name the folder to write, e.g. --out runs/first.")
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise ValueError(f"--out {out} is an existing file, not a folder; choose another --out.")
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"--out {out}: cannot write in {existing} (read-only or not permitted); choose another --out.")
    return path


def on_device(dataset, device: torch.device):
    if device.type == "cpu":
        return dataset
    moved = {
        part: replace(getattr(dataset, part), x=getattr(dataset, part).x.to(device))
        for part in ("train", "val", "test")
    }
    return replace(dataset, **moved)


@torch.no_grad()
def _decode(vae, z):
    return vae.decode_mean(z)


def _reconstruction_grid(vae, dataset, path):
    from ..diagnostics.plots import image_grid

    originals = dataset.test.x[:10]
    rows = torch.cat([originals, reconstruct(vae, originals)])
    return image_grid(
        rows,
        dataset.image_shape,
        path,
        title="Test images (top) and reconstructions E[x|z=E[z|x]]",
        row_labels=["data", "recon."],
        value_max=vae.input_scale,
    )


SOURCE_NAMES = tuple(SOURCES)

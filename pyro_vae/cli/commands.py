"""The commands of ``pyro-vae``: demo, train, sample, evaluate and compare (``report`` in report.py)."""

from __future__ import annotations

import math
from contextlib import nullcontext

import sys
from dataclasses import replace
from pathlib import Path

import torch

from ..data import loading as data_module
from .._util.files import write_json
from ..io.checkpoint import save
from ..latent.aggregate import SOURCES, AggregatePosterior
from ..latent.mixture import LatentMixture
from ..vae.model import VAE
from ..latent.predictive import prior_predictive, reconstruct
from ..latent.sampling import sample
from ..train.distributed import Distributed, init_from_environment
from ..train.loop import fit, mean_elbo
from ..train.settings import TrainSettings
from ..io import runs


def run_demo(out: Path, *, epochs: int = 400, seed: int = 0, overwrite: bool = False) -> dict:
    """The embedded-digits demo: a 2-D latent space, Bernoulli likelihood, dynamic binarisation."""
    torch.set_num_threads(min(2, torch.get_num_threads()))
    dataset = data_module.load("digits", binarize="dynamic", seed=seed)
    torch.manual_seed(seed)
    vae = VAE(dataset.input_dim, 2, hidden_sizes=(256,), likelihood="bernoulli", image_shape=dataset.image_shape)
    settings = TrainSettings(epochs=epochs, batch_size=64, lr=3e-3, kl_warmup_epochs=20, patience=40, seed=seed)
    return train_and_report(vae, dataset, out, settings, resume=False, title="digits demo", binarize="dynamic", values="unit",
                            overwrite=overwrite)  # fmt: skip


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
    dataset = data_module.load(args.data, binarize=args.binarize, values=args.values, seed=args.seed)
    torch.manual_seed(args.seed)
    vae = VAE(dataset.input_dim, args.latent_dim, hidden_sizes=args.hidden, activation=args.activation,
              likelihood=args.likelihood,
              likelihood_kwargs=args.likelihood_kwargs, prior=args.prior, prior_kwargs=args.prior_kwargs,
              guide=args.guide, guide_kwargs=args.guide_kwargs, standardize=args.standardize,
              image_shape=dataset.image_shape).to(device)  # fmt: skip
    settings = TrainSettings.from_arguments(args)
    return train_and_report(vae, on_device(dataset, device), Path(args.out), settings, resume=args.resume, title=dataset.name,
                            binarize=args.binarize, values=args.values, overwrite=args.overwrite)  # fmt: skip


def train_and_report(vae: VAE, dataset, out: Path, settings: TrainSettings, *, resume: bool, title: str, binarize: str,
                     values: str, overwrite: bool) -> dict:  # fmt: skip
    from ..diagnostics.plots import image_grid, latent_map, training_curve

    settings = settings.replace(progress=None if sys.stderr.isatty() else "lines")
    config = runs.describe(dataset, vae, binarize=binarize, values=values, seed=settings.seed, training=settings.config())
    group = Distributed.current()  # under torchrun: rank 0 writes the run folder, every rank trains
    if group.is_main:
        runs.prepare(out, config, resume=resume, overwrite=overwrite, training_defaults=TrainSettings().config())
        print(f"Training on {dataset.name}: {len(dataset.train)} train / {len(dataset.val)} validation / "
              f"{len(dataset.test)} test points, latent dimension {vae.latent_dim}"
              + (f", on {group.world_size} processes." if group.active else "."))  # fmt: skip
    group.barrier()
    with runs.lock(out) if group.is_main else nullcontext():
        history = fit(vae, dataset.train, val=dataset.val, settings=settings, checkpoint=out / "checkpoint.pt",
                      resume=resume, history_path=out / "history.csv",
                      before_training=lambda: runs.write_config(out, config))  # fmt: skip
        if not group.is_main:
            return {}
        save(vae, out / "model.pt")
        test_elbo = mean_elbo(vae, dataset.test.x, seed=settings.seed)
        files = {"model": out / "model.pt", "checkpoint": out / "checkpoint.pt", "config": out / "config.json",
                 "history": out / "history.csv", "training curve": training_curve(history, out / "training_curve.png")}  # fmt: skip
        if dataset.is_image:
            agg = AggregatePosterior.from_data(vae, runs.training_codes_input(dataset))
            files.update({
                "prior samples": image_grid(prior_predictive(vae, 100, seed=1).mean, dataset.image_shape,
                                            out / "prior_samples.png", title="Likelihood means E[x|z], z ~ prior p(z)",
                                            value_max=vae.input_scale),
                "aggregate-posterior samples": image_grid(_decode(vae, agg.sample(100, seed=1)), dataset.image_shape,
                                                          out / "aggregate_samples.png",
                                                          title="Likelihood means E[x|z], z ~ aggregate posterior q(z)",
                                                          value_max=vae.input_scale),
                "reconstructions": _reconstruction_grid(vae, dataset, out / "reconstructions.png"),
            })  # fmt: skip
        files["latent map"] = latent_map(vae, dataset.test.x, dataset.test.labels.cpu(), out / "latent_map.png",
                                         title=f"{title}: encoded test points over the prior density")  # fmt: skip
        summary = {
            "test_elbo_per_point": test_elbo,
            "test_elbo_per_image": test_elbo,
            "best_val_elbo": max(history.column("val_elbo")),
            "epochs_run": len(history.rows),
            "best_epoch": history.best_epoch,
            "stopped_early": history.stopped_early,
            "files": {k: str(v) for k, v in files.items()},
        }
        if group.active:
            summary.update(processes=group.world_size, parameter_difference_across_ranks=history.rank_difference)
        write_json(out / "summary.json", summary)
    print(f"Test ELBO: {test_elbo:.2f} nats per point (best validation epoch {history.best_epoch} "
          f"of {len(history.rows)}).")  # fmt: skip
    for name, path in files.items():
        print(f"  {name:28s} {path}")
    return summary


def run_sample(args) -> Path:
    from ..diagnostics.plots import image_grid

    run = Path(args.run)
    vae, dataset, _ = runs.load_run(run)
    device = parse_device(args.device)
    vae = vae.to(device)
    if not dataset.is_image:
        raise ValueError("This run's data are not images, so its samples cannot be drawn as pictures.")
    if args.label is not None and args.source != "subset":
        raise ValueError("--label selects a subset; pass --source subset.")
    if args.source == "mixture" and vae.latent_mixture is None:
        print(f"This model has no fitted mixture: fitting K={args.components} components to its training codes "
              "for this command (not saved).")  # fmt: skip
        vae.latent_mixture = LatentMixture.fit(vae, runs.training_codes_input(dataset).to(device), args.components,
                                               seed=args.seed)  # fmt: skip
    train = replace(dataset.train, x=runs.training_codes_input(dataset), dynamic_binarization=False)
    drawn = sample(vae, args.num, source=args.source, x=train if args.source in ("aggregate", "subset") else None,
                   label=args.label, seed=args.seed)  # fmt: skip
    path = Path(args.out) if args.out else run / f"samples-{args.source}{'' if args.label is None else args.label}.png"
    what = args.source + ("" if args.label is None else f" of label {args.label}")
    image_grid(drawn.mean, vae.image_shape, path, title=f"likelihood means, z from the {what}", value_max=vae.input_scale)
    print(f"wrote {path}")
    return path


def held_out(run: Path, split: str, max_points: int | None):
    """The run's model, the held-out split it was trained against (binarised as in training), and its config."""
    vae, dataset, config = runs.load_run(run)
    x = getattr(dataset, split).x
    if max_points is not None:
        if max_points < 1:
            raise ValueError(f"--max-points must be positive, got {max_points}.")
        x = x[:max_points]
    return vae, x, config, dataset


def run_evaluate(args) -> dict:
    from ..diagnostics.posterior import active_units, elbo_surgery, pareto_k_report
    from ..evaluate.estimate import log_likelihood

    run = Path(args.run)
    vae, x, config, dataset = held_out(run, args.split, args.max_points)
    device = parse_device(args.device)
    vae, x = vae.to(device), x.to(device)
    print(f"Evaluating {run} on {len(x)} {args.split} points of {config['data']} "
          f"with {args.num_particles} {'AIS chains' if args.method == 'ais' else 'particles'} per point.")  # fmt: skip
    result = log_likelihood(vae, x, num_particles=args.num_particles, seed=args.seed, max_memory_mb=args.max_memory_mb,
                            **estimator_options(args))  # fmt: skip
    surgery = elbo_surgery(vae, x, seed=args.seed)
    units = active_units(vae, x)
    pareto = pareto_k_report(result) if result.pareto_k is not None else None
    metrics = {
        "run": str(run),
        "data": config["data"],
        "data_source": config.get("data_source"),
        "split": args.split,
        **result.summary(),
        "mutual_information": surgery.mutual_information,
        "mutual_information_se": surgery.mutual_information_se,
        "marginal_kl": surgery.marginal_kl,
        "marginal_kl_se": surgery.marginal_kl_se,
        "average_kl": surgery.average_kl,
        "average_kl_se": surgery.average_kl_se,
        "max_mutual_information": surgery.max_mutual_information,
        "active_units": units.count,
        "latent_dim": vae.latent_dim,
        "pareto_k": pareto.summary() if pareto is not None else None,
        "warnings": _training_warnings(run),
    }
    if result.pareto_k is not None and result.share_k_above(0.7) > 0.1:
        slack = result.slack / len(x)
        amount = "an unbounded amount (Pareto k >= 1 at some points)" if math.isinf(slack) else f"{slack:.2f} nats per point"
        metrics["warnings"].append(
            f"Pareto k > 0.7 for {100 * result.share_k_above(0.7):.0f}% of points: the NLL ({result.estimator}) is an "
            f"upper bound that may be {amount} too high (its slack). Rerun with --method ais, or more "
            "--num-particles, before comparing models on it."
        )  # fmt: skip
    if not result.is_discrete:  # closed-form baselines of real-valued data, in the same units
        from ..evaluate.baselines import diagonal_gaussian, losing_to, ppca

        train = dataset.train.x.cpu()
        found = {"diagonal Gaussian": diagonal_gaussian(train, x.cpu())}
        if vae.latent_dim < vae.input_dim:
            found[f"PPCA (L={vae.latent_dim})"] = ppca(train, x.cpu(), vae.latent_dim)
        metrics["baselines"] = {name: {"nll": -b.mean, "nll_se": b.mean_se} for name, b in found.items()}
        metrics["warnings"] += losing_to(result, {f"baseline: {k}": v for k, v in found.items()})
    out = Path(args.out) if args.out else run / "evaluation.json"
    write_json(out, metrics)
    print(f"  NLL                        {metrics['nll']:.2f} ± {metrics['nll_se']:.2f} nats per point "
          f"(Monte Carlo error {metrics['nll_mc_se']:.3f})")
    print(f"  ELBO                       {metrics['elbo']:.2f} ± {metrics['elbo_se']:.2f}")
    print(f"  mutual information I(x;z)  {surgery.mutual_information:.3f} ± {surgery.mutual_information_se:.3f} "
          f"(at most log N = {surgery.max_mutual_information:.2f})")
    print(f"  KL(q(z) || p(z))           {surgery.marginal_kl:.3f} ± {surgery.marginal_kl_se:.3f}")
    print(f"  active units               {units.count} of {vae.latent_dim}")
    print(f"  Pareto k > 0.7             {100 * pareto.share_above(0.7):.1f}% of points")
    for name, baseline in metrics.get("baselines", {}).items():
        print(f"  baseline: {name:17s} NLL {baseline['nll']:.2f} ± {baseline['nll_se']:.2f}")
    for text in metrics["warnings"]:
        print(f"warning: {text}", file=sys.stderr)
    print(f"wrote {out}")
    return metrics


def _training_warnings(run: Path) -> list[str]:
    """What the run's training left to say: an ELBO still rising at its last epoch."""
    import csv

    path = run / "history.csv"
    if not path.is_file():
        return []
    from ..train.state import History

    try:
        rows = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(path.read_text().splitlines())]
    except (ValueError, TypeError):
        return [f"{path} is unreadable; its training could not be checked."]
    history = History(rows=rows)
    if history.still_rising:
        return [f"The ELBO was still rising at the last epoch ({len(rows)}): the model has not converged; "
                "resume with more --epochs."]
    return []


def run_compare(args):
    import pandas as pd

    from ..evaluate.ranking import compare, plot_comparison

    run_paths = [Path(r) for r in args.runs]
    if len(run_paths) < 2:
        raise ValueError("compare needs at least two run folders.")
    names = _run_names(run_paths)
    device = parse_device(args.device)
    results, data_keys = {}, {}
    for name, run in zip(names, run_paths):
        vae, x, config, dataset = held_out(run, args.split, args.max_points)
        data_keys[name] = (config.get("data_source") or config["data"], config.get("data_fingerprint"),
                           config["binarize"], config.get("values", "unit"), config["seed"])  # fmt: skip
        results[name] = (vae.to(device), x.to(device))
    if len(set(data_keys.values())) != 1:
        raise ValueError(f"The runs were trained on different data (source, fingerprint, binarize, values, seed): "
                         f"{data_keys}; held-out log p(x) is comparable only on the same points.")  # fmt: skip
    x = next(iter(results.values()))[1]
    densities = not any(vae.likelihood.is_discrete for vae, _ in results.values())
    from ..evaluate.estimate import log_likelihood

    models = {name: vae for name, (vae, _) in results.items()}
    if args.method == "ais":  # compare ranks results computed here with the chosen estimator
        models = {name: log_likelihood(vae, x, num_particles=args.num_particles, seed=args.seed,
                                       max_memory_mb=args.max_memory_mb, **estimator_options(args))
                  for name, vae in models.items()}  # fmt: skip
    table = compare(models, x, num_particles=args.num_particles, seed=args.seed, max_memory_mb=args.max_memory_mb,
                    baselines_from=dataset.train.x.to(x.device) if densities else None,
                    baseline_latent_dim=next(iter(results.values()))[0].latent_dim)  # fmt: skip
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print(table.to_string(float_format=lambda v: f"{v:.2f}"))
    path = plot_comparison(table, args.plot, title=f"Held-out {args.split} log p(x), {config['data']}")
    print(f"wrote {path}")
    for name, texts in table.attrs.get("warnings", {}).items():
        for text in texts:
            print(f"warning: {name}: {text}", file=sys.stderr)
    for name in table.attrs.get("unresolved", []):
        print(f"warning: {name}: its difference to the best model is within the estimators' slack (column "
              "'slack'); rerun with --method ais or more --num-particles before reading the ranking.",
              file=sys.stderr)  # fmt: skip
    if args.csv:
        table.to_csv(args.csv)
        print(f"wrote {args.csv}")
    return table


# ---------------------------------------------------------------------- helpers
def estimator_options(args) -> dict:
    """``log_likelihood`` keyword arguments of ``--method`` and ``--ais-steps``."""
    if args.method == "ais":
        return {"method": "ais", "ais_steps": args.ais_steps}
    return {}


def parse_device(name: str) -> torch.device:
    """``--device``: a torch device that exists here, or ``ValueError`` saying which do."""
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"--device {name!r} is not a device name; use cpu, cuda or cuda:N.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: no CUDA device is available here; use --device cpu.")
    return device


def on_device(dataset, device: torch.device):
    if device.type == "cpu":
        return dataset
    moved = {part: replace(getattr(dataset, part), x=getattr(dataset, part).x.to(device)) for part in ("train", "val", "test")}
    return replace(dataset, **moved)


def _run_names(run_paths: list[Path]) -> list[str]:
    names = [run.resolve().name for run in run_paths]
    if len(set(names)) < len(names):
        names = [str(run) for run in run_paths]
    return names


@torch.no_grad()
def _decode(vae, z):
    return vae.decode_mean(z)


def _reconstruction_grid(vae, dataset, path):
    from ..diagnostics.plots import image_grid

    originals = dataset.test.x[:10]
    rows = torch.cat([originals, reconstruct(vae, originals)])
    return image_grid(rows, dataset.image_shape, path, title="Test images (top) and reconstructions E[x|z=E[z|x]]",
                      row_labels=["data", "recon."], value_max=vae.input_scale)  # fmt: skip


SOURCE_NAMES = tuple(SOURCES)

"""Command line: ``pyro-vae demo | train | sample | evaluate | compare``.

    pyro-vae demo                          # train on the embedded digits, write figures to runs/demo
    pyro-vae train --data fashion-mnist --binarize dynamic --latent-dim 50 --out runs/fmnist
    pyro-vae sample runs/fmnist --source aggregate --num 64
    pyro-vae evaluate runs/fmnist          # NLL, ELBO surgery, active units, Pareto k -> JSON
    pyro-vae compare runs/a runs/b --plot comparison.png
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import data as data_module
from ._io import write_json
from .checkpoint import load, save
from .latent import AggregatePosterior
from .guides import GUIDES
from .likelihoods import LIKELIHOODS
from .model import VAE
from .predictive import prior_predictive, reconstruct
from .priors import PRIORS
from .train import fit, mean_elbo

#: The files of a run folder written by ``pyro-vae train`` or ``pyro-vae demo``.
RUN_FILES = ("config.json", "model.pt", "checkpoint.pt", "history.csv", "summary.json")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pyro-vae", description="Variational autoencoders as Pyro programs.")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="train on the embedded digits and write a run folder with figures")
    demo.add_argument("--out", default="runs/demo")
    demo.add_argument("--epochs", type=int, default=400)
    demo.add_argument("--seed", type=int, default=0)

    train = commands.add_parser("train", help="train a VAE and write a run folder")
    train.add_argument("--data", default="digits", help="'digits', 'fashion-mnist', 'mnist' or an IDX directory")
    train.add_argument("--binarize", default="none", choices=data_module.BINARIZE_MODES)
    train.add_argument("--values", default="unit", choices=data_module.VALUE_MODES,
                       help="pixels scaled to [0, 1] or as integer levels (for count and level likelihoods)")
    train.add_argument("--likelihood", default="bernoulli", choices=sorted(LIKELIHOODS))
    train.add_argument("--likelihood-kwargs", type=_json_object, default={},
                       help='likelihood options as a JSON object, e.g. \'{"num_levels": 256}\'')
    train.add_argument("--prior", default="normal", choices=sorted(PRIORS))
    train.add_argument("--prior-kwargs", type=_json_object, default={},
                       help='prior options as a JSON object, e.g. \'{"num_components": 50}\'')
    train.add_argument("--guide", default="normal", choices=sorted(GUIDES),
                       help="family of q(z|x): a diagonal Gaussian, or an inverse autoregressive flow on top of it")
    train.add_argument("--guide-kwargs", type=_json_object, default={},
                       help='guide options as a JSON object, e.g. \'{"num_flows": 2}\'')
    train.add_argument("--latent-dim", type=int, default=2)
    train.add_argument("--hidden", type=int, nargs="*", default=[400])
    train.add_argument("--epochs", type=int, default=50)
    train.add_argument("--batch-size", type=int, default=128)
    train.add_argument("--lr", type=float, default=1e-3)
    train.add_argument("--kl-warmup", type=float, default=0.0, help="epochs of linear KL warm-up")
    train.add_argument("--patience", type=int, default=None)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--out", required=True)
    train.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")

    sample = commands.add_parser("sample", help="draw images from a trained run")
    sample.add_argument("run", help="a run folder written by train or demo")
    sample.add_argument("--source", choices=("prior", "aggregate"), default="prior")
    sample.add_argument("--num", type=int, default=64)
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--out", default=None, help="PNG path (default RUN/samples-SOURCE.png)")

    evaluate = commands.add_parser("evaluate", help="held-out log-likelihood and posterior diagnostics of a run")
    evaluate.add_argument("run", help="a run folder written by train or demo")
    _evaluation_options(evaluate)
    evaluate.add_argument("--out", default=None, help="JSON path (default RUN/evaluation.json)")

    comparison = commands.add_parser("compare", help="rank runs by held-out log p(x), in the layout of arviz.compare")
    comparison.add_argument("runs", nargs="+", help="two or more run folders trained on the same data")
    _evaluation_options(comparison)
    comparison.add_argument("--plot", default="comparison.png", help="PNG path of the comparison plot")
    comparison.add_argument("--csv", default=None, help="also write the table as CSV")

    args = parser.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")  # the command line draws files, never windows
    try:
        if args.command == "demo":
            run_demo(Path(args.out), epochs=args.epochs, seed=args.seed)
        elif args.command == "train":
            run_train(args)
        elif args.command == "sample":
            run_sample(args)
        elif args.command == "evaluate":
            run_evaluate(args)
        else:
            run_compare(args)
    except (ValueError, FileNotFoundError, TypeError) as error:
        print(f"pyro-vae {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0


def load_run(run: str | os.PathLike, **networks: nn.Module) -> tuple[VAE, Any, dict[str, Any]]:
    """``(vae, dataset, config)`` of a run folder written by ``pyro-vae train`` or ``pyro-vae demo``.

    The data set is loaded with the run's own settings (name, binarisation, values, seed), so its
    validation and test splits are the ones the model was checked against.
    """
    run = Path(run)
    if not (run / "config.json").is_file():
        raise FileNotFoundError(f"{run} is not a run folder: it has no config.json (write one with pyro-vae train).")
    config = json.loads((run / "config.json").read_text())
    vae = load(run / "model.pt", **networks)
    dataset = data_module.load(config["data"], binarize=config["binarize"], values=config.get("values", "unit"),
                        seed=config["seed"])  # fmt: skip
    return vae, dataset, config



def run_demo(out: Path, *, epochs: int = 400, seed: int = 0) -> dict:
    """The embedded-digits demo: a 2-D latent space, Bernoulli likelihood, dynamic binarisation."""
    torch.set_num_threads(min(2, torch.get_num_threads()))
    dataset = data_module.load("digits", binarize="dynamic", seed=seed)
    torch.manual_seed(seed)
    vae = VAE(dataset.input_dim, 2, hidden_sizes=(256,), likelihood="bernoulli", image_shape=dataset.image_shape)
    settings = dict(epochs=epochs, batch_size=64, lr=3e-3, kl_warmup_epochs=20, patience=40, seed=seed)
    return _train_and_report(vae, dataset, out, settings, title="digits demo", binarize="dynamic")


def run_train(args) -> dict:
    dataset = data_module.load(args.data, binarize=args.binarize, values=args.values, seed=args.seed)
    torch.manual_seed(args.seed)
    vae = VAE(dataset.input_dim, args.latent_dim, hidden_sizes=args.hidden, likelihood=args.likelihood,
              likelihood_kwargs=args.likelihood_kwargs, prior=args.prior, prior_kwargs=args.prior_kwargs,
              guide=args.guide, guide_kwargs=args.guide_kwargs, image_shape=dataset.image_shape)  # fmt: skip
    settings = dict(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, kl_warmup_epochs=args.kl_warmup,
                    patience=args.patience, seed=args.seed, resume=args.resume)  # fmt: skip
    return _train_and_report(vae, dataset, Path(args.out), settings, title=dataset.name, binarize=args.binarize,
                             values=args.values)  # fmt: skip


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"not JSON ({error}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object such as '{{\"num_levels\": 256}}', got {text!r}")
    return value


def run_sample(args) -> Path:
    run = Path(args.run)
    vae = load(run / "model.pt")
    if vae.image_shape is None:
        raise ValueError("This model has no image_shape, so its samples cannot be drawn as pictures.")
    if args.source == "prior":
        means = prior_predictive(vae, args.num, seed=args.seed).mean
    else:
        vae, dataset, _ = load_run(run)
        agg = AggregatePosterior.from_data(vae, _training_codes_input(dataset))
        with torch.no_grad():
            means = vae.decode_mean(agg.sample(args.num, seed=args.seed))
    from .plots import image_grid

    path = Path(args.out) if args.out else run / f"samples-{args.source}.png"
    image_grid(means, vae.image_shape, path, title=f"likelihood means, z from the {args.source}",
               value_max=vae.input_scale)  # fmt: skip
    print(f"wrote {path}")
    return path


def _evaluation_options(parser) -> None:
    parser.add_argument("--split", choices=("test", "val"), default="test", help="held-out split to evaluate on")
    parser.add_argument("--num-particles", type=int, default=1000, help="importance samples per data point")
    parser.add_argument("--max-points", type=int, default=None, help="evaluate only the first N points of the split")
    parser.add_argument("--max-memory-mb", type=float, default=64.0, help="rough bound on one chunk's activations")
    parser.add_argument("--seed", type=int, default=0)


def _held_out(run: Path, split: str, max_points: int | None) -> tuple[VAE, torch.Tensor, dict]:
    """The run's model and the held-out split it was trained against, binarised as in training."""
    vae, dataset, config = load_run(run)
    x = getattr(dataset, split).x
    if max_points is not None:
        if max_points < 1:
            raise ValueError(f"--max-points must be positive, got {max_points}.")
        x = x[:max_points]
    return vae, x, config


def run_evaluate(args) -> dict:
    from .diagnostics import active_units, elbo_surgery, pareto_k_report
    from .evaluate import log_likelihood

    run = Path(args.run)
    vae, x, config = _held_out(run, args.split, args.max_points)
    print(f"Evaluating {run} on {len(x)} {args.split} points of {config['data']} "
          f"with {args.num_particles} particles per point.")  # fmt: skip
    result = log_likelihood(vae, x, num_particles=args.num_particles, seed=args.seed, max_memory_mb=args.max_memory_mb)
    surgery = elbo_surgery(vae, x, seed=args.seed)
    units = active_units(vae, x)
    pareto = pareto_k_report(result)
    metrics = {
        "run": str(run),
        "data": config["data"],
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
        "pareto_k": pareto.summary(),
    }
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
    print(f"wrote {out}")
    return metrics


def run_compare(args):
    from .comparison import compare, plot_comparison

    runs = [Path(r) for r in args.runs]
    if len(runs) < 2:
        raise ValueError("compare needs at least two run folders.")
    names = _run_names(runs)
    results, data_keys = {}, {}
    for name, run in zip(names, runs):
        vae, x, config = _held_out(run, args.split, args.max_points)
        data_keys[name] = (config["data"], config["binarize"], config.get("values", "unit"), config["seed"])
        results[name] = (vae, x)
    if len(set(data_keys.values())) != 1:
        raise ValueError(f"The runs were trained on different data (data, binarize, values, seed): {data_keys}; "
                         "held-out log p(x) is comparable only on the same points.")  # fmt: skip
    x = next(iter(results.values()))[1]
    table = compare({name: vae for name, (vae, _) in results.items()}, x, num_particles=args.num_particles,
                    seed=args.seed, max_memory_mb=args.max_memory_mb)  # fmt: skip
    with _wide_tables():
        print(table.to_string(float_format=lambda v: f"{v:.2f}"))
    path = plot_comparison(table, args.plot, title=f"Held-out {args.split} log p(x), {next(iter(data_keys.values()))[0]}")
    print(f"wrote {path}")
    if args.csv:
        table.to_csv(args.csv)
        print(f"wrote {args.csv}")
    return table


def _run_names(runs: list[Path]) -> list[str]:
    names = [run.resolve().name for run in runs]
    if len(set(names)) < len(names):
        names = [str(run) for run in runs]
    return names


def _wide_tables():
    import pandas as pd

    return pd.option_context("display.width", 160, "display.max_columns", 20)


def _train_and_report(vae: VAE, dataset, out: Path, settings: dict, *, title: str, binarize: str,
                      values: str = "unit") -> dict:  # fmt: skip
    from .plots import image_grid, latent_map, training_curve

    out.mkdir(parents=True, exist_ok=True)
    config = {"data": dataset.name, "binarize": binarize, "values": values, "seed": settings["seed"],
              "model": vae.config(),
              "training": {k: v for k, v in settings.items() if k != "resume"}}  # fmt: skip
    write_json(out / "config.json", config)
    print(f"Training on {dataset.name}: {len(dataset.train)} train / {len(dataset.val)} validation / "
          f"{len(dataset.test)} test images, latent dimension {vae.latent_dim}.")  # fmt: skip
    history = fit(vae, dataset.train, val=dataset.val, checkpoint=out / "checkpoint.pt",
                  history_path=out / "history.csv", **settings)  # fmt: skip
    save(vae, out / "model.pt")

    test_x = dataset.test.x
    test_elbo = mean_elbo(vae, test_x, seed=settings["seed"])
    agg = AggregatePosterior.from_data(vae, _training_codes_input(dataset))
    files = {
        "model": out / "model.pt",
        "checkpoint": out / "checkpoint.pt",
        "config": out / "config.json",
        "history": out / "history.csv",
        "training curve": training_curve(history, out / "training_curve.png"),
        "prior samples": image_grid(prior_predictive(vae, 100, seed=1).mean, dataset.image_shape,
                                    out / "prior_samples.png", title="Likelihood means E[x|z], z ~ prior p(z)",
                                    value_max=vae.input_scale),
        "aggregate-posterior samples": image_grid(_decode(vae, agg.sample(100, seed=1)), dataset.image_shape,
                                                  out / "aggregate_samples.png",
                                                  title="Likelihood means E[x|z], z ~ aggregate posterior q(z)",
                                                  value_max=vae.input_scale),
        "reconstructions": _reconstruction_grid(vae, dataset, out / "reconstructions.png"),
        "latent map": latent_map(vae, test_x, dataset.test.labels, out / "latent_map.png",
                                 title=f"{title}: encoded test points over the prior density"),
    }  # fmt: skip
    summary = {
        "test_elbo_per_image": test_elbo,
        "best_val_elbo": max(history.column("val_elbo")),
        "epochs_run": len(history.rows),
        "best_epoch": history.best_epoch,
        "stopped_early": history.stopped_early,
        "files": {k: str(v) for k, v in files.items()},
    }
    write_json(out / "summary.json", summary)
    print(f"Test ELBO: {test_elbo:.2f} nats per image (best validation epoch {history.best_epoch} "
          f"of {len(history.rows)}).")  # fmt: skip
    for name, path in files.items():
        print(f"  {name:28s} {path}")
    return summary


@torch.no_grad()
def _decode(vae, z):
    return vae.decode_mean(z)


def _reconstruction_grid(vae, dataset, path):
    from .plots import image_grid

    originals = dataset.test.x[:10]
    rows = torch.cat([originals, reconstruct(vae, originals)])
    return image_grid(rows, dataset.image_shape, path, title="Test images (top) and reconstructions E[x|z=E[z|x]]",
                      row_labels=["data", "recon."], value_max=vae.input_scale)  # fmt: skip


def _training_codes_input(dataset) -> torch.Tensor:
    """Training images as the model saw them: one fixed binarisation under dynamic binarisation."""
    return dataset.train.binarized(0) if dataset.train.dynamic_binarization else dataset.train.x


if __name__ == "__main__":
    sys.exit(main())

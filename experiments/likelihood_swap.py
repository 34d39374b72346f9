"""Swap the likelihood, keep everything else: which observation model fits real data best?

Two data sets, each with one set of networks and one training budget for every likelihood:

* the embedded digits as integer counts 0..16 (``values="levels"``): binomial(16), Poisson,
  negative binomial, 17-way categorical, discretised logistic and a Gaussian dequantised onto
  the 17 levels;
* Fashion-MNIST as 8-bit levels 0..255: continuous Bernoulli, Gaussian (per-pixel and
  decoder-predicted scale), Laplace and Beta, each dequantised onto the 256 levels, the
  discretised logistic (one logistic, and a mixture of five) and the 256-way categorical; plus
  the Bernoulli on binarised pixels, which is a different data set and is reported on its own.

Every model's test NLL is importance-weighted (nats per image and bits per pixel, with standard
errors over images), so mass functions and dequantised densities are in the same units, and
``pyro_vae.compare`` ranks them with paired standard errors.

Train and evaluate (each model writes OUT_DIR/<data>/<model>.pt and .json)::

    python experiments/likelihood_swap.py run --data digits
    python experiments/likelihood_swap.py run --data fashion-mnist --device cuda

then build the tables and figures from what the runs wrote::

    python experiments/likelihood_swap.py report

and, to see what each likelihood costs, time a few training steps of every model::

    python experiments/likelihood_swap.py step-time --data fashion-mnist

Smoke run (tests/test_experiments.py runs it; runs/smoke is a one-epoch run of pyro-vae train):

    python experiments/likelihood_swap.py run --data digits --epochs 1 --test-points 20 --particles 10 --out-dir /tmp/pyro_vae_smoke/l   # smoke run
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd
import torch

import pyro_vae
from pyro_vae.evaluate import LogLikelihood

DIGITS = {
    "binomial": ("binomial", {"total_count": 16}),
    "poisson": ("poisson", {}),
    "negative_binomial": ("negative_binomial", {"concentration": "feature"}),
    "categorical": ("categorical", {"num_levels": 17}),
    "discretized_logistic": ("discretized_logistic", {"num_levels": 17}),
    "normal": ("normal", {"num_levels": 17, "scale": "feature"}),
}
FASHION = {
    "continuous_bernoulli": ("continuous_bernoulli", {"num_levels": 256}),
    "normal": ("normal", {"num_levels": 256, "scale": "feature"}),
    "normal_decoder_scale": ("normal", {"num_levels": 256, "scale": "decoder"}),
    "laplace": ("laplace", {"num_levels": 256, "scale": "feature"}),
    "discretized_logistic": ("discretized_logistic", {"num_levels": 256}),
    "discretized_logistic_mixture": ("discretized_logistic", {"num_levels": 256, "num_components": 5}),
    "categorical": ("categorical", {"num_levels": 256}),
    "bernoulli_binarized": ("bernoulli", {}),
    "beta": ("beta", {"num_levels": 256, "concentration": "feature"}),
}
SETTINGS = {
    # The Fashion-MNIST budget is set by the 256-way categorical, whose decoder has 784 * 256
    # outputs: about 0.7 s per step on two CPU cores with 200 hidden units.
    "digits": dict(
        latent_dim=8, hidden=256, epochs=300, batch_size=64, input_scale=16.0, train_points=None, test_points=None
    ),
    "fashion-mnist": dict(
        latent_dim=20, hidden=200, epochs=5, batch_size=128, input_scale=255.0, train_points=10000, test_points=500
    ),
}
MODELS = {"digits": DIGITS, "fashion-mnist": FASHION}


def _make_vae(data_name: str, name: str, input_dim: int, settings: dict, image_shape=None) -> pyro_vae.VAE:
    """The network of ``data_name`` with model ``name``'s likelihood; only the likelihood differs."""
    likelihood, kwargs = MODELS[data_name][name]
    # Every model's encoder sees pixels in [0, 1]: binarised pixels as they are, levels / (L - 1).
    scale = 1.0 if name == "bernoulli_binarized" else settings["input_scale"]
    return pyro_vae.VAE(
        input_dim,
        settings["latent_dim"],
        hidden_sizes=(settings["hidden"],),
        likelihood=likelihood,
        likelihood_kwargs=kwargs,
        image_shape=image_shape,
        input_scale=scale,
        input_transform="none",  # the same encoder input for every likelihood, counts included
    )


def run(args) -> None:
    torch.set_num_threads(args.threads)
    settings = {**SETTINGS[args.data], **{k: v for k, v in vars(args).items() if k in SETTINGS[args.data] and v}}
    names = args.models or list(MODELS[args.data])
    out_dir = Path(args.out_dir) / args.data
    out_dir.mkdir(parents=True, exist_ok=True)
    levels = pyro_vae.data.load(args.data, values="levels", seed=args.seed)
    binary = (
        pyro_vae.data.load(args.data, binarize="dynamic", seed=args.seed) if "bernoulli_binarized" in names else None
    )
    for name in names:
        likelihood, kwargs = MODELS[args.data][name]
        data = binary if name == "bernoulli_binarized" else levels
        torch.manual_seed(args.seed)
        vae = _make_vae(args.data, name, data.input_dim, settings, data.image_shape).to(args.device)
        train = _to(
            data.train if settings["train_points"] is None else data.train[: settings["train_points"]], args.device
        )
        started = time.perf_counter()
        try:
            history = pyro_vae.fit(
                vae,
                train,
                val=data.val.x.to(args.device),
                epochs=settings["epochs"],
                batch_size=settings["batch_size"],
                lr=args.lr,
                seed=args.seed,
            )
        except FloatingPointError as error:  # recorded, and the other models still run
            (out_dir / f"{name}.failed.txt").write_text(str(error))
            print(f"{args.data:14s} {name:22s} FAILED: {error}", flush=True)
            continue
        seconds = time.perf_counter() - started
        test = data.test.x if settings["test_points"] is None else data.test.x[: settings["test_points"]]
        started = time.perf_counter()
        result = pyro_vae.log_likelihood(
            vae.eval(),
            test.to(args.device),
            num_particles=args.particles,
            seed=args.seed,
            max_memory_mb=args.max_memory_mb,
        )
        eval_seconds = time.perf_counter() - started
        with torch.no_grad():
            prior = pyro_vae.prior_predictive(vae, 20, seed=1)
            recon = pyro_vae.reconstruct(vae, test[:10].to(args.device))
        torch.save(
            {
                "log_px": result.log_px,
                "elbo": result.elbo,
                "mc_se": result.mc_se,
                "pareto_k": result.pareto_k,
                "prior_means": prior.mean.cpu(),
                "prior_samples": prior.x.cpu(),
                "reconstructions": recon.cpu(),
                "originals": test[:10].cpu(),
            },
            out_dir / f"{name}.pt",
        )
        summary = {
            "likelihood": likelihood,
            "likelihood_kwargs": kwargs,
            "describe": vae.likelihood.describe(),
            "data": "binarised (dynamic)" if name == "bernoulli_binarized" else f"{data.num_levels} levels",
            "settings": {
                **settings,
                "lr": args.lr,
                "seed": args.seed,
                "particles": args.particles,
                "device": args.device,
            },
            "train_seconds": seconds,
            "eval_seconds": eval_seconds,
            "best_epoch": history.best_epoch,
            "final_train_elbo": history.rows[-1]["train_elbo"],
            "best_val_elbo": max(history.column("val_elbo")),
            **result.summary(),
        }
        (out_dir / f"{name}.json").write_text(json.dumps(summary, indent=1))
        print(
            f"{args.data:14s} {name:22s} NLL {summary['nll']:9.2f} ± {summary['nll_se']:.2f} nats, "
            f"{summary['bits_per_dim']:.4f} bits/dim, k>0.7 {summary['share_k_above_0.7']:.2f}, "
            f"train {seconds:.0f} s, eval {eval_seconds:.0f} s",
            flush=True,
        )
        del vae


def step_time(args) -> None:
    """Milliseconds per SVI step of each model on one batch of random levels (the cost of a likelihood)."""
    import pyro
    from pyro.infer import SVI, Trace_ELBO

    torch.set_num_threads(args.threads)
    settings = SETTINGS[args.data]
    input_dim = 784 if args.data == "fashion-mnist" else 64
    levels = torch.randint(0, int(settings["input_scale"]) + 1, (settings["batch_size"], input_dim)).float()
    for name in MODELS[args.data]:
        x = (levels > settings["input_scale"] / 2).float() if name == "bernoulli_binarized" else levels
        pyro.clear_param_store()
        torch.manual_seed(args.seed)
        vae = _make_vae(args.data, name, input_dim, settings)
        svi = SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 1e-3}), Trace_ELBO())
        for _ in range(3):  # warm-up
            svi.step(x)
        started = time.perf_counter()
        for _ in range(args.steps):
            svi.step(x)
        milliseconds = 1000 * (time.perf_counter() - started) / args.steps
        print(f"{args.data:14s} {name:28s} {milliseconds:8.1f} ms/step (batch {len(x)})", flush=True)


def _to(split, device):
    from dataclasses import replace

    return replace(split, x=split.x.to(device))


def report(args) -> None:
    from pyro_vae.diagnostics.plots import image_grid

    out_dir = Path(args.out_dir)
    figures = Path(args.figures)
    tables = {}
    for data_name, models in MODELS.items():
        found = [n for n in models if (out_dir / data_name / f"{n}.pt").is_file()]
        if not found:
            continue
        results, summaries = {}, {}
        for name in found:
            saved = torch.load(out_dir / data_name / f"{name}.pt", weights_only=True)
            summaries[name] = json.loads((out_dir / data_name / f"{name}.json").read_text())
            s = summaries[name]
            results[name] = LogLikelihood(
                saved["log_px"],
                saved["elbo"],
                saved["mc_se"],
                saved["pareto_k"],
                None,
                s["num_particles"],
                s["likelihood"],
                s["is_discrete"],
                num_features=saved["originals"].shape[1],
            )
            value_max = 1.0 if name == "bernoulli_binarized" else (255.0 if data_name == "fashion-mnist" else 16.0)
            shape = (28, 28) if data_name == "fashion-mnist" else (8, 8)
            rows = torch.cat(
                [saved["originals"], saved["reconstructions"], saved["prior_means"][:10], saved["prior_samples"][:10]]
            )
            image_grid(
                rows,
                shape,
                figures / f"likelihood_swap_{data_name}_{name}.png",
                value_max=value_max,
                title=f"{data_name}, {name}",
                row_labels=["test", "recon.", "E[x|z]", "x ~ p(x|z)"],
            )
        comparable = [n for n in found if n != "bernoulli_binarized"]
        table = pyro_vae.compare({n: results[n] for n in comparable}) if len(comparable) > 1 else None
        if table is not None:
            pyro_vae.plot_comparison(
                table,
                figures / f"likelihood_swap_{data_name}_comparison.png",
                title=f"{data_name}: held-out log p(x), same levels",
            )
        tables[data_name] = {
            "models": {
                n: {
                    k: summaries[n][k]
                    for k in (
                        "likelihood",
                        "likelihood_kwargs",
                        "data",
                        "nll",
                        "nll_se",
                        "nll_mc_se",
                        "bits_per_dim",
                        "bits_per_dim_se",
                        "elbo",
                        "share_k_above_0.7",
                        "train_seconds",
                        "eval_seconds",
                        "best_epoch",
                        "settings",
                    )
                }
                for n in found
            },
            "compare": None if table is None else json.loads(table.to_json(orient="index")),
        }
        print(f"\n{data_name}")
        for n in found:
            s = summaries[n]
            print(
                f"  {n:22s} NLL {s['nll']:9.2f} ± {s['nll_se']:.2f}  bits/dim {s['bits_per_dim']:.4f} "
                f"± {s['bits_per_dim_se']:.4f}  k>0.7 {s['share_k_above_0.7']:.2f}"
            )
        if table is not None:
            with pd.option_context("display.width", 200, "display.max_columns", 20):
                print(table.round(3))
    Path(args.out).write_text(json.dumps(tables, indent=1))
    print(f"wrote {args.out}")


parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
commands = parser.add_subparsers(dest="command", required=True)
run_parser = commands.add_parser("run", help="train and evaluate models")
run_parser.add_argument("--data", choices=list(MODELS), required=True)
run_parser.add_argument("--models", nargs="*", default=None)
run_parser.add_argument("--epochs", type=int, default=None)
run_parser.add_argument("--train-points", type=int, default=None)
run_parser.add_argument("--test-points", type=int, default=None)
run_parser.add_argument("--particles", type=int, default=1000)
run_parser.add_argument("--lr", type=float, default=1e-3)
run_parser.add_argument("--max-memory-mb", type=float, default=64.0)
run_parser.add_argument("--device", default="cpu")
run_parser.add_argument("--threads", type=int, default=2)
run_parser.add_argument("--seed", type=int, default=0)
run_parser.add_argument("--out-dir", default="runs/likelihood_swap")
time_parser = commands.add_parser("step-time", help="milliseconds per training step of each model")
time_parser.add_argument("--data", choices=list(MODELS), required=True)
time_parser.add_argument("--steps", type=int, default=10)
time_parser.add_argument("--threads", type=int, default=2)
time_parser.add_argument("--seed", type=int, default=0)
report_parser = commands.add_parser("report", help="tables and figures from the runs")
report_parser.add_argument("--out-dir", default="runs/likelihood_swap")
report_parser.add_argument("--figures", default="docs/figures")
report_parser.add_argument("--out", default="docs/results/likelihood_swap.json")

if __name__ == "__main__":
    arguments = parser.parse_args()
    if arguments.command == "run":
        for name in arguments.models or []:
            if name not in MODELS[arguments.data]:
                parser.error(f"unknown model {name!r} for {arguments.data}; choose from {list(MODELS[arguments.data])}")
        run(arguments)
    elif arguments.command == "step-time":
        step_time(arguments)
    else:
        report(arguments)

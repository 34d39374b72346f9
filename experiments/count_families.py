"""Which count model fits simulated single-cell data? Seven families ranked by held-out log p(x).

The data have a known generating family, the one scVI assumes (Lopez et al. 2018): for cell ``i``
with a batch ``b_i`` and a library size ``l_i``,

.. math::

    z_i \\sim N(0, I_5), \\quad
    \\rho_i = \\mathrm{softmax}(W z_i + \\beta_{b_i} + c), \\quad
    x_{ig} \\sim \\mathrm{NB}(\\text{mean } l_i \\rho_{ig}, \\text{ concentration } \\theta_g),

with library sizes from a log-normal (uneven sequencing depth) and a per-gene shift ``beta_b``
between two batches. Seven models are trained with the library's defaults (the encoder reads
``log(1 + x)``, one hidden layer of 256, size factors are the cells' total counts) and ``fit``'s
early stopping (``--patience``, 50 epochs without a better validation ELBO), then
ranked by :func:`pyro_vae.compare` on held-out cells (1,000 importance samples per cell), with
the share of cells whose importance weights have Pareto k > 0.7; the Poisson and the negative
binomial model with size factors and batch are criticised by posterior-predictive checks
(:func:`pyro_vae.posterior_predictive_check`: zeros, means, variances, library sizes,
correlations):

    poisson                       Poisson, no size factors, no batch
    poisson+size                  Poisson with size factors
    poisson+size+batch            ... and the batch as a covariate
    nb                            negative binomial, a concentration per gene
    nb+size                       ... with size factors
    nb+size+batch                 ... and the batch: the generating family
    zinb+size+batch               zero-inflated negative binomial with both

    python experiments/count_families.py        # about 8 minutes on 2 cores (at most 1,000 epochs each)

Writes docs/results/count_families.json and docs/figures/count_checks_*.png. ``--ais-cells N``
re-estimates the two best models by annealed importance sampling on the first N test cells, where
importance sampling leaves the ranking "not resolved":

    python experiments/count_families.py --ais-cells 100 --out docs/results/count_families_ais.json --figure /tmp/count_checks.png

Smoke run (tests/test_experiments.py runs it; runs/smoke is a one-epoch run of pyro-vae train):

    python experiments/count_families.py --cells 300 --genes 20 --epochs 2 --particles 20 --draws 10 --ais-cells 2 --ais-steps 20 --out /tmp/pyro_vae_smoke/counts.json --figure /tmp/pyro_vae_smoke/counts.png   # smoke run
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import shlex
import sys
import time
import warnings
from pathlib import Path

import torch

import pyro_vae
from pyro_vae.data import one_hot

FAMILIES = {  # name -> (likelihood, size factors, batch as covariate)
    "poisson": ("poisson", False, False),
    "poisson+size": ("poisson", True, False),
    "poisson+size+batch": ("poisson", True, True),
    "nb": ("negative_binomial", False, False),
    "nb+size": ("negative_binomial", True, False),
    "nb+size+batch": ("negative_binomial", True, True),
    "zinb+size+batch": ("zero_inflated_negative_binomial", True, True),
}
TRUE_FAMILY = "nb+size+batch"
CHECKED = ("poisson+size+batch", TRUE_FAMILY)  # posterior-predictive checks of these two


def simulate(cells: int, genes: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Counts ``(cells, genes)`` and batch labels ``(cells,)`` from the family in the docstring."""
    g = torch.Generator().manual_seed(seed)
    latent = 5
    weights = torch.randn(genes, latent, generator=g) * 0.8
    baseline = torch.randn(genes, generator=g) * 1.0
    batch_shift = torch.randn(2, genes, generator=g) * 0.5
    concentration = 2.0 + 8.0 * torch.rand(genes, generator=g)  # theta_g in [2, 10]
    z = torch.randn(cells, latent, generator=g)
    batch = torch.randint(0, 2, (cells,), generator=g)
    library = torch.exp(math.log(1500.0) + 0.6 * torch.randn(cells, generator=g))
    rho = torch.softmax(z @ weights.T + batch_shift[batch] + baseline, dim=-1)
    mean = library[:, None] * rho
    # NB(mean m, concentration theta) as a gamma-Poisson mixture: rate ~ Gamma(theta, theta / m).
    # Gamma draws take no generator: the global one, seeded here and restored after.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        rate = torch.distributions.Gamma(concentration, concentration / mean).sample()
    counts = torch.poisson(rate, generator=g)
    return counts, batch


def build(name: str, genes: int, latent_dim: int, hidden: int | None) -> pyro_vae.VAE:
    """The family's VAE; ``hidden=None`` keeps the library's default hidden width."""
    likelihood, size_factors, batch = FAMILIES[name]
    return pyro_vae.VAE(
        genes,
        latent_dim,
        **({"hidden_sizes": (hidden,)} if hidden is not None else {}),
        likelihood=likelihood,
        likelihood_kwargs={"size_factors": True} if size_factors else None,
        covariate_dim=2 if batch else 0,
    )


def annealed_ranking(trained, names, scores, x_test, y_test, args) -> dict:
    """The two best models again on the first ``args.ais_cells`` test cells, by AIS (16 chains,
    ``args.ais_steps`` temperatures) from each model's guide: does the order importance sampling gave hold once
    the guides' slack is annealed away?"""
    cells = slice(0, args.ais_cells)
    estimates, found = {}, {}
    for name in names:
        covariates = {"y": y_test[cells]} if FAMILIES[name][2] else None
        start = time.perf_counter()
        result = pyro_vae.log_likelihood(
            trained[name], x_test[cells], covariates=covariates, method="ais", ais_steps=args.ais_steps, seed=args.seed
        )
        estimates[name] = result
        found[name] = {
            "importance_nll_per_cell": float(-scores[name].log_px[cells].mean()),
            "annealed_nll_per_cell": -result.mean,
            "acceptance": float(result.acceptance.mean()) if result.acceptance is not None else None,
            "seconds": time.perf_counter() - start,
        }
        print(
            f"{name:20s} on {args.ais_cells} test cells: NLL {found[name]['importance_nll_per_cell']:.3f} by "
            f"importance sampling, {found[name]['annealed_nll_per_cell']:.3f} by AIS ({found[name]['seconds']:.0f} s)"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        table = pyro_vae.compare(estimates)
    print(table[["rank", "elpd_diff", "dse", "nll", "unresolved"]].to_string())
    for name in names:
        found[name].update(
            rank=int(table.loc[name, "rank"]),
            elpd_diff=float(table.loc[name, "elpd_diff"]),
            dse=float(table.loc[name, "dse"]),
            unresolved=bool(table.loc[name, "unresolved"]),
        )
    return {"cells": args.ais_cells, "steps": args.ais_steps, "ranking": list(table.index), "models": found}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=4000, help="cells in all (60% train, 20% val, 20% test)")
    parser.add_argument("--genes", type=int, default=200)
    parser.add_argument("--latent-dim", type=int, default=10)
    parser.add_argument(
        "--hidden",
        type=int,
        default=None,
        help="one hidden layer's width (default: the library's for counts, 256; scVI uses 128)",
    )
    parser.add_argument("--epochs", type=int, default=1000, help="most epochs")
    parser.add_argument("--patience", type=int, default=50, help="early stopping after this many epochs without gain")
    parser.add_argument("--particles", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--draws", type=int, default=200, help="replicated data sets of the predictive checks")
    parser.add_argument(
        "--families", default=",".join(FAMILIES), help=f"comma-separated subset of {', '.join(FAMILIES)}"
    )
    parser.add_argument(
        "--ais-cells",
        type=int,
        default=0,
        help="re-estimate the two best models by annealed importance sampling on this many test cells (0: skip)",
    )
    parser.add_argument("--ais-steps", type=int, default=500, help="AIS temperatures")
    parser.add_argument("--out", default="docs/results/count_families.json")
    parser.add_argument("--figure", default="docs/figures/count_checks.png")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    families = args.families.split(",")
    unknown = sorted(set(families) - set(FAMILIES))
    if unknown or TRUE_FAMILY not in families:
        parser.error(
            f"--families must name some of {list(FAMILIES)}, {TRUE_FAMILY} among them; got {unknown or families}."
        )

    if args.ais_cells < 0 or (args.ais_cells and len(families) < 2):
        parser.error("--ais-cells needs a count of cells (0 or more) and at least two --families to rank.")

    counts, batch = simulate(args.cells, args.genes, args.seed)
    labels = one_hot(batch, 2)
    n_train, n_val = int(0.6 * args.cells), int(0.2 * args.cells)
    parts = {
        "train": slice(0, n_train),
        "val": slice(n_train, n_train + n_val),
        "test": slice(n_train + n_val, args.cells),
    }
    x = {k: counts[s] for k, s in parts.items()}
    y = {k: labels[s] for k, s in parts.items()}
    print(
        f"{args.cells} cells x {args.genes} genes, 2 batches; zeros {float((counts == 0).float().mean()):.1%}, "
        f"library sizes {float(counts.sum(-1).min()):.0f} to {float(counts.sum(-1).max()):.0f}"
    )

    scores, rows, checks, trained = {}, {}, {}, {}
    for name in families:
        uses_batch = FAMILIES[name][2]
        torch.manual_seed(args.seed)
        vae = build(name, args.genes, args.latent_dim, args.hidden)
        covariates = (lambda part: {"y": y[part]}) if uses_batch else (lambda part: None)
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # "still rising" on the shortest settings
            history = pyro_vae.fit(
                vae,
                x["train"],
                covariates=covariates("train"),
                val=x["val"],
                val_covariates=covariates("val"),
                epochs=args.epochs,
                patience=args.patience,
                progress=False,
                seed=args.seed,
            )
        seconds = time.perf_counter() - start
        result = pyro_vae.log_likelihood(
            vae, x["test"], covariates=covariates("test"), num_particles=args.particles, seed=args.seed
        )
        scores[name] = result
        trained[name] = vae
        rows[name] = {
            "test_nll_per_cell": -result.mean,
            "share_pareto_k_above_0.7": float((result.pareto_k > 0.7).float().mean()),
            "epochs": len(history.rows),
            "best_epoch": history.best_epoch,
            "train_seconds": seconds,
            "input_transform": vae.input_transform,
        }
        print(
            f"{name:20s} test NLL {-result.mean:9.3f} per cell, Pareto k > 0.7 for "
            f"{rows[name]['share_pareto_k_above_0.7']:.1%}, {len(history.rows)} epochs, {seconds:.0f} s"
        )

        if name in CHECKED and args.draws:  # does the model reproduce the zeros, the variances, the library sizes?
            check = pyro_vae.posterior_predictive_check(
                vae, x["test"], covariates=covariates("test"), num_samples=args.draws, seed=args.seed
            )
            rows[name]["posterior_predictive_check"] = check.summary()
            checks[name] = check
            print(
                "    checks: "
                + ", ".join(f"{k} {v.share_extreme:.0%} extreme" for k, v in check.statistics.items())
                + f"; coverage of 95% intervals {check.coverage:.1%}"
            )

    table = pyro_vae.compare(scores)
    print(table[["rank", "elpd", "se", "elpd_diff", "dse", "nll", "share_k_above_0.7"]].to_string())
    ranking = list(table.index)
    for name in rows:
        rows[name]["rank"] = int(table.loc[name, "rank"])
        rows[name]["elpd_diff"] = float(table.loc[name, "elpd_diff"])
        rows[name]["dse"] = float(table.loc[name, "dse"])
    verdict = (
        f"the generating family ({TRUE_FAMILY}) ranks {ranking.index(TRUE_FAMILY) + 1} of {len(ranking)}, "
        f"with Pareto k > 0.7 for {rows[TRUE_FAMILY]['share_pareto_k_above_0.7']:.1%} of the test cells"
    )
    print(verdict)
    annealed = annealed_ranking(trained, ranking[:2], scores, x["test"], y["test"], args) if args.ais_cells else None
    out = {
        "command": shlex.join(["python", "experiments/count_families.py", *sys.argv[1:]]),
        "settings": vars(args),
        "machine": f"{platform.machine()}, {args.threads} threads, torch {torch.__version__}",
        "date": time.strftime("%Y-%m-%d"),
        "ranking": ranking,
        "verdict": verdict,
        "models": rows,
        **({"annealed": annealed} if annealed else {}),
    }
    from pyro_vae.diagnostics.plots import predictive_check_figure

    for name, check in checks.items():
        figure = Path(args.figure)
        predictive_check_figure(
            check,
            figure.with_name(f"{figure.stem}_{name.replace('+', '_')}{figure.suffix}"),
            title=f"{name}: {check.num_samples} replicates of the test cells; coverage {check.coverage:.1%}",
        )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()

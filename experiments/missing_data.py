"""Missing entries: pyro_vae's masked likelihoods and imputations against closed forms and against
the imputers users already have.

Two parts (``python experiments/missing_data.py ppca|tables``):

* ``ppca`` -- probabilistic-PCA data (x in R^11, z in R^3, noise 0.4, 3,000 training and 1,000
  held-out rows, 30% of entries missing completely at random), where the masked ``log p(x_obs)``
  and the oracle ``E[x_mis | x_obs]`` are closed form under the true parameters. Each
  configuration of model and objective is trained with the mask and scored on the held-out rows:
  the mean gap to the closed form in nats per row, the imputation RMSE beside the oracle's, the
  share of rows with Pareto k > 0.7.
* ``tables`` -- scikit-learn's breast-cancer (569 x 30) and diabetes (442 x 10) tables,
  standardised, at 20% and 50% MCAR, ``--seeds`` seeds: pyro_vae's imputation RMSE on the masked
  entries beside ``IterativeImputer``, ``KNNImputer`` and the column mean, all on the same rows
  and masks in the same run, with standard errors over seeds; and the coverage of the central 90%
  interval of ``impute(...).draws`` on the held-back values. Two pyro_vae models: a mask-aware VAE
  trained by ``fit`` (``--ensemble M`` trains M per mask and imputes the average of their means,
  with their draws pooled; 0 leaves it out), and probabilistic PCA (a linear-Gaussian VAE) at the
  maximum-likelihood solution of the observed entries by EM, imputed from its exact posterior.

* ``drift`` -- how far ``fit`` moves probabilistic PCA away from the maximum-likelihood solution of
  the observed entries it starts at (breast-cancer, 20% MCAR, 27 latent dimensions).

Results are printed and written as JSON (``--out``); ``docs/missing-data.md`` holds the figures.

    python experiments/missing_data.py ppca --out docs/results/missing_data_ppca.json
    python experiments/missing_data.py tables --out docs/results/missing_data_tables.json
    python experiments/missing_data.py tables --tables diabetes --rates 0.2 --ensemble 3   # means of 3 models
    python experiments/missing_data.py drift --out docs/results/missing_data_drift.json
    python experiments/missing_data.py tables --seeds 1 --epochs 2 --rates 0.5 --ensemble 2 --out /tmp/pyro_vae_smoke/m.json   # smoke run
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

import pyro_vae
from pyro_vae.distributions.linear_gaussian import conditional_mean, observed_log_likelihood
from pyro_vae.vae.exact import linear_gaussian_parameters


def ppca_part(args) -> dict:
    g = torch.Generator().manual_seed(args.seed)
    n, n_test, d, latent, noise = 3000, 1000, 11, 3, 0.4
    weights = torch.randn(d, latent, generator=g, dtype=torch.float64)
    mean = torch.randn(d, generator=g, dtype=torch.float64)

    def simulate(rows):
        z = torch.randn(rows, latent, generator=g, dtype=torch.float64)
        return z @ weights.T + mean + noise * torch.randn(rows, d, generator=g, dtype=torch.float64)

    x, test = simulate(n), simulate(n_test)
    seen, test_seen = torch.rand(x.shape, generator=g) > 0.3, torch.rand(test.shape, generator=g) > 0.3
    test_seen[~test_seen.any(1), 0] = True
    oracle = conditional_mean(test, test_seen, mean, weights, noise**2)
    truth = observed_log_likelihood(test, test_seen, mean, weights, noise**2)

    def rmse(filled):
        return float((filled - test)[~test_seen].pow(2).mean().sqrt())

    configurations = {
        "linear, mask-aware encoder, fit's masked defaults (IWAE K=20)": dict(hidden=(), missing=True, options={}),
        "linear, mask-aware encoder, ELBO": dict(hidden=(), missing=True, options={"elbo": "trace"}),
        "linear, encoder without the mask, IWAE K=20": dict(hidden=(), missing=False, options={}),
        "MLP 400, mask-aware encoder, IWAE K=20": dict(hidden=None, missing=True, options={}),
    }
    rows = []
    print(f"oracle RMSE {rmse(oracle):.3f}")
    for name, c in configurations.items():
        torch.manual_seed(args.seed)
        vae = pyro_vae.VAE(d, latent, likelihood="normal", hidden_sizes=c["hidden"], missing=c["missing"])
        start = time.time()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pyro_vae.fit(
                vae,
                torch.where(seen, x, torch.nan).float(),
                mask=seen,
                epochs=args.epochs,
                progress=False,
                **c["options"],
            )
            holes = torch.where(test_seen, test, torch.nan).float()
            ll = pyro_vae.log_likelihood(vae, holes, mask=test_seen, num_particles=1000)
            filled = pyro_vae.impute(vae, holes, mask=test_seen, num_particles=1000, num_samples=0)
        gap = (ll.log_px - truth).double()
        row = {
            "configuration": name,
            "gap_nats_per_row": float(gap.mean()),
            "gap_se": float(gap.std() / math.sqrt(len(gap))),
            "rmse": rmse(filled.mean.double()),
            "oracle_rmse": rmse(oracle),
            "share_k_above_0.7": ll.share_k_above(0.7),
            "seconds": time.time() - start,
        }
        rows.append(row)
        print(
            f"{name}: {row['gap_nats_per_row']:+.3f} ± {row['gap_se']:.3f} nats per row, RMSE {row['rmse']:.3f} "
            f"({100 * (row['rmse'] / row['oracle_rmse'] - 1):+.1f}% of the oracle's), "
            f"k > 0.7 for {100 * row['share_k_above_0.7']:.1f}%, {row['seconds']:.0f} s",
            flush=True,
        )
    return {"epochs": args.epochs, "rows": rows}


def tables_part(args) -> dict:
    from sklearn.datasets import load_breast_cancer, load_diabetes
    from sklearn.experimental import enable_iterative_imputer  # noqa: F401 -- makes IterativeImputer importable
    from sklearn.impute import IterativeImputer, KNNImputer, SimpleImputer

    tables = {"breast-cancer": load_breast_cancer, "diabetes": load_diabetes}
    results = []
    for table in args.tables:
        raw = tables[table]().data
        values = (raw - raw.mean(0)) / raw.std(0)
        n, d = values.shape
        latent = max(2, int(args.latent_fraction * d))
        hidden = (args.hidden,) if args.hidden else ()  # 0: a linear decoder and encoder
        for rate in args.rates:
            scores: dict[str, list[float]] = {}
            for seed in range(args.seeds):
                rng = np.random.default_rng(seed)
                seen = rng.random(values.shape) > rate
                seen[~seen.any(1), 0] = True
                held = ~seen
                holes = np.where(seen, values, np.nan)

                def rmse(filled, values=values, held=held):
                    return float(np.sqrt(((filled - values)[held] ** 2).mean()))

                for name, imputer in (
                    ("IterativeImputer", IterativeImputer(max_iter=25, random_state=seed)),
                    ("KNNImputer", KNNImputer()),
                    ("mean", SimpleImputer()),
                ):
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        scores.setdefault(name, []).append(rmse(imputer.fit_transform(holes)))
                x, mask = torch.from_numpy(holes).float(), torch.from_numpy(seen)

                def coverage(draws, values=values, held=held):  # of the central 90% interval, held-back values
                    low, high = np.quantile(draws, 0.05, axis=0), np.quantile(draws, 0.95, axis=0)
                    return float(((values >= low) & (values <= high))[held].mean())

                # Probabilistic PCA at the maximum-likelihood solution of the observed entries (EM),
                # imputed from its exact posterior: no training loop, no encoder.
                ppca = pyro_vae.VAE(d, latent, likelihood="normal", hidden_sizes=(), missing=True)
                ppca.initialize_from_data(x, mask=mask)
                filled = pyro_vae.impute(ppca, x, mask=mask, num_particles=1000, num_samples=200, seed=seed)
                scores.setdefault("pyro_vae PPCA by EM", []).append(rmse(filled.mean.double().numpy()))
                scores.setdefault("coverage_90 PPCA by EM", []).append(coverage(filled.draws.double().numpy()))
                if not args.ensemble:
                    continue
                means, pooled = [], []
                for member in range(args.ensemble):  # member 0 is the single model of earlier runs
                    start = seed if member == 0 else 100 * seed + member
                    torch.manual_seed(start)
                    vae = pyro_vae.VAE(d, latent, likelihood="normal", hidden_sizes=hidden, missing=True)
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        pyro_vae.fit(vae, x, mask=mask, epochs=args.epochs, progress=False, seed=start)
                        filled = pyro_vae.impute(vae, x, mask=mask, num_particles=1000, num_samples=200, seed=seed)
                    means.append(filled.mean.double().numpy())
                    pooled.append(filled.draws.double().numpy())
                # An ensemble imputes the average of its members' means; its draws are the members'
                # pooled, a mixture over models that carries their disagreement into the intervals.
                scores.setdefault("pyro_vae", []).append(rmse(np.mean(means, axis=0)))
                scores.setdefault("coverage_90", []).append(coverage(np.concatenate(pooled)))  # (M S, N, D)
            for name in [k for k in scores if k.startswith("pyro_vae")]:  # paired: the same masks
                scores[f"{name} minus IterativeImputer"] = list(np.subtract(scores[name], scores["IterativeImputer"]))
            summary = {
                name: {
                    "mean": float(np.mean(v)),
                    "se": float(np.std(v, ddof=1) / math.sqrt(len(v))) if len(v) > 1 else None,
                }
                for name, v in scores.items()
            }
            results.append({"table": table, "rate": rate, "seeds": args.seeds, "latent_dim": latent, **summary})
            line = ", ".join(
                f"{k} {v['mean']:.3f}" + (f" ± {v['se']:.3f}" if v["se"] is not None else "")
                for k, v in summary.items()
            )
            print(f"{table} at {int(100 * rate)}% MCAR: {line}", flush=True)
    return {"epochs": args.epochs, "hidden": args.hidden, "ensemble": args.ensemble, "results": results}


def drift_part(args) -> dict:
    """How far ``fit`` moves probabilistic PCA from the maximum-likelihood start of the observed
    entries: breast-cancer at 20% MCAR (seed ``--seed``), ``0.9 D`` latent dimensions, the observed
    entries' log-likelihood per row (closed form) and the exact imputation's RMSE after each budget,
    beside the RMSE of the same model imputed through its encoder."""
    from sklearn.datasets import load_breast_cancer

    raw = load_breast_cancer().data
    values = (raw - raw.mean(0)) / raw.std(0)
    n, d = values.shape
    seen = np.random.default_rng(args.seed).random(values.shape) > 0.2
    seen[~seen.any(1), 0] = True
    x, mask = torch.from_numpy(np.where(seen, values, np.nan)).float(), torch.from_numpy(seen)
    rows = []
    for epochs in [0, *args.budgets]:
        torch.manual_seed(args.seed)
        vae = pyro_vae.VAE(d, int(0.9 * d), likelihood="normal", hidden_sizes=(), missing=True)
        vae.initialize_from_data(x, mask=mask)
        if epochs:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                pyro_vae.fit(vae, x, mask=mask, epochs=epochs, progress=False, seed=args.seed)
        bias, weights, noise = linear_gaussian_parameters(vae)
        per_row = observed_log_likelihood(x.double(), mask, bias, weights, noise)
        filled = pyro_vae.impute(vae, x, mask=mask, num_particles=1000, num_samples=0, seed=args.seed)
        by_encoder = pyro_vae.impute(
            vae, x, mask=mask, num_particles=1000, num_samples=0, seed=args.seed, guide=vae.guide
        )

        def rmse(imputation):
            return float(np.sqrt(((imputation.mean.double().numpy() - values)[~seen] ** 2).mean()))

        row = {
            "epochs": epochs,
            "log_p_x_obs_per_row": float(per_row.mean()),
            "noise_variance": float(noise.mean()),
            "rmse": rmse(filled),
            "rmse_through_the_encoder": rmse(by_encoder),
        }
        rows.append(row)
        print(
            f"after {epochs} epochs of fit: log p(x_obs) {row['log_p_x_obs_per_row']:.2f} per row, "
            f"noise variance {row['noise_variance']:.5f}, RMSE {row['rmse']:.3f} "
            f"({row['rmse_through_the_encoder']:.3f} through the encoder, 1,000 particles)",
            flush=True,
        )
    return {"rows": rows}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=["ppca", "tables", "drift"])
    parser.add_argument("--budgets", type=int, nargs="+", default=[100, 300, 1000], help="epochs of fit (drift)")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (ppca 100, tables 1000)")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--rates", type=float, nargs="+", default=[0.2, 0.5])
    parser.add_argument(
        "--hidden",
        type=int,
        default=128,
        help="hidden units of the tables' encoder and decoder (0: linear maps, probabilistic PCA)",
    )
    parser.add_argument("--latent-fraction", type=float, default=0.9, help="latent dimensions per feature (tables)")
    parser.add_argument(
        "--tables", nargs="+", default=["breast-cancer", "diabetes"], choices=["breast-cancer", "diabetes"]
    )
    parser.add_argument(
        "--ensemble",
        type=int,
        default=1,
        help="VAEs trained per mask (tables): their means averaged, draws pooled; 0 for PPCA by EM alone",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.epochs is None:
        args.epochs = 100 if args.part == "ppca" else 1000
    result = {"ppca": ppca_part, "tables": tables_part, "drift": drift_part}[args.part](args)
    result.update(command="python experiments/missing_data.py " + " ".join(sys.argv[1:] if argv is None else argv))
    result.update(torch=torch.__version__, python=platform.python_version())
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

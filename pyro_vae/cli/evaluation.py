"""``pyro-vae evaluate`` and ``pyro-vae compare``: held-out log-likelihoods of run folders.

Each command computes first (a JSON-ready dict or a table), then prints from what it computed.
"""

from __future__ import annotations

import sys
from contextlib import nullcontext
from pathlib import Path

from .._util.files import atomic_write, check_writable, write_json
from .._util.untrusted import read_text_at_most
from ..evaluate.result import describe_slack
from ..io import runs
from .commands import parse_device


def held_out(run: Path, split: str, max_points: int | None):
    """The run's model, the held-out split it was trained against (binarised as in training), its
    config, the data set, the split's covariates (``None`` without covariate columns) and its mask of
    observed entries (``None`` unless the run was trained with ``--mask-missing``)."""
    loaded = runs.load_run(run)
    vae, dataset, config = loaded.vae, loaded.dataset, loaded.config
    held = getattr(dataset, split)
    if max_points is not None:
        if max_points < 1:
            raise ValueError(f"--max-points must be positive, got {max_points}.")
        held = held[:max_points]
    return vae, held.x, config, dataset, held.covariates_for(), held.mask


def run_evaluate(args) -> dict:
    """``pyro-vae evaluate``: compute the metrics, write them to JSON, then print them.

    Writing into the run folder, it holds the folder's lock throughout (a training cannot replace the
    run meanwhile), lists its files in config.json before writing them (``--overwrite`` removes them
    even after a kill), and writes the per-point CSV before the JSON, having removed the old pair:
    a JSON is never beside a CSV of another evaluation.
    """
    run = Path(args.run)
    out = Path(args.out) if args.out else run / "evaluation.json"
    table = out.with_name(out.stem + "-points.csv")
    check_writable(out.parent, "the evaluation")
    with runs.lock(run, "evaluation") if runs.inside(run, out) else nullcontext():
        metrics = evaluate_run(run, args)
        points = metrics.pop("per_point", None)
        written = [out] if points is None else [out, table]
        runs.record_outputs(run, written)
        for path in (out, table):
            path.unlink(missing_ok=True)
        if points is not None:  # per-point values beside the JSON, for scripts: log p(x_i), ELBO_i, Pareto k_i
            atomic_write(table, lambda handle: handle.write(_points_csv(points).encode()))
        write_json(out, metrics)
    print_evaluation(metrics)
    print(f"wrote {out}" + (f" and {written[1]}" if len(written) > 1 else ""))
    return metrics


def _points_csv(points: dict) -> str:
    names = list(points)
    rows = zip(*(points[n] for n in names))
    return ",".join(names) + "\n" + "".join(",".join(repr(float(v)) for v in row) + "\n" for row in rows)


def evaluate_run(run: Path, args) -> dict:
    """The metrics of ``pyro-vae evaluate`` for the run folder ``run``: a JSON-ready dict.

    Length: the evaluation's parts (log-likelihood, diagnostics, their JSON) in the order the written file
    lists them.
    """
    from ..diagnostics.pareto import pareto_k_report
    from ..diagnostics.posterior import active_units, elbo_surgery
    from ..evaluate.estimate import DEFAULT_DRAWS, log_likelihood

    vae, x, config, dataset, covariates, mask = held_out(run, args.split, args.max_points)
    device = parse_device(args.device)
    vae, x = vae.to(device), x.to(device)
    covariates = None if covariates is None else {k: v.to(device) for k, v in covariates.items()}
    mask = None if mask is None else mask.to(device)  # a table with missing entries: log p(x_obs)
    print(
        f"Evaluating {run} on {len(x)} {args.split} points of {config['data']} "
        f"with {args.num_particles or DEFAULT_DRAWS[args.method]} "
        f"{'AIS chains' if args.method == 'ais' else 'particles'} per point."
    )
    result = log_likelihood(
        vae,
        x,
        covariates=covariates,
        mask=mask,
        num_particles=args.num_particles,
        seed=args.seed,
        max_memory_mb=args.max_memory_mb,
        **estimator_options(args),
    )
    surgery = elbo_surgery(vae, x, covariates=covariates, seed=args.seed, mask=mask)
    units = active_units(vae, x, covariates=covariates, mask=mask)
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
        "per_point": {
            "log_px": result.log_px.tolist(),
            "elbo": result.elbo.tolist(),
            **({"pareto_k": result.pareto_k.tolist()} if result.pareto_k is not None else {}),
        },
    }
    if result.pareto_k is not None and result.share_k_above(0.7) > 0.1:
        amount = describe_slack(result.slack / len(x), "nats per point")
        metrics["warnings"].append(
            f"Pareto k > 0.7 for {100 * result.share_k_above(0.7):.0f}% of points: the NLL ({result.estimator}) is an "
            f"upper bound that may be {amount} too high (its slack). Rerun with --method ais, or more "
            "--num-particles, before comparing models on it."
        )
    if not result.is_discrete and mask is None:  # closed-form baselines of complete real-valued data
        from ..evaluate.baselines import closed_form_baselines, losing_to

        found = closed_form_baselines(dataset.train.x.cpu(), x.cpu(), vae.latent_dim)
        metrics["baselines"] = {
            name.removeprefix("baseline: "): {"nll": -b.mean, "nll_se": b.mean_se} for name, b in found.items()
        }
        metrics["warnings"] += losing_to(result, found)
    return metrics


def print_evaluation(metrics: dict) -> None:
    """Print what :func:`evaluate_run` computed; every line reads from ``metrics`` alone."""
    print(
        f"  NLL                        {metrics['nll']:.2f} ± {metrics['nll_se']:.2f} nats per point "
        f"(Monte Carlo error {metrics['nll_mc_se']:.3f})"
    )
    print(f"  ELBO                       {metrics['elbo']:.2f} ± {metrics['elbo_se']:.2f}")
    print(
        f"  mutual information I(x;z)  {metrics['mutual_information']:.3f} ± {metrics['mutual_information_se']:.3f} "
        f"(at most log N = {metrics['max_mutual_information']:.2f})"
    )
    print(f"  KL(q(z) || p(z))           {metrics['marginal_kl']:.3f} ± {metrics['marginal_kl_se']:.3f}")
    print(f"  active units               {metrics['active_units']} of {metrics['latent_dim']}")
    pareto = metrics["pareto_k"]
    if pareto is None:
        print("  Pareto k                   not estimated (it needs at least 10 particles or chains per point)")
    else:
        print(f"  Pareto k > 0.7             {100 * pareto['share_k>0.7']:.1f}% of points")
    for name, baseline in metrics.get("baselines", {}).items():
        print(f"  baseline: {name:17s} NLL {baseline['nll']:.2f} ± {baseline['nll_se']:.2f}")
    for text in metrics["warnings"]:
        print(f"warning: {text}", file=sys.stderr)


def _training_warnings(run: Path) -> list[str]:
    """What the run's training left to say: an ELBO still rising at its last epoch."""
    import csv

    path = run / "history.csv"
    if not path.is_file():
        return []
    from ..train.state import History

    try:
        # At most a million epochs of five short columns.
        text = read_text_at_most(path, 100 * 10**6, "a training history")
        rows = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(text.splitlines())]
    except (ValueError, TypeError):
        return [f"{path} is unreadable; its training could not be checked."]
    history = History(rows=rows)
    if history.still_rising:
        return [history.not_converged("Resume with more --epochs.")]
    return []


def run_compare(args):
    """``pyro-vae compare``: rank run folders by held-out ``log p(x)``.

    Length: reads every run's folder and checks they share data before ranking, then writes table, CSV and
    plot.
    """
    import pandas as pd

    from ..evaluate.ranking import compare, plot_comparison

    run_paths = [Path(r) for r in args.runs]
    if len(run_paths) < 2:
        raise ValueError("compare needs at least two run folders.")
    names = _run_names(run_paths)
    device = parse_device(args.device)
    results, data_keys = {}, {}
    for name, run in zip(names, run_paths):
        vae, x, config, dataset, covariates, mask = held_out(run, args.split, args.max_points)
        data_keys[name] = (
            config.get("data_source") or config["data"],
            dataset.fingerprint(with_covariates=False),  # the same points, whichever covariates a run used
            config["binarize"],
            config.get("values", "unit"),
            config["seed"],
        )
        moved = None if covariates is None else {k: v.to(device) for k, v in covariates.items()}
        results[name] = (vae.to(device), x.to(device), moved, None if mask is None else mask.to(device))
    if len(set(data_keys.values())) != 1:
        raise ValueError(
            f"The runs were trained on different data (source, fingerprint, binarize, values, seed): "
            f"{data_keys}; held-out log p(x) is comparable only on the same points."
        )
    x = next(iter(results.values()))[1]
    # Closed-form baselines exist for complete real-valued data (the runs share their data and masks).
    densities = not any(vae.likelihood.is_discrete for vae, *_ in results.values()) and mask is None
    from ..evaluate.estimate import log_likelihood

    # Each run is scored here with its own covariates (and the chosen estimator); compare ranks them.
    models = {
        name: log_likelihood(
            vae,
            x,
            covariates=covariates,
            mask=observed,
            num_particles=args.num_particles,
            seed=args.seed,
            max_memory_mb=args.max_memory_mb,
            **estimator_options(args),
        )
        for name, (vae, _, covariates, observed) in results.items()
    }
    table = compare(
        models,
        x,
        num_particles=args.num_particles,
        seed=args.seed,
        max_memory_mb=args.max_memory_mb,
        baselines_from=dataset.train.x.to(x.device) if densities else None,
        baseline_latent_dim=next(iter(results.values()))[0].latent_dim,
    )
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print(table.to_string(float_format=lambda v: f"{v:.2f}"))
    path = plot_comparison(table, args.plot, title=f"Held-out {args.split} log p(x), {config['data']}")
    print(f"wrote {path}")
    for name, texts in table.attrs.get("warnings", {}).items():
        for text in texts:
            print(f"warning: {name}: {text}", file=sys.stderr)
    for name in table.attrs.get("unresolved", []):
        print(
            f"warning: {name}: its difference to the best model is within the estimators' slack (column "
            "'slack'); rerun with --method ais or more --num-particles before reading the ranking.",
            file=sys.stderr,
        )
    if args.csv:
        table.to_csv(args.csv)
        print(f"wrote {args.csv}")
    return table


# ---------------------------------------------------------------------- helpers
def estimator_options(args) -> dict:
    """``log_likelihood`` keyword arguments of ``--method`` and ``--ais-steps``; fewer than 10 particles
    (or chains) per point are estimated without the Pareto fit that needs 10, rather than refused."""
    few = {"psis": False} if args.num_particles is not None and args.num_particles < 10 else {}
    if args.method == "ais":
        return {"method": "ais", "ais_steps": args.ais_steps, **few}
    return few


def _run_names(run_paths: list[Path]) -> list[str]:
    names = [run.resolve().name for run in run_paths]
    if len(set(names)) < len(names):
        names = [str(run) for run in run_paths]
    return names

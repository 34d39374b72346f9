"""``pyro-vae report RUN``: diagnostics, holes and samples from every source, in one folder.

Writes ``RUN/report/`` (or ``--out``)::

    report.json             held-out log-likelihood, ELBO surgery, active units, Pareto k, holes
    samples-prior.png       likelihood means of decoded draws from each latent source
    samples-aggregate.png
    samples-mixture.png     a Gaussian mixture (K components) fitted to the training codes
    samples-labels.png      one row per label: the aggregate posterior of that label's training points
    latent-map.png          encoded test points over the prior density
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from .._util.files import write_json
from ..diagnostics.pareto import pareto_k_report
from ..diagnostics.posterior import active_units, elbo_surgery, holes
from ..evaluate.estimate import log_likelihood
from ..io import runs
from ..latent.aggregate import AggregatePosterior
from ..latent.mixture import LatentMixture
from ..latent.sampling import sample
from .commands import parse_device
from .evaluation import held_out

#: The files of a report, in its folder: listed in the run's config.json before any is written.
REPORT_FILES = (
    "report.json",
    "samples-prior.png",
    "samples-aggregate.png",
    "samples-mixture.png",
    "samples-labels.png",
    "latent-map.png",
)


def run_report(args) -> dict:
    """``pyro-vae report``. Writing into the run folder, it holds the folder's lock throughout and lists
    its files in config.json before writing them, so that ``--overwrite`` removes them even after a kill."""
    run = Path(args.run)
    out = Path(args.out) if args.out else run / "report"
    if not runs.inside(run, out):
        return _report(run, out, args)
    with runs.lock(run, "report"):
        runs.record_outputs(run, [out / name for name in REPORT_FILES])
        return _report(run, out, args)


def _report(run: Path, out: Path, args) -> dict:
    """Write the report of one run folder.

    Length: one section of the report per figure or JSON file, in the order the report lists them.
    """
    from ..diagnostics.plots import image_grid, latent_map

    device = parse_device(args.device)
    vae, x, config, dataset, covariates, mask = held_out(run, "test", args.max_points)
    if mask is not None:
        raise ValueError(
            f"{run} was trained on a table with missing entries; the report's samples, holes and mixture read "
            "complete rows. Use pyro-vae evaluate (log p(x_obs)) and pyro-vae impute on this run."
        )
    vae, x = vae.to(device), x.to(device)
    codes_input = runs.training_codes_input(dataset).to(device)
    # With covariate columns every tool gets each row's own covariates, and codes drawn from the prior
    # or a mixture are decoded under the training rows' covariates in turn (as pyro-vae sample does).
    covariates = _on(covariates, device)
    train_covariates = _on(dataset.train.covariates_for(), device)
    print(f"Report on {run}: {len(x)} test points, {args.num_particles} particles, K={args.components} mixture.")

    result = log_likelihood(vae, x, covariates=covariates, num_particles=args.num_particles, seed=args.seed)
    surgery = elbo_surgery(vae, x, covariates=covariates, seed=args.seed)
    units = active_units(vae, x, covariates=covariates)
    gaps = holes(vae, codes_input, covariates=train_covariates, num_samples=args.num_samples, seed=args.seed)
    mixture = vae.latent_mixture or LatentMixture.fit(
        vae, codes_input, args.components, covariates=train_covariates, seed=args.seed
    )
    report = {
        "run": str(run),
        "data": config["data"],
        "data_source": config.get("data_source"),
        "log_likelihood": result.summary(),
        "elbo_surgery": surgery.summary(),
        "active_units": units.summary(),
        "pareto_k": pareto_k_report(result).summary(),
        "holes": gaps.summary(),
        "mixture": {"num_components": mixture.num_components, "fitted_for_this_report": vae.latent_mixture is None},
        "files": {},
    }
    if dataset.is_image:
        sources = {
            "prior": "prior",
            "aggregate": AggregatePosterior.from_data(vae, codes_input, covariates=train_covariates),
            "mixture": mixture.distribution(),
        }
        for name, source in sources.items():
            drawn = sample(vae, args.num, source=source, seed=args.seed, **(train_covariates or {}))
            path = image_grid(
                drawn.mean,
                vae.image_shape,
                out / f"samples-{name}.png",
                title=f"Likelihood means E[x|z], z from the {name}",
                value_max=vae.input_scale,
            )
            report["files"][f"samples from the {name}"] = str(path)
        labels = sorted(set(dataset.train.labels.tolist()))[:10]
        if len(labels) > 1:
            train = replace(dataset.train, x=codes_input, dynamic_binarization=False)
            rows = [
                sample(vae, 10, source="subset", x=train, covariates=train_covariates, label=label, seed=args.seed).mean
                for label in labels
            ]
            path = image_grid(
                torch.cat(rows),
                vae.image_shape,
                out / "samples-labels.png",
                title="One row per label: z from that label's aggregate posterior",
                row_labels=[str(label) for label in labels],
                value_max=vae.input_scale,
            )
            report["files"]["samples per label"] = str(path)
    path = latent_map(
        vae,
        x,
        dataset.test.labels[: len(x)].cpu(),
        out / "latent-map.png",
        title="Encoded test points over the prior density",
        y=None if covariates is None else covariates["y"],
    )
    report["files"]["latent map"] = str(path)
    write_json(out / "report.json", report)
    print(
        f"  NLL {result.summary()['nll']:.2f} ± {result.summary()['nll_se']:.2f} nats per point; "
        f"KL(q(z)||p(z)) {surgery.marginal_kl:.3f}; hole share {gaps.hole_share:.3f}; active units {units.count} "
        f"of {vae.latent_dim}"
    )
    print(f"wrote {out / 'report.json'} and {len(report['files'])} figure(s) in {out}")
    return report


def _on(covariates, device):
    return None if covariates is None else {k: v.to(device) for k, v in covariates.items()}

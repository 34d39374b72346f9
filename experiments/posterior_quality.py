"""How good is q(z|x) on binarised Fashion-MNIST? Numbers and figure for docs/diagnostics.md.

Train the reference model (784-400-50, softplus, Bernoulli, dynamic binarisation), then measure:

* the distribution of Pareto k of the importance weights p(x, z)/q(z|x) over test images;
* the amortization gap: encoder ELBO against per-point refined ELBO, and log p(x);
* ELBO surgery: average KL = I(x; z) + KL(q(z) || p(z)) on the test set;
* active units.

    pyro-vae train --data fashion-mnist --binarize dynamic --latent-dim 50 --hidden 400 \\
        --epochs 100 --kl-warmup 10 --patience 10 --out runs/fmnist-50
    python experiments/posterior_quality.py runs/fmnist-50

Writes docs/results/posterior_quality.json and docs/figures/posterior_quality.png.

Smoke run (tests/test_experiments.py runs it; runs/smoke is a one-epoch run of pyro-vae train):

    python experiments/posterior_quality.py runs/smoke --points 20 --particles 20 --gap-points 4 --gap-steps 2 --out /tmp/pyro_vae_smoke/q.json --figure /tmp/pyro_vae_smoke/q.png   # smoke run
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

import pyro_vae  # noqa: E402
from pyro_vae import diagnostics  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("run", help="run folder of the trained model")
parser.add_argument("--points", type=int, default=1000, help="test images for log p(x) and Pareto k")
parser.add_argument("--particles", type=int, default=1000)
parser.add_argument(
    "--sweep",
    type=int,
    nargs="*",
    default=[10, 100, 5000],
    help="other particle counts at which to re-estimate log p(x) on the same images",
)
parser.add_argument("--gap-points", type=int, default=200, help="test images for the amortization gap")
parser.add_argument("--gap-steps", type=int, default=500)
parser.add_argument("--out", default="docs/results/posterior_quality.json")
parser.add_argument("--figure", default="docs/figures/posterior_quality.png")
args = parser.parse_args()
torch.set_num_threads(2)

run = Path(args.run)
loaded = pyro_vae.load_run(run)
vae, data, config = loaded.vae, loaded.dataset, loaded.config
test = data.test.x
timings = {}

start = time.perf_counter()
ll = pyro_vae.log_likelihood(vae, test[: args.points], num_particles=args.particles, seed=0)
timings["log_likelihood"] = time.perf_counter() - start
pareto = diagnostics.pareto_k_report(ll)

# Where Pareto k > 0.7 the estimate is expected to keep rising with more particles.
sweep = {args.particles: {"nll": -ll.mean, "share_k_above_0.7": pareto.share_above(0.7)}}
for particles in args.sweep:
    other = pyro_vae.log_likelihood(vae, test[: args.points], num_particles=particles, seed=1, psis=particles >= 10)
    sweep[particles] = {
        "nll": -other.mean,
        "share_k_above_0.7": other.share_k_above(0.7) if other.pareto_k is not None else None,
    }
sweep = dict(sorted(sweep.items()))

start = time.perf_counter()
gap = diagnostics.amortization_gap(vae, test[: args.gap_points], num_steps=args.gap_steps, num_particles=args.particles)
timings["amortization_gap"] = time.perf_counter() - start

start = time.perf_counter()
surgery = diagnostics.elbo_surgery(vae, test, num_particles=1, seed=0)
timings["elbo_surgery"] = time.perf_counter() - start
units = diagnostics.active_units(vae, test)

results = {
    "run": str(run),
    "model": config["model"],
    "training": config["training"],
    "log_likelihood": ll.summary(),
    "pareto_k": {
        **pareto.summary(),
        "quantiles": {q: float(np.quantile(ll.pareto_k.numpy(), q)) for q in (0.1, 0.5, 0.9)},
    },
    "particle_sweep": sweep,
    "amortization_gap": gap.summary(),
    "elbo_surgery": surgery.summary(),
    "active_units": units.summary(),
    "seconds": timings,
    "command": f"python experiments/posterior_quality.py {run}",
}
out = Path(args.out)
out.parent.mkdir(parents=True, exist_ok=True)
out.write_text(json.dumps(results, indent=1))

fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), constrained_layout=True)
ax = axes[0]
k = ll.pareto_k.numpy()
ax.hist(k[np.isfinite(k)], bins=40, color="C0")
for threshold, align in ((0.5, "right"), (0.7, "left")):
    ax.axvline(threshold, color="k", ls="--" if threshold == 0.7 else ":", lw=1)
    ax.text(threshold, ax.get_ylim()[1] * 0.95, f" k={threshold} ", va="top", ha=align)
ax.set_xlabel("Pareto k of the importance weights p(x,z)/q(z|x)")
ax.set_ylabel("test images")
ax.set_title(f"{100 * pareto.share_above(0.7):.1f}% of {len(k)} images have k > 0.7")

ax = axes[1]
amortization = gap.amortization.numpy()
approximation = gap.approximation.numpy()
bins = np.linspace(min(0.0, amortization.min(), approximation.min()), max(amortization.max(), approximation.max()), 40)
ax.hist(amortization, bins=bins, alpha=0.7, label=f"amortization gap (mean {amortization.mean():.2f})")
ax.hist(approximation, bins=bins, alpha=0.7, label=f"approximation gap (mean {approximation.mean():.2f})")
ax.set_xlabel("nats per image")
ax.set_ylabel("test images")
ax.set_title(f"Gaps of q(z|x) on {len(amortization)} test images ({(amortization < 0).sum()} below 0)")
ax.legend()

ax = axes[2]
terms = [
    ("average KL", surgery.average_kl, surgery.average_kl_se),
    ("I(x; z)", surgery.mutual_information, surgery.mutual_information_se),
    ("KL(q(z)||p(z))", surgery.marginal_kl, surgery.marginal_kl_se),
]
ax.bar(
    [t[0] for t in terms], [t[1] for t in terms], yerr=[2 * t[2] for t in terms], color=["C2", "C3", "C4"], capsize=4
)
ax.axhline(surgery.max_mutual_information, color="C3", ls=":", lw=1)
ax.text(1, surgery.max_mutual_information, "log N", va="bottom", ha="center", color="C3")
ax.set_ylabel("nats")
ax.set_title(f"ELBO surgery on {surgery.num_points} test images (±2 s.e.)")
fig.suptitle(
    f"q(z|x) of a 784-400-{vae.latent_dim} Bernoulli VAE on binarised Fashion-MNIST; "
    f"{units.count} of {vae.latent_dim} units active"
)
figure = Path(args.figure)
figure.parent.mkdir(parents=True, exist_ok=True)
fig.savefig(figure, dpi=110)

print(json.dumps({key: results[key] for key in ("log_likelihood", "elbo_surgery", "seconds")}, indent=1))
print("amortization gap:", json.dumps({k: v for k, v in gap.summary().items() if k != "trace"}, indent=1))
print("particle sweep:", json.dumps(sweep))
print("gap trace:", [round(v, 2) for v in gap.trace])
print("Pareto k:", pareto.interpretation())
print(f"active units: {units.count} of {vae.latent_dim}")
print(f"wrote {out} and {figure}")

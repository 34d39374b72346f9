"""AIS against a closed form on a data set and a model size that no test uses.

Probabilistic PCA is a VAE with a linear decoder, a Gaussian likelihood and a standard normal
prior, and its ``log p(x)`` is known exactly: ``x ~ N(b, W W^T + s^2 I)``. Here it is the
maximum-likelihood PPCA of grey-level Fashion-MNIST (D = 784, L = 32, fitted on the 54,000
training images; ``VAE.initialize_from_data`` puts it there). The guide is the exact posterior
made worse on purpose -- its standard deviations halved and its means moved by one posterior
standard deviation -- so that importance sampling from it has heavy-tailed weights.

For 200 test images the script reports, against the exact value:

* importance sampling from that guide (5,000 particles);
* AIS from that guide (16 chains, 1,000 temperatures, 10 leapfrog steps) with its stated
  Monte Carlo error and slack;
* BDMC bounds on 100 images simulated from the model.

    python experiments/ais_check.py                 # about an hour on 2 CPU threads
    python experiments/ais_check.py --steps 300     # the shorter schedule of docs/comparison.md

Writes docs/results/ais_check_STEPS.json after each part, so a run stopped before its BDMC part
keeps the figures it has.

Smoke run (tests/test_experiments.py runs it; runs/smoke is a one-epoch run of pyro-vae train):

    python experiments/ais_check.py --latent-dim 4 --points 4 --particles 50 --chains 2 --steps 5 --bdmc-points 2 --out /tmp/pyro_vae_smoke/ais.json   # smoke run
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pyro
import pyro.distributions as dist
import torch

import pyro_vae

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--latent-dim", type=int, default=32)
parser.add_argument("--points", type=int, default=200)
parser.add_argument("--particles", type=int, default=5000)
parser.add_argument("--chains", type=int, default=16)
parser.add_argument("--steps", type=int, default=1000)
parser.add_argument("--leapfrog", type=int, default=10)
parser.add_argument("--bdmc-points", type=int, default=100)
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--threads", type=int, default=2)
parser.add_argument("--out", default=None, help="default docs/results/ais_check_STEPS.json")
args = parser.parse_args()
args.out = args.out or f"docs/results/ais_check_{args.steps}.json"
pyro_vae._util.files.check_writable(Path(args.out).parent, "the results")
torch.set_num_threads(args.threads)
torch.set_default_dtype(torch.float64)

data = pyro_vae.data.load("fashion-mnist", binarize="none", seed=args.seed)
train, test = data.train.x.double(), data.test.x[: args.points].double()
vae = pyro_vae.VAE(
    784, args.latent_dim, hidden_sizes=(), likelihood="normal", likelihood_kwargs={"scale": "learned"}
).double()
vae.initialize_from_data(train)  # the maximum-likelihood PPCA, and the exact posterior as encoder
W, b = vae.decoder.net[0].weight.detach(), vae.decoder.net[0].bias.detach()
sigma = float(vae.likelihood.scale.value().detach())
exact_marginal = dist.MultivariateNormal(b, covariance_matrix=W @ W.T + sigma**2 * torch.eye(784))


def poor_guide(x):
    """The exact posterior with halved standard deviations, shifted by one of them."""
    loc, scale = vae.encode(x)
    with pyro.plate("data", x.shape[0]):
        pyro.sample("z", dist.Normal(loc + scale, 0.5 * scale).to_event(1))


exact = exact_marginal.log_prob(test)
out = {
    "settings": vars(args),
    "noise_sd": sigma,
    "exact_mean": float(exact.mean()),
    "command": "python experiments/ais_check.py" + ("" if args.steps == 1000 else f" --steps {args.steps}"),
}


def write() -> None:
    """Write what is measured so far (atomically: a crash leaves the previous file)."""
    pyro_vae._util.files.write_json(args.out, out)
    print(f"wrote {args.out}")


start = time.perf_counter()
importance = pyro_vae.log_likelihood(vae.model, test, guide=poor_guide, num_particles=args.particles, seed=args.seed)
error = importance.log_px - exact
out["importance"] = {
    "mean_error": float(error.mean()),
    "max_abs_error": float(error.abs().max()),
    "share_k_above_0.7": importance.share_k_above(0.7),
    "seconds": time.perf_counter() - start,
}
print(
    f"importance sampling ({args.particles}): mean error {error.mean():.3f} nats, Pareto k > 0.7 for "
    f"{100 * importance.share_k_above(0.7):.0f}% ({time.perf_counter() - start:.0f} s)"
)
write()

start = time.perf_counter()
ais = pyro_vae.log_likelihood(
    vae.model,
    test,
    guide=poor_guide,
    method="ais",
    num_particles=args.chains,
    ais_steps=args.steps,
    leapfrog_steps=args.leapfrog,
    seed=args.seed,
    max_memory_mb=2048,
)
error = ais.log_px - exact
stated = float(ais.mc_se.pow(2).sum().sqrt()) / len(test)  # stated error of the mean
out["ais"] = {
    "mean_error": float(error.mean()),
    "stated_error_of_mean": stated,
    "max_abs_error": float(error.abs().max()),
    "share_within_3_mc_se": float((error.abs() <= 3 * ais.mc_se).double().mean()),
    "slack_per_point": ais.slack / len(test),
    "within_stated_error": bool(abs(float(error.mean())) <= 3 * stated + ais.slack / len(test)),
    "share_k_above_0.7": ais.share_k_above(0.7) if ais.pareto_k is not None else None,
    "acceptance": float(ais.acceptance.mean()),
    "seconds": time.perf_counter() - start,
    "estimator": ais.estimator,
}
print(
    f"AIS: mean error {error.mean():.4f} nats, stated Monte Carlo error of the mean {stated:.4f}, slack "
    f"{ais.slack / len(test):.4f} per point; "
    f"{100 * out['ais']['share_within_3_mc_se']:.0f}% of points within 3 stated errors "
    f"({time.perf_counter() - start:.0f} s)"
)
write()

start = time.perf_counter()
bounds = pyro_vae.bdmc(
    vae.model,
    args.bdmc_points,
    guide=poor_guide,
    rows=test[:1],
    num_chains=4,
    ais_steps=args.steps,
    leapfrog_steps=args.leapfrog,
    seed=args.seed,
    max_memory_mb=2048,
)
truth = exact_marginal.log_prob(bounds.x)
out["bdmc"] = {**bounds.summary(), "exact_mean": float(truth.mean()), "seconds": time.perf_counter() - start}
print(
    f"BDMC on {args.bdmc_points} simulated images: {bounds.lower.mean():.3f} <= {truth.mean():.3f} (exact) <= "
    f"{bounds.upper.mean():.3f}, gap {bounds.gap:.3f} nats ({time.perf_counter() - start:.0f} s)"
)
write()

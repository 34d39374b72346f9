"""How well does the aggregate posterior q(z) cover the prior p(z)? Numbers for docs/concepts.md.

Reads a run folder written by `pyro-vae demo` (default runs/demo), rebuilds the exact aggregate
posterior over the training codes, and compares log q(z) at 10,000 draws from q(z) itself with
log q(z) at 10,000 draws from the prior: prior draws that land where q(z) is small decode to
images unlike the training data.

    pyro-vae demo && python experiments/prior_vs_aggregate.py runs/demo

Smoke run (tests/test_experiments.py runs it; runs/smoke is a one-epoch run of pyro-vae train):

    python experiments/prior_vs_aggregate.py runs/smoke   # smoke run
"""

import json
import sys
from pathlib import Path

import torch

import pyro_vae

run = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/demo")
vae = pyro_vae.load(run / "model.pt")
config = json.loads((run / "config.json").read_text())
data = pyro_vae.data.load(config["data"], binarize=config["binarize"], seed=config["seed"])
q_z = pyro_vae.AggregatePosterior.from_data(vae, data.train.binarized(0))

from_q = q_z.sample(10_000, seed=1)
from_prior = pyro_vae.prior_predictive(vae, 10_000, seed=2).z
log_q_own, log_q_prior = q_z.log_prob(from_q), q_z.log_prob(from_prior)
threshold = torch.quantile(log_q_own, 0.01)
print(f"aggregate posterior: {q_z.num_components} components, {q_z.memory_bytes / 1024:.0f} KiB")
print(f"mean log q(z), z ~ q(z): {log_q_own.mean():.3f}")
print(f"mean log q(z), z ~ p(z): {log_q_prior.mean():.3f}")
print(
    f"share of prior draws with q(z) below the 1% quantile of q's own draws: "
    f"{(log_q_prior < threshold).float().mean():.3f} (0.010 if q(z) matched p(z))"
)

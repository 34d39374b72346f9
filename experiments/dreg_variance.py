"""How noisy is the guide's gradient of the importance-weighted bound, with and without DReG?

Loads a trained model (by default the flow-prior row of ``experiments/reproduce.py``), takes one
minibatch of test images and draws the gradient of the K-particle bound with respect to the
encoder's parameters many times, with the ordinary estimator (``elbo="iwae"``) and with the doubly
reparameterised one (``"iwae-dreg"``, Tucker et al. 2019). Prints, for each K, the total variance
of the encoder gradient over draws and its signal-to-noise ratio ``|mean| / sd`` averaged over
parameters, and writes them to a JSON file.

    python experiments/dreg_variance.py --model runs/reproduce/flow/best.pt

Smoke run (tests/test_experiments.py runs it; runs/smoke is a one-epoch run of pyro-vae train):

    python experiments/dreg_variance.py --model runs/smoke/model.pt --particles 1 2 --draws 3 --batch 4 --out /tmp/pyro_vae_smoke/dreg.json   # smoke run
"""

from __future__ import annotations

import argparse

import pyro
import torch

import pyro_vae
from pyro_vae._util.isolation import isolated
from pyro_vae.objectives import make_objective

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--model", default="runs/reproduce/flow/best.pt")
parser.add_argument("--particles", type=int, nargs="+", default=[1, 10, 100])
parser.add_argument("--draws", type=int, default=100)
parser.add_argument("--batch", type=int, default=100)
parser.add_argument("--threads", type=int, default=1)
parser.add_argument("--out", default="docs/results/dreg_variance.json")
args = parser.parse_args()
torch.set_num_threads(args.threads)

vae = pyro_vae.load(args.model)
x = pyro_vae.data.load("fashion-mnist", binarize="dynamic", val_fraction=1 / 6, seed=0).test.x[: args.batch]
params = list(vae.encoder.parameters())


def gradients(name: str, particles: int) -> torch.Tensor:
    objective = make_objective(name, particles)
    draws = []
    with isolated(0), pyro.validation_enabled(False):
        for _ in range(args.draws):
            loss = objective.differentiable_loss(vae.model, vae.guide, x, num_data=len(x))
            draws.append(torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)]))
    return torch.stack(draws)


results = {}
for particles in args.particles:
    row = {}
    for name in ("iwae", "iwae-dreg"):
        g = gradients(name, particles)
        mean, sd = g.mean(0), g.std(0)
        snr = float((mean.abs() / sd.clamp_min(1e-12)).mean())
        row[name] = {"total_variance": float(g.var(0).sum()), "mean_snr": snr}
    results[particles] = row
    ordinary, dreg = row["iwae"], row["iwae-dreg"]
    print(
        f"K={particles:4d}  encoder-gradient variance: iwae {ordinary['total_variance']:.4g}, "
        f"dreg {dreg['total_variance']:.4g} (ratio {dreg['total_variance'] / ordinary['total_variance']:.3f}); "
        f"mean SNR: iwae {ordinary['mean_snr']:.3f}, dreg {dreg['mean_snr']:.3f}"
    )
pyro_vae._util.files.write_json(
    args.out, {"model": args.model, "batch": args.batch, "draws": args.draws, "results": results}
)
print(f"wrote {args.out}")

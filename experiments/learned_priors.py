"""Five priors, same networks and budget, on binarised Fashion-MNIST: NLL, KL(q(z)||p(z)), Fréchet distance.

Each prior (standard normal, learned diagonal Gaussian, mixture of 10 Gaussians, VampPrior with
100 pseudo-inputs started at training images, affine-coupling flow) gets the reference networks
(784-400-50 softplus, Bernoulli), dynamic binarisation, Adam 1e-3, batch 128, 10 epochs of KL
warm-up and the same number of epochs with early stopping on the validation ELBO. Then, on the
test images: importance-weighted NLL (1,000 particles on every test image by default; the
headline row re-estimates the best model with 5,000), KL(q(z)||p(z)) of the training codes
against the learned prior, and the Fréchet distance of 10,000 prior samples.

    python experiments/learned_priors.py --epochs 100 --out-dir runs/priors

Writes docs/results/learned_priors.json and the comparison figure (--figure); each trained model is
saved under OUT_DIR.

Smoke run (tests/test_experiments.py runs it; runs/smoke is a one-epoch run of pyro-vae train):

    python experiments/learned_priors.py --epochs 1 --priors normal --particles 10 --headline-particles 10 --test-points 20 --out-dir /tmp/pyro_vae_smoke/p --out /tmp/pyro_vae_smoke/p.json --figure /tmp/pyro_vae_smoke/p.png   # smoke run
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import pyro_vae
from pyro_vae import diagnostics
from pyro_vae.diagnostics import quality

PRIORS = {
    "normal": {},
    "learned_normal": {},
    "mixture": {"num_components": 10},
    "vamp": {"num_components": 100},
    "flow": {"num_flows": 4, "hidden_dims": [128, 128]},
}

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--epochs", type=int, default=100)
parser.add_argument("--patience", type=int, default=10)
parser.add_argument("--priors", nargs="+", default=list(PRIORS), choices=list(PRIORS))
parser.add_argument("--particles", type=int, default=1000)
parser.add_argument("--headline-particles", type=int, default=5000)
parser.add_argument("--test-points", type=int, default=None, help="evaluate on the first N test images only")
parser.add_argument("--out-dir", default="runs/priors")
parser.add_argument("--out", default="docs/results/learned_priors.json")
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--threads", type=int, default=2)
parser.add_argument("--figure", default="docs/figures/learned_priors_comparison.png")
args = parser.parse_args()
torch.set_num_threads(args.threads)

data = pyro_vae.data.load("fashion-mnist", binarize="dynamic", seed=args.seed)
grey = pyro_vae.data.load("fashion-mnist", binarize="none", seed=args.seed)
classifier = quality.feature_classifier(grey)
test = data.test.x if args.test_points is None else data.test.x[: args.test_points]
train_codes_input = data.train.binarized(0)
out_dir = Path(args.out_dir)
out_path = Path(args.out)
command = (
    f"python experiments/learned_priors.py --epochs {args.epochs} --out-dir {args.out_dir} --threads {args.threads}"
)
results = json.loads(out_path.read_text())["priors"] if out_path.is_file() else {}
evaluated = {}

for name in args.priors:
    path = out_dir / name / "model.pt"
    torch.manual_seed(args.seed)
    if path.is_file():
        vae = pyro_vae.load(path)
        seconds = None
    else:
        vae = pyro_vae.VAE(
            784,
            50,
            hidden_sizes=(400,),
            likelihood="bernoulli",
            prior=name,
            prior_kwargs=PRIORS[name],
            image_shape=(28, 28),
        )
        if name == "vamp":
            vae.prior.initialize_from(train_codes_input, seed=args.seed)
        start = time.perf_counter()
        history = pyro_vae.fit(
            vae,
            data.train,
            val=data.val,
            epochs=args.epochs,
            patience=args.patience,
            kl_warmup_epochs=10,
            seed=args.seed,
            history_path=out_dir / name / "history.csv",
        )
        seconds = time.perf_counter() - start
        pyro_vae.save(vae, path)
    ll = pyro_vae.log_likelihood(vae, test, num_particles=args.particles, seed=args.seed)
    evaluated[name] = ll
    holes = diagnostics.holes(vae, train_codes_input, num_samples=10_000, seed=args.seed)
    drawn = pyro_vae.sample(vae, 10_000, source="prior", seed=args.seed)
    sample_quality = quality.sample_quality(classifier, grey.test.x, drawn.mean)
    results[name] = {
        "prior_kwargs": PRIORS[name],
        "train_seconds": seconds,
        **{f"test_{key}": value for key, value in ll.summary().items()},
        "kl_q_p": holes.kl_q_p,
        "kl_q_p_se": holes.kl_q_p_se,
        "hole_share": holes.hole_share,
        "frechet_distance": sample_quality["frechet_distance"],
        "precision": sample_quality["precision"],
        "recall": sample_quality["recall"],
    }
    print(
        f"{name:15s} NLL {ll.summary()['nll']:.2f} ± {ll.summary()['nll_se']:.2f}  KL(q||p) {holes.kl_q_p:.2f}  "
        f"FD {sample_quality['frechet_distance']:.2f}",
        flush=True,
    )
    out_path.parent.mkdir(parents=True, exist_ok=True)
    pyro_vae._util.files.write_json(out_path, {"priors": results, "command": command})

# Paired comparison on the same test images: differences with standard errors (arviz.compare layout).
table = pyro_vae.compare(evaluated) if len(evaluated) >= 2 else None
if table is not None:
    print(table.to_string(float_format=lambda v: f"{v:.2f}"))
    pyro_vae.plot_comparison(table, args.figure, title="Five priors, 10,000 test images")

best = min(results, key=lambda n: results[n]["test_nll"])
vae = pyro_vae.load(out_dir / best / "model.pt")
headline = pyro_vae.log_likelihood(vae, test, num_particles=args.headline_particles, seed=args.seed + 1, psis=False)
summary = {
    "priors": results,
    "comparison": None if table is None else json.loads(table.to_json(orient="index")),
    "headline": {"prior": best, "num_particles": args.headline_particles, **headline.summary()},
    "command": command,
}
pyro_vae._util.files.write_json(out_path, summary)
print(
    f"headline ({best}, {args.headline_particles} particles): NLL {headline.summary()['nll']:.2f} "
    f"± {headline.summary()['nll_se']:.2f}; wrote {out_path}"
)

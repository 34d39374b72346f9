"""Conditional VAEs and flow guides on binarised Fashion-MNIST, with the same tools as any program.

(a) "Give me sneakers" three ways: the class-conditional VAE at y = sneaker, the sneakers'
    aggregate posterior of an unconditional VAE, and that VAE's prior. Each draws likelihood
    means scored by Fréchet distance, precision and recall against the real test sneakers, in
    the features of the classifier of ``pyro_vae.diagnostics.quality``.
(b) Gaussian guide against inverse-autoregressive-flow guide: test NLL at 5,000 particles, share
    of Pareto k > 0.7 and the amortization gap, for
      * ``vae``          the reference 784-400-50 Bernoulli VAE with a diagonal Gaussian guide;
      * ``vae-iaf``      the same architecture trained with a 2-layer IAF guide;
      * ``vae-iaf-refit`` the decoder of ``vae``, frozen, with an IAF guide trained on it (the
        same model, a richer q).

Every model is trained with ``pyro_vae.fit`` (dynamic binarisation, KL warm-up over 10 epochs,
early stopping after 10 epochs without a better validation ELBO) and checkpointed after every
epoch, so an interrupted run resumes where it stopped; finished evaluations are kept in
``runs/conditional/results.json`` and not repeated.

    python experiments/conditional.py                 # trains what is missing, evaluates, reports

Writes docs/results/conditional.json and docs/figures/conditional_sneakers.png.

Smoke run (tests/test_experiments.py runs it; runs/smoke is a one-epoch run of pyro-vae train):

    python experiments/conditional.py --epochs 1 --refit-epochs 1 --latent-dim 4 --hidden 16 --test-points 20 --gap-points 4 --num 20 --paired-particles 20 --particles 20 --out-dir /tmp/pyro_vae_smoke/c --out /tmp/pyro_vae_smoke/c.json --figure /tmp/pyro_vae_smoke/c.png   # smoke run
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import pyro_vae
from pyro_vae import diagnostics
from pyro_vae.data import one_hot
from pyro_vae.diagnostics import quality
from pyro_vae.diagnostics.plots import image_grid

SNEAKER = 7
CLASSES = 10

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--epochs", type=int, default=100)
parser.add_argument("--refit-epochs", type=int, default=30, help="epochs of the IAF guide on the frozen decoder")
parser.add_argument("--latent-dim", type=int, default=50)
parser.add_argument("--hidden", type=int, default=400)
parser.add_argument("--particles", type=int, default=5000, help="importance samples per test image for the NLL")
parser.add_argument("--test-points", type=int, default=1000, help="test images for the NLL and Pareto k")
parser.add_argument("--gap-points", type=int, default=100, help="test images for the amortization gap")
parser.add_argument("--num", type=int, default=1000, help="generated sneakers per source")
parser.add_argument("--paired-particles", type=int, default=1000, help="particles for the paired comparison")
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--out-dir", default="runs/conditional")
parser.add_argument("--out", default="docs/results/conditional.json")
parser.add_argument("--figure", default="docs/figures/conditional_sneakers.png")
args = parser.parse_args()
torch.set_num_threads(2)

root = Path(args.out_dir)
root.mkdir(parents=True, exist_ok=True)
cache_path = root / "results.json"
cache = json.loads(cache_path.read_text()) if cache_path.exists() else {}


def keep(key: str, value) -> None:
    cache[key] = value
    pyro_vae._util.files.write_json(cache_path, cache)


data = pyro_vae.data.load("fashion-mnist", binarize="dynamic", seed=args.seed)
grey = pyro_vae.data.load("fashion-mnist", binarize="none", seed=args.seed)
labels = {split: one_hot(getattr(data, split).labels, CLASSES) for split in ("train", "val", "test")}
train_codes_input = data.train.binarized(0)


def build(name: str) -> pyro_vae.VAE:
    torch.manual_seed(args.seed)
    options = {
        "vae": {},
        "cvae": {"covariate_dim": CLASSES},
        "vae-iaf": {"guide": "iaf"},
        "vae-iaf-refit": {"guide": "iaf"},
    }[name]
    return pyro_vae.VAE(784, args.latent_dim, hidden_sizes=(args.hidden,), image_shape=(28, 28), **options)


def train(name: str) -> pyro_vae.VAE:
    vae = build(name)
    conditional = vae.covariate_dim > 0
    epochs = args.epochs
    if name == "vae-iaf-refit":
        # The frozen decoder (and prior) of the Gaussian-guide model; encoder and flows are trained.
        base = trained["vae"]
        vae.load_state_dict(
            {**vae.state_dict(), **{k: v for k, v in base.state_dict().items() if not k.startswith("guide_family")}}
        )
        for p in vae.decoder.parameters():
            p.requires_grad_(False)
        epochs = args.refit_epochs
    start = time.perf_counter()
    history = pyro_vae.fit(
        vae,
        data.train,
        covariates={"y": labels["train"]} if conditional else None,
        val=data.val,
        val_covariates={"y": labels["val"]} if conditional else None,
        epochs=epochs,
        batch_size=128,
        lr=1e-3,
        kl_warmup_epochs=0 if name == "vae-iaf-refit" else 10,
        patience=10,
        seed=args.seed,
        checkpoint=root / f"{name}.pt",
        resume=True,
        history_path=root / f"{name}.csv",
    )
    for p in vae.parameters():
        p.requires_grad_(True)
    seconds = sum(history.column("seconds"))
    keep(
        f"train/{name}",
        {
            "epochs_run": len(history.rows),
            "best_epoch": history.best_epoch,
            "best_val_elbo": max(history.column("val_elbo")),
            "seconds": seconds,
            "this_call_seconds": time.perf_counter() - start,
        },
    )
    print(
        f"{name:14s} trained: {len(history.rows)} epochs, best validation ELBO "
        f"{max(history.column('val_elbo')):.2f} at epoch {history.best_epoch}"
    )
    return vae


trained: dict[str, pyro_vae.VAE] = {}
for name in ("vae", "cvae", "vae-iaf", "vae-iaf-refit"):
    trained[name] = train(name)

# ---------------------------------------------------------------- (a) give me sneakers
classifier = quality.feature_classifier(grey)
real = grey.test.x[grey.test.labels == SNEAKER]
vae, cvae = trained["vae"], trained["cvae"]
sneakers_train = train_codes_input[data.train.labels == SNEAKER]
sources = {
    "conditional VAE, prior at y = sneaker": lambda: pyro_vae.sample(
        cvae, args.num, y=one_hot(SNEAKER, CLASSES), seed=args.seed
    ),
    "VAE, aggregate posterior of the training sneakers": lambda: pyro_vae.sample(
        vae, args.num, source=pyro_vae.AggregatePosterior.from_data(vae, sneakers_train), seed=args.seed
    ),
    "VAE, prior": lambda: pyro_vae.sample(vae, args.num, seed=args.seed),
}
grids = {}
for name, draw in sources.items():
    drawn = draw()
    grids[name] = drawn.mean[:10]
    if f"sneakers/{name}" not in cache:
        keep(f"sneakers/{name}", quality.sample_quality(classifier, real, drawn.mean))
    m = cache[f"sneakers/{name}"]
    print(f"{name:52s} FD {m['frechet_distance']:7.2f}  precision {m['precision']:.3f}  recall {m['recall']:.3f}")
half = len(real) // 2
if "sneakers/real test sneakers, one half against the other" not in cache:
    keep(
        "sneakers/real test sneakers, one half against the other",
        quality.sample_quality(classifier, real[:half], real[half:]),
    )
image_grid(
    torch.cat(list(grids.values())),
    (28, 28),
    args.figure,
    title="Sneakers: likelihood means E[x|z] from each source (one row each)",
    row_labels=["cVAE y=7", "agg. sneakers", "prior"],
)

# ---------------------------------------------------------------- (b) Gaussian vs flow guide
test_x = data.test.x[: args.test_points]
GAP_METHOD = "refined within the guide's family (per-point base Gaussian, shared flows kept)"
for name in ("vae", "vae-iaf", "vae-iaf-refit", "cvae"):
    key = f"guide/{name}"
    model = trained[name]
    if key not in cache:
        cov = {"y": labels["test"][: args.test_points]} if model.covariate_dim else None
        start = time.perf_counter()
        ll = pyro_vae.log_likelihood(model, test_x, covariates=cov, num_particles=args.particles, seed=args.seed)
        keep(key, {**ll.summary(), "nll_seconds": time.perf_counter() - start})
    if cache[key].get("gap_method") != GAP_METHOD:
        start = time.perf_counter()
        gap_cov = {"y": labels["test"][: args.gap_points]} if model.covariate_dim else None
        gap = diagnostics.amortization_gap(
            model, test_x[: args.gap_points], covariates=gap_cov, num_steps=300, num_particles=1000, seed=args.seed
        ).summary()
        keep(
            key,
            {
                **cache[key],
                "amortization_gap": gap["amortization_gap"],
                "amortization_gap_se": gap["amortization_gap_se"],
                "approximation_gap": gap["approximation_gap"],
                "approximation_gap_se": gap["approximation_gap_se"],
                "encoder_elbo": gap["encoder_elbo"],
                "refined_elbo": gap["refined_elbo"],
                "gap_points": args.gap_points,
                "gap_method": GAP_METHOD,
                "gap_seconds": time.perf_counter() - start,
            },
        )
for name in ("vae", "vae-iaf", "vae-iaf-refit", "cvae"):
    r = cache[f"guide/{name}"]
    print(
        f"{name:14s} NLL {r['nll']:.2f} ± {r['nll_se']:.2f} (MC {r['nll_mc_se']:.3f})  k>0.7 "
        f"{100 * r['share_k_above_0.7']:.1f}%  amortization gap {r['amortization_gap']:.2f} ± "
        f"{r['amortization_gap_se']:.2f}"
    )

# ---------------------------------------------------------------- paired differences on the same images
if "paired" not in cache:
    results = {}
    for name in ("vae", "vae-iaf", "vae-iaf-refit", "cvae"):
        model = trained[name]
        cov = {"y": labels["test"][: args.test_points]} if model.covariate_dim else None
        results[name] = pyro_vae.log_likelihood(
            model, test_x, covariates=cov, num_particles=args.paired_particles, seed=args.seed
        )
    table = pyro_vae.compare(results)
    keep(
        "paired",
        {
            "num_particles": args.paired_particles,
            "table": {n: {c: float(table.loc[n, c]) for c in ("elpd_diff", "dse", "nll")} for n in table.index},
        },
    )
for name, row in cache["paired"]["table"].items():
    print(
        f"{name:14s} paired: {row['elpd_diff'] / args.test_points:6.3f} ± {row['dse'] / args.test_points:.3f} "
        "nats per image behind the best"
    )

out = {
    "settings": vars(args),
    "classifier_test_accuracy": classifier.test_accuracy,
    "hardware": "CPU, 2 threads",
    **{k: v for k, v in cache.items()},
    "command": "python experiments/conditional.py",
}
pyro_vae._util.files.write_json(args.out, out)
print(f"wrote {args.out} and {args.figure}")

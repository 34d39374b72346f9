"""Where should new samples come from? Sources compared on binarised Fashion-MNIST.

One standard-prior VAE (the reference 784-400-50 Bernoulli model); latent draws from the prior,
the exact aggregate posterior of the training set, Gaussian mixtures with K = 10 and K = 100
fitted to it, and the aggregate posterior of one label's training images. For each source:
Fréchet distance, precision and recall of 10,000 likelihood means against the 10,000 test images
(the label's own test images for the subset), in the features of a classifier trained on the
labels; the memory the sampler holds; and for the model, KL(q(z)||p(z)), KL(p(z)||q(z)) and the
hole share. Image grids of each source.

Is it generation or memorisation? For every source, and for a class-conditional VAE drawing
every class in the training proportions, the data-copying test of Meehan et al. (2020)
(``pyro_vae.diagnostics.quality.data_copying``: 20 k-means cells of the training features, statistic and
p-value) and the nearest-training-neighbour distances of the samples against those of the
held-out test images, in the classifier's features.

    pyro-vae train --data fashion-mnist --binarize dynamic --latent-dim 50 --hidden 400 \\
        --epochs 100 --kl-warmup 10 --patience 10 --out runs/fmnist-50
    python experiments/where_to_sample.py runs/fmnist-50
    # or the models of experiments/conditional.py (same data and split):
    python experiments/where_to_sample.py --model runs/conditional/vae.pt --conditional runs/conditional/cvae.pt

Writes docs/results/where_to_sample.json and docs/figures/where_to_sample.png.

Smoke run (tests/test_experiments.py runs it; runs/smoke is a one-epoch run of pyro-vae train):

    python experiments/where_to_sample.py runs/smoke --cells 3 --num 50 --components 2 --out /tmp/pyro_vae_smoke/w.json --figure /tmp/pyro_vae_smoke/w.png   # smoke run
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

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("run", nargs="?", help="a run folder of pyro-vae train")
parser.add_argument("--model", help="a saved unconditional model instead of a run (binarised Fashion-MNIST)")
parser.add_argument("--conditional", help="a saved class-conditional VAE on the same data, added as a source")
parser.add_argument("--cells", type=int, default=20, help="k-means cells of the data-copying test")
parser.add_argument("--num", type=int, default=10_000, help="generated images per source")
parser.add_argument("--label", type=int, default=7, help="label of the subset source (7 = sneaker)")
parser.add_argument("--components", type=int, nargs="+", default=[10])
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--out", default="docs/results/where_to_sample.json")
parser.add_argument("--figure", default="docs/figures/where_to_sample.png")
args = parser.parse_args()
torch.set_num_threads(2)

if (args.run is None) == (args.model is None):
    parser.error("give a run folder or --model, not both")
if args.run:
    run = Path(args.run)
    loaded = pyro_vae.load_run(run)
    vae, data, config = loaded.vae, loaded.dataset, loaded.config
else:
    run = Path(args.model)
    vae = pyro_vae.load(run)
    config = {"data": "fashion-mnist", "seed": args.seed}
    data = pyro_vae.data.load("fashion-mnist", binarize="dynamic", seed=args.seed)
grey = pyro_vae.data.load(config["data"], binarize="none", seed=config["seed"])  # real images for the metrics
train_codes_input = data.train.binarized(0)

start = time.perf_counter()
classifier = quality.feature_classifier(grey)
print(f"feature classifier: test accuracy {classifier.test_accuracy:.3f} ({time.perf_counter() - start:.0f} s)")

sources = {
    "prior": "prior",
    "aggregate posterior (exact)": pyro_vae.AggregatePosterior.from_data(vae, train_codes_input),
}
memory = {"prior": 0, "aggregate posterior (exact)": sources["aggregate posterior (exact)"].memory_bytes}
fit_seconds = {}
for k in args.components:
    start = time.perf_counter()
    mixture = pyro_vae.LatentMixture.fit(vae, train_codes_input, k, seed=args.seed)
    sources[f"fitted mixture K={k}"] = mixture.distribution()
    memory[f"fitted mixture K={k}"] = mixture.memory_bytes
    fit_seconds[k] = time.perf_counter() - start
subset_name = f"aggregate posterior of label {args.label}"
sources[subset_name] = pyro_vae.AggregatePosterior.from_data(vae, train_codes_input[data.train.labels == args.label])
memory[subset_name] = sources[subset_name].memory_bytes


def draw(name, source):
    if name == CONDITIONAL:
        # Every class in its training proportion: the labels of randomly chosen training images.
        rows = torch.randint(len(data.train.labels), (args.num,), generator=torch.Generator().manual_seed(args.seed))
        return pyro_vae.sample(cvae, args.num, y=one_hot(data.train.labels[rows], 10), seed=args.seed)
    return pyro_vae.sample(vae, args.num, source=source, seed=args.seed)


CONDITIONAL = "conditional VAE, every class"
cvae = pyro_vae.load(args.conditional) if args.conditional else None
if cvae is not None:
    sources[CONDITIONAL] = None
    memory[CONDITIONAL] = 0
results = {}
grids = {}
for name, source in sources.items():
    drawn = draw(name, source)
    subset = name == subset_name
    real = grey.test.x if not subset else grey.test.x[grey.test.labels == args.label]
    train_images = grey.train.x if not subset else grey.train.x[grey.train.labels == args.label]
    metrics = quality.sample_quality(classifier, real, drawn.mean)
    copying = quality.data_copying(
        train_images, real, drawn.mean, classifier=classifier, num_cells=args.cells, seed=args.seed
    )
    results[name] = {**metrics, "memory_bytes": memory[name], "data_copying": copying.summary()}
    grids[name] = drawn.mean[:10]
    c = copying.summary()
    print(
        f"{name:38s} FD {metrics['frechet_distance']:8.2f}  precision {metrics['precision']:.3f}  "
        f"recall {metrics['recall']:.3f}  memory {memory[name] / 1024:9.1f} KiB  copying C_T {c['statistic']:6.2f} "
        f"(p {c['p_value']:.2g}), near copies {100 * c['near_copies']:.1f}%, median NN distance "
        f"{c['nn_generated']['q50']:.2f} vs test {c['nn_test']['q50']:.2f}"
    )

# The reference: held-out real images against the same real set.
half = len(grey.test.x) // 2
reference = quality.sample_quality(classifier, grey.test.x[:half], grey.val.x[:half])

start = time.perf_counter()
holes = diagnostics.holes(vae, train_codes_input, num_samples=10_000, seed=args.seed)
holes_seconds = time.perf_counter() - start
# The threshold's meaning, checked: held-out test codes (one draw of q(z|x) per test image) should fall
# below it at the nominal rate (1%).
test_codes = pyro_vae.AggregatePosterior.from_data(vae, data.test.x).sample_with_components(len(data.test.x), seed=1)[0]
held_out_share = float(
    (sources["aggregate posterior (exact)"].log_prob(test_codes).double() < holes.threshold).double().mean()
)
print(f"held-out test codes below the hole threshold: {100 * held_out_share:.1f}% (nominal 1%)")
print(
    f"KL(q||p) {holes.kl_q_p:.2f} ± {holes.kl_q_p_se:.2f}, KL(p||q) {holes.kl_p_q:.2f} ± {holes.kl_p_q_se:.2f}, "
    f"hole share {holes.hole_share:.3f} ± {holes.hole_share_se:.3f}"
)

out = {
    "run": str(run),
    "classifier_test_accuracy": classifier.test_accuracy,
    "sources": results,
    "real_validation_vs_test": reference,
    "holes": {
        **holes.summary(),
        "held_out_codes_below_threshold": held_out_share,
        "method": "threshold: 1% quantile of leave-one-out log q at the training codes",
    },
    "seconds": {"mixture_fit": fit_seconds, "holes": holes_seconds},
    "command": "python experiments/where_to_sample.py "
    + (
        str(run)
        if args.run
        else f"--model {args.model}" + (f" --conditional {args.conditional}" if args.conditional else "")
    ),
}
Path(args.out).parent.mkdir(parents=True, exist_ok=True)
Path(args.out).write_text(json.dumps(out, indent=1))
rows = torch.cat(list(grids.values()))
image_grid(
    rows,
    vae.image_shape,
    args.figure,
    title="Likelihood means E[x|z], z from each source (one row each)",
    row_labels=[n.replace("aggregate posterior", "agg.").replace("fitted mixture", "GMM") for n in grids],
)
print(
    f"real validation vs test images: FD {reference['frechet_distance']:.2f}, precision {reference['precision']:.3f}, "
    f"recall {reference['recall']:.3f}"
)
print(f"wrote {args.out} and {args.figure}")

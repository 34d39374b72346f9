"""Published one- and two-stochastic-layer results on binarised Fashion-MNIST, reproduced and then beaten.

The reference is the density-estimation table of Norouzi et al. (2020, "Exemplar VAE", Table 2),
whose protocol this script follows for every row:

* an MLP with two gated dense layers of 300 units in encoder and decoder, a 40-dimensional z and
  Bernoulli pixels (``VAE(..., hidden_sizes=(300, 300), activation="gated")``);
* dynamic binarisation of the 50,000 training images (10,000 held out for validation), the test
  set binarised once;
* Adam with lr 5e-4, batch 100, 100 epochs of linear KL warm-up, at most 2,000 epochs, early
  stopping after 50 epochs without a better validation ELBO (the best epoch is kept);
* test NLL by importance sampling with 5,000 samples from the encoder.

Rows (``python experiments/reproduce.py train ROW``):

    standard        standard normal prior, ELBO                 published 228.70 +- 0.15
    vamp            VampPrior with 500 pseudo-inputs, ELBO       published 227.35 +- 0.05
    flow            flow prior (4 affine couplings), ELBO        ours only
    flow-iaf        flow prior and a 2-layer IAF guide, ELBO     ours only
    vamp-iwae       VampPrior, importance-weighted bound (K=10)  ours only
    flow-iaf-iwae   flow prior, IAF guide, K=10 bound            ours only
    flow-iwae       the trained flow row, fine-tuned for 60 epochs with the K=10 bound   ours only
    flow-iwae-dreg  the same fine-tuning with doubly reparameterised gradients (Tucker et al. 2019)   ours only
    flow-iwae-long  flow-iwae continued for 120 more epochs with the K=10 bound at lr 1e-4 (180 in all)   ours only
    flow-iwae-240   flow-iwae-long continued for 60 more epochs at lr 5e-5 (240 in all)   ours only
    hvae            two stochastic layers of 40 (HierarchicalVAE), standard prior   published 227.37
    hvae-vamp       the same with a VampPrior of 500 pseudo-inputs on z2           published 226.72
    hvae-vamp-iwae  hvae-vamp fine-tuned for 60 epochs with the K=10 bound         ours only
    hvae-vamp-iwae-long, hvae-vamp-iwae-240   120 more at lr 1e-4, then 60 at 5e-5  ours only

A fine-tuning row starts from another row's best model (``best.pt``; train that row first) and
trains a fixed number of epochs at lr 2e-4 (1e-4 for the -long rows, 5e-5 for the -240 rows) without
warm-up. There is no early stopping, and the last epoch is the model evaluated (nothing is chosen
on held-out data). Its validation column is the K=10 importance-weighted bound it trains (the
ELBO for flow-iwae, flow-iwae-dreg and flow-iwae-long, trained before fit validated that bound).

Training checkpoints every epoch under ``runs/reproduce/ROW/`` and resumes where it stopped, so a
row can be trained across several sittings. ``evaluate ROW`` scores the best epoch on the test set
(cached), and ``evaluate ROW --interim`` the best epoch so far of a row still training (read from
its checkpoint, stored apart). ``ais ROW`` confirms the estimate by annealed importance sampling on
the first test images, and ``report`` writes ``docs/results/reproduce.json``.

    python experiments/reproduce.py train standard            # resumes if interrupted
    python experiments/reproduce.py evaluate standard --test-points 10000 --particles 5000
    python experiments/reproduce.py ais standard      # AIS on 200 test images, against importance sampling
    python experiments/reproduce.py report

Smoke run (tests/test_experiments.py runs it; runs/smoke is a one-epoch run of pyro-vae train):

    python experiments/reproduce.py train standard --epochs 1 --out-dir /tmp/pyro_vae_smoke/r   # smoke run
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
import time
from pathlib import Path

import torch

import pyro_vae

PUBLISHED = {  # Norouzi et al. 2020, Table 2, dynamically binarised Fashion-MNIST, test NLL in nats
    "standard": (228.70, 0.15),
    "vamp": (227.35, 0.05),
    "exemplar": (226.75, 0.07),
    # The same table's two-stochastic-layer (HVAE) rows; their standard errors are not restated here.
    "hvae": (227.37, None),
    "hvae-vamp": (226.72, None),
    "exemplar-hvae": (226.53, None),
}


def fine_tuning(start_from: str, *, lr: float, epochs: int, elbo: str = "iwae") -> dict:
    """A row that trains another row's best model for a fixed budget on the K=10 bound, without
    warm-up or early stopping (the last epoch is the model evaluated)."""
    fit = {"elbo": elbo, "num_particles": 10, "lr": lr, "epochs": epochs, "kl_warmup_epochs": 0.0}
    return {"start_from": start_from, "fit": {**fit, "patience": None, "restore_best": False}}


ROWS = {
    "standard": {"model": {}, "fit": {}},
    "hvae": {"model": {}, "hierarchical": True, "fit": {}},
    "hvae-vamp": {"model": {"prior": "vamp", "prior_kwargs": {"num_components": 500}}, "hierarchical": True, "fit": {}},
    "hvae-vamp-iwae": fine_tuning("hvae-vamp", lr=2e-4, epochs=60),
    # The one-layer chain's schedule (flow-iwae-long, flow-iwae-240), fixed before any of these ran.
    "hvae-vamp-iwae-long": fine_tuning("hvae-vamp-iwae", lr=1e-4, epochs=120),
    "hvae-vamp-iwae-240": fine_tuning("hvae-vamp-iwae-long", lr=5e-5, epochs=60),
    "vamp": {"model": {"prior": "vamp", "prior_kwargs": {"num_components": 500}}, "fit": {}},
    "flow": {"model": {"prior": "flow"}, "fit": {}},
    "flow-iaf": {"model": {"prior": "flow", "guide": "iaf"}, "fit": {}},
    "vamp-iwae": {
        "model": {"prior": "vamp", "prior_kwargs": {"num_components": 500}},
        "fit": {"elbo": "iwae", "num_particles": 10},
    },
    "flow-iaf-iwae": {"model": {"prior": "flow", "guide": "iaf"}, "fit": {"elbo": "iwae", "num_particles": 10}},
    "flow-iwae": fine_tuning("flow", lr=2e-4, epochs=60),
    "flow-iwae-dreg": fine_tuning("flow", lr=2e-4, epochs=60, elbo="iwae-dreg"),
    "flow-iwae-long": fine_tuning("flow-iwae", lr=1e-4, epochs=120),
    "flow-iwae-240": fine_tuning("flow-iwae-long", lr=5e-5, epochs=60),
}

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("command", choices=["train", "evaluate", "ais", "report"])
parser.add_argument("row", nargs="?", choices=sorted(ROWS))
parser.add_argument(
    "--epochs",
    type=int,
    default=2000,
    help="most epochs (early stopping usually ends sooner; a fine-tuning row has its own, lower, number)",
)
parser.add_argument("--patience", type=int, default=50)
parser.add_argument("--warmup", type=float, default=100.0, help="epochs of KL warm-up")
parser.add_argument("--test-points", type=int, default=10000)
parser.add_argument("--particles", type=int, default=5000)
parser.add_argument("--threads", type=int, default=1)
parser.add_argument("--ais-points", type=int, default=200, help="test images confirmed by AIS")
parser.add_argument("--ais-chains", type=int, default=16)
parser.add_argument("--ais-steps", type=int, default=1000)
parser.add_argument(
    "--interim",
    action="store_true",
    help="evaluate: score the best epoch so far of a row still training (its checkpoint)",
)
parser.add_argument("--device", default="cpu")
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--out-dir", default="runs/reproduce")
parser.add_argument("--out", default="docs/results/reproduce.json")
args = parser.parse_args()
if args.command != "report" and args.row is None:
    parser.error(f"{args.command} needs a row: one of {sorted(ROWS)}")
torch.set_num_threads(args.threads)
root = Path(args.out_dir)
root.mkdir(parents=True, exist_ok=True)
results_path = root / "results.json"


def results() -> dict:
    return json.loads(results_path.read_text()) if results_path.exists() else {}


def keep(key: str, value) -> None:
    stored = results()
    stored[key] = value
    pyro_vae._util.files.write_json(results_path, stored)


def hardware() -> str:
    if args.device.startswith("cuda"):
        return torch.cuda.get_device_name(0)
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} thread(s)"


def load_data():
    return pyro_vae.data.load("fashion-mnist", binarize="dynamic", val_fraction=1 / 6, seed=args.seed)


def build(row: str, data) -> pyro_vae.VAE:
    torch.manual_seed(args.seed)
    # Two stochastic layers of 40 units each for the HVAE rows (Tomczak & Welling 2018), else one.
    kind, extra = (
        (pyro_vae.HierarchicalVAE, {"bottom_dim": 40}) if ROWS[row].get("hierarchical") else (pyro_vae.VAE, {})
    )
    vae = kind(
        784, 40, hidden_sizes=(300, 300), activation="gated", image_shape=(28, 28), **extra, **ROWS[row]["model"]
    )
    if vae.prior.name == "vamp":
        vae.prior.initialize_from(data.train.x, seed=args.seed)
    return vae.to(args.device)


def train(row: str) -> pyro_vae.VAE:
    data = load_data()
    spec = ROWS[row]
    if "start_from" in spec:
        start = root / spec["start_from"] / "best.pt"
        if not start.exists():
            raise SystemExit(f"{row} fine-tunes {spec['start_from']}: train that row first ({start} is missing).")
        vae = pyro_vae.load(start).to(args.device)
    else:
        vae = build(row, data)
    folder = root / row
    folder.mkdir(exist_ok=True)
    settings = {
        "epochs": args.epochs,
        "lr": 5e-4,
        "kl_warmup_epochs": args.warmup,
        "patience": args.patience,
        **spec["fit"],
    }
    settings["epochs"] = min(settings["epochs"], args.epochs)  # --epochs caps every row (smoke runs)
    history = pyro_vae.fit(
        vae,
        data.train,
        val=data.val,
        batch_size=100,
        seed=args.seed,
        checkpoint=folder / "checkpoint.pt",
        resume=True,
        history_path=folder / "history.csv",
        progress="lines",
        **settings,
    )
    pyro_vae.save(vae, folder / "best.pt")
    keep(
        f"train/{row}",
        {
            "epochs_run": len(history.rows),
            "best_epoch": history.best_epoch,
            "stopped_early": history.stopped_early,
            "best_val_elbo": max(history.column("val_elbo")),
            "last_val_elbo": history.rows[-1]["val_elbo"],
            "train_seconds": sum(history.column("seconds")),
            "hardware": hardware(),
            "start_from": spec.get("start_from"),
            "settings": {"batch_size": 100, **settings},
        },
    )
    print(
        f"{row}: {len(history.rows)} epochs, best validation ELBO {max(history.column('val_elbo')):.2f} "
        f"at epoch {history.best_epoch}, stopped early: {history.stopped_early}"
    )
    return vae


def evaluate(row: str) -> None:
    data = load_data()
    if args.interim:  # the best epoch so far of a run that is still training
        with tempfile.TemporaryDirectory() as folder:  # a snapshot, so both reads see the same epoch
            checkpoint = shutil.copy(root / row / "checkpoint.pt", Path(folder) / "checkpoint.pt")
            vae = pyro_vae.load(checkpoint, best=True).to(args.device)
            training = pyro_vae.io.checkpoint.read_checkpoint(checkpoint)["training"]
        key, extra = (
            f"interim/{row}",
            {
                "best_epoch": training["best_epoch"],
                "epochs_run": training["epoch"],
                "best_val_elbo": training["best_val"],
            },
        )
    else:
        vae = pyro_vae.load(root / row / "best.pt").to(args.device)
        key, extra = f"test/{row}", {}
    test = data.test.x[: args.test_points].to(args.device)
    start = time.perf_counter()
    ll = pyro_vae.log_likelihood(vae, test, num_particles=args.particles, seed=args.seed)
    summary = ll.summary()
    keep(
        key,
        {
            **summary,
            **extra,
            "test_points": len(test),
            "particles": args.particles,
            "seconds": time.perf_counter() - start,
            "hardware": hardware(),
        },
    )
    which = f"{row} (best epoch {extra['best_epoch']} of {extra['epochs_run']} so far)" if args.interim else row
    print(
        f"{which}: test NLL {summary['nll']:.2f} ± {summary['nll_se']:.2f} over {len(test)} images "
        f"({args.particles} particles), Pareto k > 0.7 for {100 * summary['share_k_above_0.7']:.1f}%"
    )


def confirm_with_ais(row: str) -> None:
    """AIS (from the guide, HMC) on the first test images, against importance sampling on the same images."""
    data = load_data()
    vae = pyro_vae.load(root / row / "best.pt").to(args.device)
    test = data.test.x[: args.ais_points].to(args.device)
    start = time.perf_counter()
    ais = pyro_vae.log_likelihood(
        vae,
        test,
        method="ais",
        num_particles=args.ais_chains,
        ais_steps=args.ais_steps,
        seed=args.seed,
        max_memory_mb=1024,
    )
    seconds = time.perf_counter() - start
    importance = pyro_vae.log_likelihood(vae, test, num_particles=args.particles, seed=args.seed)
    difference = ais.log_px - importance.log_px
    keep(
        f"ais/{row}",
        {
            **ais.summary(),
            "test_points": len(test),
            "seconds": seconds,
            "hardware": hardware(),
            "importance_nll_same_images": -importance.mean,
            "ais_minus_importance": float(difference.mean()),
            "ais_minus_importance_se": float(difference.std() / len(test) ** 0.5),
        },
    )
    print(
        f"{row}: AIS NLL {-ais.mean:.2f} on {len(test)} test images, importance sampling {-importance.mean:.2f} "
        f"on the same images (difference {float(difference.mean()):.3f} ± "
        f"{float(difference.std() / len(test) ** 0.5):.3f})"
    )


def command(row: str) -> str:
    """The commands that produce ``row`` from nothing (a fine-tuning row trains the rows it starts from first)."""
    chain = [row]
    while "start_from" in ROWS[chain[0]]:
        chain.insert(0, ROWS[chain[0]]["start_from"])
    trains = " && ".join(f"python experiments/reproduce.py train {name}" for name in chain)
    return f"{trains} && python experiments/reproduce.py evaluate {row}"


def report() -> None:
    stored = results()
    table = {}
    for row in ROWS:
        trained, tested = stored.get(f"train/{row}"), stored.get(f"test/{row}")
        if trained is None and tested is None and f"interim/{row}" not in stored:
            continue
        table[row] = {
            "published": PUBLISHED.get(row),
            "train": trained,
            "test": tested,
            "ais": stored.get(f"ais/{row}"),
            "interim": stored.get(f"interim/{row}"),
            "command": command(row),
        }
    out = {"protocol": __doc__.split("Rows")[0].strip(), "published": PUBLISHED, "rows": table}
    pyro_vae._util.files.write_json(args.out, out)
    for row, entry in table.items():
        test = entry["test"]
        interim = entry["interim"]
        ours = (
            f"{test['nll']:.2f} ± {test['nll_se']:.2f}"
            if test
            else f"interim {interim['nll']:.2f} (best epoch {interim['best_epoch']} of {interim['epochs_run']})"
            if interim
            else "not evaluated"
        )
        published = f"{entry['published'][0]:.2f}" if entry["published"] else "-"
        print(f"{row:14s} ours {ours:18s} published {published}")
    print(f"wrote {args.out}")


{
    "train": lambda: train(args.row),
    "evaluate": lambda: evaluate(args.row),
    "ais": lambda: confirm_with_ais(args.row),
    "report": report,
}[args.command]()

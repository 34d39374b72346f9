"""Epoch time of data-parallel training on 1, 2, ... processes (torchrun, gloo on CPU or NCCL on GPU).

Each configuration trains the reference 784-400-50 Bernoulli VAE on dynamically binarised
Fashion-MNIST for ``--epochs`` epochs through the public entry point,
``torchrun --standalone --nproc_per_node=P -m pyro_vae.cli train ...``, with ``--batch-size`` per
process and one thread per process. The figure is the median epoch time after the first
(``history.csv``), and the speed-up against one process.

    python experiments/benchmarks/distributed.py --processes 1 2          # this machine's 2 cores
    python experiments/benchmarks/distributed.py --processes 1 2 4 8      # a 16-core machine

Smoke run (tests/test_experiments.py runs it; runs/smoke is a one-epoch run of pyro-vae train):

    python experiments/benchmarks/distributed.py --processes 1 --epochs 1   # smoke run
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
parser.add_argument("--epochs", type=int, default=3)
parser.add_argument("--batch-size", type=int, default=128, help="per process")
parser.add_argument("--data", default="fashion-mnist")
parser.add_argument("--device", default="cpu")
args = parser.parse_args()

results = {}
for processes in args.processes:
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "run"
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={processes}",
            "-m",
            "pyro_vae.cli",
            "train",
            "--data",
            args.data,
            "--binarize",
            "dynamic",
            "--latent-dim",
            "50",
            "--hidden",
            "400",
            "--epochs",
            str(args.epochs),
            "--batch-size",
            str(args.batch_size),
            "--device",
            args.device,
            "--out",
            str(out),
        ]
        done = subprocess.run(command, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"{processes} processes failed:\n{done.stderr[-2000:]}")
        with open(out / "history.csv") as handle:
            seconds = [float(row["seconds"]) for row in csv.DictReader(handle)]
    results[processes] = statistics.median(seconds[1:] or seconds)
    print(
        f"{processes} process(es): median epoch {results[processes]:.2f} s, speed-up "
        f"{results[args.processes[0]] / results[processes]:.2f}x",
        flush=True,
    )

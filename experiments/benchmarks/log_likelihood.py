"""Benchmark: importance-weighted log p(x) on 1,000 binarised Fashion-MNIST test images.

Times ``pyro_vae.log_likelihood`` (1,000 particles, 784-400-50 softplus Bernoulli VAE, 2 threads)
against, in the same process and alternating:

(a) the design of pythae's ``get_nll``: a Python loop over data points; for each point, particles
    in batches of 100, the point replicated and re-encoded per batch;
(a') the same loop with all particles of a point in one batch, encoded once (the fastest a
    per-point loop can be);
(b) a hand-vectorised PyTorch estimate over chunks of (points x particles), the same chunks as
    ``pyro_vae`` uses.

Every method estimates the same quantity; the script checks they agree within Monte Carlo error.
Peak memory (the rise of the process's peak resident set size during one call) is measured for
two ``max_memory_mb`` settings in fresh subprocesses.

    python experiments/benchmarks/log_likelihood.py --repeats 3

Smoke run (tests/test_experiments.py runs it; runs/smoke is a one-epoch run of pyro-vae train):

    python experiments/benchmarks/log_likelihood.py --points 4 --particles 200 --repeats 1 --memory-settings 64   # smoke run
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import pyro_vae
from pyro_vae._util.arviz_compat import load_pareto
from pyro_vae.evaluate import chunk_plan

PYTHAE_PARTICLE_BATCH = 100  # pythae's default batch_size in get_nll


def build(model_path: str | None) -> pyro_vae.VAE:
    if model_path:
        return pyro_vae.load(model_path)
    torch.manual_seed(0)
    return pyro_vae.VAE(784, 50, hidden_sizes=(400,), likelihood="bernoulli")


def _log_weights_plain(vae, x, z, loc, scale):
    """log p(x|z) + log p(z) - log q(z|x) with torch alone; z has shape (..., L)."""
    logits = vae.decoder(z)
    log_px_z = -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none").sum(-1)
    log_pz = -0.5 * (z**2).sum(-1) - 0.5 * z.shape[-1] * math.log(2 * math.pi)
    log_qz = torch.distributions.Normal(loc, scale).log_prob(z).sum(-1)
    return log_px_z + log_pz - log_qz


@torch.no_grad()
def per_point_loop(vae, x, particles, batch):
    """(a) / (a'): one data point at a time; ``batch`` particles per decoder call."""
    out = torch.empty(len(x), dtype=torch.float64)
    for i in range(len(x)):
        point = x[i : i + 1]
        pieces = []
        for _ in range(particles // batch):
            if batch < particles:  # pythae replicates the point and re-encodes it per batch
                replicated = point.expand(batch, -1).contiguous()
                loc, scale = vae.encode(replicated)
            else:
                loc, scale = vae.encode(point)
            z = loc + scale * torch.randn(batch, loc.shape[-1])
            pieces.append(_log_weights_plain(vae, point, z, loc, scale))
        lw = torch.cat(pieces)
        out[i] = torch.logsumexp(lw.double(), 0) - math.log(particles)
    return out


@torch.no_grad()
def hand_vectorised(vae, x, particles, points_per_chunk):
    """(b): chunks of points, all particles of a chunk in one decoder call."""
    out = []
    for start in range(0, len(x), points_per_chunk):
        chunk = x[start : start + points_per_chunk]
        loc, scale = vae.encode(chunk)
        z = loc + scale * torch.randn(particles, *loc.shape)
        lw = _log_weights_plain(vae, chunk, z, loc, scale)  # (S, B)
        out.append(torch.logsumexp(lw.double(), 0) - math.log(particles))
    return torch.cat(out)


def measure_memory(args) -> None:
    """Child process: peak RSS rise during one pyro_vae.log_likelihood call, printed as JSON.

    With Pareto k (the default call) the modules that fit it are loaded first and their own memory
    reported apart (``import_mb``, once per process): the rise is what the call's work adds."""
    torch.set_num_threads(2)
    vae = build(args.model)
    x = load_images(args.points)
    psis = bool(args.measure_psis)
    loaded = _status_kib("VmRSS")
    if psis:
        load_pareto()
    before = _status_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    start = time.perf_counter()
    pyro_vae.log_likelihood(vae, x, num_particles=args.particles, psis=psis, max_memory_mb=args.measure_memory)
    seconds = time.perf_counter() - start
    peak = _status_kib("VmHWM")
    print(
        json.dumps(
            {
                "max_memory_mb": args.measure_memory,
                "psis": psis,
                "plan": chunk_plan(vae, args.particles, args.measure_memory),
                "peak_rise_mb": (peak - before) / 1024,
                "import_mb": (before - loaded) / 1024,
                "allowance_mb": 4 * args.measure_memory + 128,
                "seconds": seconds,
            }
        )
    )


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def load_images(points: int) -> torch.Tensor:
    return pyro_vae.data.load("fashion-mnist", binarize="fixed", seed=0).test.x[:points]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1000)
    parser.add_argument("--particles", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default=None, help="a saved model (default: a freshly initialised one)")
    parser.add_argument("--memory-settings", type=float, nargs="+", default=(16.0, 64.0, 256.0))
    parser.add_argument("--measure-memory", type=float, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--measure-psis", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    if args.measure_memory is not None:
        return measure_memory(args)

    torch.set_num_threads(2)
    vae = build(args.model)
    x = load_images(args.points)
    points_per_chunk, _ = chunk_plan(vae, args.particles, 64.0)
    methods = {
        "pyro_vae": lambda: pyro_vae.log_likelihood(vae, x, num_particles=args.particles, psis=False, seed=1).log_px,
        "(a) per-point loop, pythae design": lambda: per_point_loop(vae, x, args.particles, PYTHAE_PARTICLE_BATCH),
        "(a') per-point loop, one batch per point": lambda: per_point_loop(vae, x, args.particles, args.particles),
        "(b) hand-vectorised PyTorch": lambda: hand_vectorised(vae, x, args.particles, points_per_chunk),
        "pyro_vae with Pareto k": lambda: pyro_vae.log_likelihood(vae, x, num_particles=args.particles, seed=1).log_px,
    }
    times = {name: [] for name in methods}
    estimates = {}
    methods["pyro_vae"]()  # warm-up
    for _ in range(args.repeats):
        for name, method in methods.items():
            torch.manual_seed(len(times[name]))
            start = time.perf_counter()
            estimates[name] = method()
            times[name].append(time.perf_counter() - start)
    ours = times["pyro_vae"]
    print(
        f"{args.points} binarised Fashion-MNIST test images, {args.particles} particles, "
        f"{args.repeats} alternating repetitions, 2 threads; chunk = {points_per_chunk} points x {args.particles} particles"
    )
    print(f"{'method':45s} {'median s':>9s} {'ratio to pyro_vae':>18s} {'mean log p(x)':>14s}")
    for name in methods:
        ratio = statistics.median(t / o for t, o in zip(times[name], ours))
        print(f"{name:45s} {statistics.median(times[name]):9.2f} {ratio:18.2f} {float(estimates[name].mean()):14.3f}")
    ratio = lambda name: statistics.median(t / o for t, o in zip(times[name], ours))  # noqa: E731
    print(f"pyro_vae is {ratio('(a) per-point loop, pythae design'):.2f}x faster than (a) (target: at least 1.5x)")
    print(f"pyro_vae takes {1 / ratio('(b) hand-vectorised PyTorch'):.2f}x the time of (b) (target: at most 1.10x)")
    spread = max(float(e.mean()) for e in estimates.values()) - min(float(e.mean()) for e in estimates.values())
    print(f"largest difference between the methods' mean estimates: {spread:.3f} nats")

    print("\npeak memory of one pyro_vae.log_likelihood call (fresh process each):")
    memory = []
    for setting in args.memory_settings:
        for psis in (1, 0):
            command = [
                sys.executable,
                __file__,
                "--points",
                str(args.points),
                "--particles",
                str(args.particles),
                "--measure-memory",
                str(setting),
                "--measure-psis",
                str(psis),
            ] + (["--model", args.model] if args.model else [])
            row = json.loads(
                subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
            )
            memory.append(row)
            print(
                f"  max_memory_mb={setting:6.0f}, Pareto k {'on ' if psis else 'off'}: chunk {row['plan'][0]} points x "
                f"{row['plan'][1]} particles, peak rise {row['peak_rise_mb']:.0f} MB (allowance "
                f"{row['allowance_mb']:.0f} MB; modules loaded before it {row['import_mb']:.0f} MB), {row['seconds']:.2f} s"
            )
    if args.json:
        summary = {
            name: {"median_seconds": statistics.median(times[name]), "median_ratio_to_pyro_vae": ratio(name)}
            for name in methods
        }
        Path(args.json).write_text(json.dumps({"times": summary, "memory": memory}, indent=1) + "\n")


if __name__ == "__main__":
    main()

"""One training epoch of pyro_vae.fit against a plain-PyTorch VAE with identical networks.

Reference set-up (design notes): MLP 784-400-50 softplus, Bernoulli likelihood, batch 128,
Adam 1e-3, 2 CPU threads, binarised Fashion-MNIST (54,000 training images). Runs alternate in one
process; the printed figure is the median over repetitions of (pyro_vae time / plain time).

The plain loop is the usual hand-written VAE: reparameterised z, Bernoulli log-likelihood via
binary_cross_entropy_with_logits, analytic Gaussian KL, torch.optim.Adam. pyro_vae runs SVI with
Trace_ELBO (Monte Carlo KL, the library default), TraceMeanField_ELBO, and Trace_ELBO compiled
(``fit(jit=True)``: Pyro's JitTrace_ELBO; the whole epoch is timed, its one-off tracing included). With ``--compile`` a last row
runs the plain loop with ``torch.compile``d networks, and its ratio to eager plain is printed too.

    python experiments/benchmarks/train_step.py                 # full epochs, 5 repetitions
    python experiments/benchmarks/train_step.py --quick         # 20 batches, a smoke test
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from torch.nn import functional as F

import pyro_vae


def plain_epoch(encoder, decoder, x, batch_size, lr, seed):
    optimizer = torch.optim.Adam([*encoder.parameters(), *decoder.parameters()], lr=lr)
    n = len(x)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    for start in range(0, n, batch_size):
        xb = x[order[start : start + batch_size]]
        loc, scale = encoder(xb)
        z = loc + scale * torch.randn_like(loc)
        log_lik = -F.binary_cross_entropy_with_logits(decoder(z), xb, reduction="none").sum(-1)
        kl = 0.5 * (loc.pow(2) + scale.pow(2) - 1).sum(-1) - scale.log().sum(-1)
        loss = -(log_lik - kl).sum() * (n / len(xb))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="20 batches per run instead of a full epoch")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--compile", action="store_true", help="add the plain loop with torch.compile'd networks")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    x = pyro_vae.data.load("fashion-mnist", binarize="fixed").train.x
    if args.quick:
        x = x[: 20 * 128]
    batch_size, lr, hidden, latent = 128, 1e-3, (400,), 50

    def new_vae():
        return pyro_vae.VAE(784, latent, hidden_sizes=hidden, likelihood="bernoulli")

    runs = {
        "plain": lambda rep: (lambda v: plain_epoch(v.encoder, v.decoder, x, batch_size, lr, rep))(new_vae()),
        "pyro_vae (Trace_ELBO)": lambda rep: pyro_vae.fit(new_vae(), x, epochs=1, batch_size=batch_size, lr=lr, seed=rep, progress=False),
        "pyro_vae (TraceMeanField_ELBO)": lambda rep: pyro_vae.fit(new_vae(), x, epochs=1, batch_size=batch_size, lr=lr, seed=rep, elbo="meanfield", progress=False),
        "pyro_vae (JitTrace_ELBO)": lambda rep: pyro_vae.fit(new_vae(), x, epochs=1, batch_size=batch_size, lr=lr, seed=rep, jit=True, progress=False),
    }  # fmt: skip
    if args.compile:
        compiled = new_vae()
        encoder, decoder = torch.compile(compiled.encoder), torch.compile(compiled.decoder)
        plain_epoch(encoder, decoder, x[: 4 * batch_size], batch_size, lr, 0)  # compiles, outside the timing
        runs["plain (torch.compile)"] = lambda rep: plain_epoch(encoder, decoder, x, batch_size, lr, rep)
    times: dict[str, list[float]] = {name: [] for name in runs}
    runs["plain"](0)  # warm-up: allocator, thread pool, lazy imports
    for rep in range(args.repeats):
        for name, run in runs.items():
            torch.manual_seed(rep)
            start = time.perf_counter()
            run(rep)
            times[name].append(time.perf_counter() - start)

    print(f"{len(x)} images, batch {batch_size}, {args.threads} threads, {args.repeats} alternating repetitions")
    results = {}
    for name, values in times.items():
        ratios = [t / p for t, p in zip(values, times["plain"])]
        results[name] = {"median_seconds": statistics.median(values), "median_ratio": statistics.median(ratios),
                         "ratios": ratios}  # fmt: skip
        print(f"{name:36s} median {statistics.median(values):7.3f} s   ratio to plain {statistics.median(ratios):.3f}"
              f"   (per repetition: {', '.join(f'{r:.2f}' for r in ratios)})")  # fmt: skip
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=1)


if __name__ == "__main__":
    main()

"""One training epoch of pyro_vae.fit against a plain-PyTorch VAE with identical networks.

Reference set-up (design notes): MLP 784-400-50 softplus, Bernoulli likelihood, batch 128,
Adam 1e-3, 2 CPU threads, binarised Fashion-MNIST (54,000 training images). Runs alternate in one
process after a warm-up, in forward and reversed order by turns; the printed figures are medians
over repetitions of per-repetition ratios (pyro_vae time / plain time).

The plain loop is the usual hand-written VAE: reparameterised z, Bernoulli log-likelihood via
binary_cross_entropy_with_logits, analytic Gaussian KL, torch.optim.Adam with its default kernel;
a second row uses Adam's fused kernel (the fastest plain loop on a CPU, and what pyro_vae uses).
pyro_vae rows:

* default -- ``fit(vae, x)``: the "trace" objective computed from the VAE's parts
  (``DirectTraceELBO``, Trace_ELBO's estimator without effect handlers);
* ``direct=False`` -- the same objective through Pyro's ``Trace_ELBO`` (traces and handlers);
* ``elbo="meanfield"`` (the closed-form KL) from the VAE's parts, and through Pyro's
  ``TraceMeanField_ELBO``;
* ``JitTrace_ELBO`` (``fit(jit=True)``), Pyro's compiled objective;
* a hand-written Pyro program (the same networks registered with ``pyro.module``) through
  ``fit(model, x, guide=guide)``.

Two times are taken for pyro_vae: the epoch alone (the ``seconds`` of its history row, which holds
the whole epoch loop: minibatches, steps, the divergence checks) and the whole ``fit`` call, which
adds the one-off work before the first epoch (data checks, initialisation from data, tracing). With
``--compile`` two more rows run the plain loop and pyro_vae with ``torch.compile``d networks.

    python experiments/benchmarks/train_step.py                 # full epochs, 5 repetitions

Smoke run (tests/test_experiments.py runs it; runs/smoke is a one-epoch run of pyro-vae train):

    python experiments/benchmarks/train_step.py --quick --repeats 1   # smoke run
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import pyro
import pyro.distributions as dist
import torch
from torch.nn import functional as F

import pyro_vae


def plain_epoch(encoder, decoder, x, batch_size, lr, seed, fused=None):
    optimizer = torch.optim.Adam([*encoder.parameters(), *decoder.parameters()], lr=lr, fused=fused)
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


def program_for(vae):
    """The reference VAE as a hand-written Pyro program over the same networks."""
    encoder, decoder, latent = vae.encoder, vae.decoder, vae.latent_dim

    def model(x, indices=None, num_data=None):
        pyro.module("decoder", decoder)
        with pyro.plate("data", num_data, subsample=indices):
            z = pyro.sample("z", dist.Normal(x.new_zeros(()), 1.0).expand([len(x), latent]).to_event(1))
            pyro.sample("x", dist.Bernoulli(logits=decoder(z)).to_event(1), obs=x)

    def guide(x, indices=None, num_data=None):
        pyro.module("encoder", encoder)
        with pyro.plate("data", num_data, subsample=indices):
            loc, scale = encoder(x)
            pyro.sample("z", dist.Normal(loc, scale).to_event(1))

    return model, guide


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

    def fit(rep, **options):  # the epoch's own time, from the history (setup and tracing excluded)
        return pyro_vae.fit(
            new_vae(), x, epochs=1, batch_size=batch_size, lr=lr, seed=rep, progress=False, **options
        ).rows[0]["seconds"]

    def fit_program(rep):
        pyro.clear_param_store()
        model, guide = program_for(new_vae())
        return pyro_vae.fit(
            model, x, guide=guide, epochs=1, batch_size=batch_size, lr=lr, seed=rep, progress=False
        ).rows[0]["seconds"]

    runs = {
        "plain": lambda rep: (lambda v: plain_epoch(v.encoder, v.decoder, x, batch_size, lr, rep))(new_vae()),
        "plain (fused Adam)": lambda rep: (
            lambda v: plain_epoch(v.encoder, v.decoder, x, batch_size, lr, rep, fused=True)
        )(new_vae()),
        "pyro_vae default (direct ELBO)": lambda rep: fit(rep),
        "pyro_vae Trace_ELBO (direct=False)": lambda rep: fit(rep, direct=False),
        "pyro_vae meanfield (direct)": lambda rep: fit(rep, elbo="meanfield"),
        "pyro_vae TraceMeanField_ELBO": lambda rep: fit(rep, elbo="meanfield", direct=False),
        "pyro_vae (JitTrace_ELBO)": lambda rep: fit(rep, jit=True),
        "hand-written program via fit": lambda rep: fit_program(rep),
    }
    if args.compile:
        compiled = new_vae()
        encoder, decoder = torch.compile(compiled.encoder), torch.compile(compiled.decoder)
        plain_epoch(encoder, decoder, x[: 4 * batch_size], batch_size, lr, 0)  # compiles, outside the timing
        runs["plain (torch.compile)"] = lambda rep: plain_epoch(encoder, decoder, x, batch_size, lr, rep)

        # One compiled model, trained on by every repetition: a fresh torch.compile would recompile each time.
        fresh = new_vae()
        warm = pyro_vae.VAE(
            784,
            latent,
            hidden_sizes=hidden,
            likelihood="bernoulli",
            encoder=torch.compile(fresh.encoder),
            decoder=torch.compile(fresh.decoder),
        )
        # Compiles for the full and the last, partial, minibatch, outside the timing.
        pyro_vae.fit(warm, x[: 2 * batch_size + len(x) % batch_size], epochs=1, batch_size=batch_size, progress=False)
        runs["pyro_vae (torch.compile'd networks)"] = lambda rep: pyro_vae.fit(
            warm, x, epochs=1, batch_size=batch_size, lr=lr, seed=rep, progress=False
        ).rows[0]["seconds"]
    calls: dict[str, list[float]] = {name: [] for name in runs}  # the whole call, setup included
    epochs: dict[str, list[float]] = {name: [] for name in runs}  # the training epoch alone
    for run in runs.values():  # warm-up: allocator, thread pool, lazy imports, first-call work
        run(0)
    for rep in range(args.repeats):
        # The order reverses every other repetition, so a drift of the machine's speed within a
        # repetition falls on every row alike over two of them.
        for name, run in list(runs.items())[:: 1 if rep % 2 == 0 else -1]:
            torch.manual_seed(rep)
            start = time.perf_counter()
            epoch = run(rep)
            calls[name].append(time.perf_counter() - start)
            epochs[name].append(calls[name][-1] if epoch is None else epoch)

    print(
        f"{torch.__version__}, {len(x)} images, batch {batch_size}, {args.threads} threads, {args.repeats} alternating repetitions"
    )
    print(
        "epoch: the training epoch alone (pyro_vae's from its history); call: the whole fit call, with its data "
        "checks, initialisation and tracing"
    )
    results = {}
    for name in runs:
        ratios = [t / p for t, p in zip(epochs[name], epochs["plain"])]
        to_fused = [t / p for t, p in zip(epochs[name], epochs["plain (fused Adam)"])]
        call_ratios = [t / p for t, p in zip(calls[name], calls["plain"])]
        call_to_fused = [t / p for t, p in zip(calls[name], calls["plain (fused Adam)"])]
        results[name] = {
            "median_epoch_seconds": statistics.median(epochs[name]),
            "median_call_seconds": statistics.median(calls[name]),
            "median_ratio": statistics.median(ratios),
            "ratios": ratios,
            "median_ratio_to_fused_plain": statistics.median(to_fused),
            "median_call_ratio": statistics.median(call_ratios),
            "median_call_ratio_to_fused_plain": statistics.median(call_to_fused),
            "ratios_to_fused_plain": to_fused,
        }
        print(
            f"{name:36s} epoch {statistics.median(epochs[name]):6.3f} s  ratio to plain "
            f"{statistics.median(ratios):.3f} (to fused plain {statistics.median(to_fused):.3f})  "
            f"call ratio {statistics.median(call_ratios):.3f} (to fused {statistics.median(call_to_fused):.3f})  "
            f"per repetition, to fused: {', '.join(f'{r:.2f}' for r in to_fused)}"
        )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=1)


if __name__ == "__main__":
    main()

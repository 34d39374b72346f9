"""Peak memory of training and evaluation streamed from a memory-mapped file larger than memory.

    python experiments/benchmarks/streaming.py write PATH ROWS COLS    generate a data set on disk, in blocks
    python experiments/benchmarks/streaming.py train|evaluate PATH     one tool in this process, JSON with memory
    python experiments/benchmarks/streaming.py report --gib 8 [--dir D] all of it, each tool in a fresh process

The data are ``x = z W + noise`` (``z`` of dimension 4, ``float32``, 65,536 features per row). ``train``
runs one epoch of :func:`pyro_vae.fit` (batch 32) and ``evaluate`` :func:`pyro_vae.log_likelihood`
(2 particles, max_memory_mb=16), both on ``np.load(path, mmap_mode="r")``. tests/test_streaming.py
runs the same on a 2 GiB file.

Peak resident memory comes from ``resource.getrusage`` (``ru_maxrss``, the process's high-water
mark), read once after the imports and the model are set up and once after the tool has run.

Smoke run (tests/test_experiments.py runs it; runs/smoke is a one-epoch run of pyro-vae train):

    python experiments/benchmarks/streaming.py report --gib 0.002 --dir /tmp/pyro_vae_smoke   # smoke run
"""

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

LATENT = 4


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def write(path: str, rows: int, cols: int, block_rows: int = 256) -> None:
    """Rows ``x = z W + noise`` with ``z`` of dimension 4, written block by block (never all in memory)."""
    rng = np.random.default_rng(0)
    weights = rng.standard_normal((LATENT, cols)).astype(np.float32)
    with open(path, "wb") as handle:
        np.lib.format.write_array_header_1_0(handle, {"descr": "<f4", "fortran_order": False, "shape": (rows, cols)})
        for start in range(0, rows, block_rows):
            n = min(block_rows, rows - start)
            z = rng.standard_normal((n, LATENT)).astype(np.float32)
            noise = rng.standard_normal((n, cols), dtype=np.float32)
            handle.write((z @ weights + 0.5 * noise).astype("<f4").tobytes())


def run(tool: str, path: str) -> dict:
    import torch

    import pyro_vae

    torch.set_num_threads(1)
    x = np.load(path, mmap_mode="r")  # a numpy memory map, passed to the tools as it is
    vae = pyro_vae.VAE(x.shape[1], LATENT, hidden_sizes=(8,), likelihood="normal")
    before = peak_mb()
    if tool == "train":
        history = pyro_vae.fit(vae, x, epochs=1, batch_size=32, progress=False)
        value = history.rows[-1]["train_elbo"]
    else:
        value = float(pyro_vae.log_likelihood(vae, x, num_particles=2, max_memory_mb=16, psis=False).mean)
    return {"before_mb": before, "peak_mb": peak_mb(), "value": value, "rows": int(x.shape[0])}


def report(gib: float, folder: str | None) -> None:
    cols = 65536
    rows = int(gib * 2**30 // (4 * cols))
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        path = Path(tmp) / "x.npy"
        started = time.perf_counter()
        write(str(path), rows, cols)
        print(
            f"wrote {path.stat().st_size / 2**30:.2f} GiB ({rows:,} x {cols:,} float32) in "
            f"{time.perf_counter() - started:.0f} s"
        )
        for tool in ("train", "evaluate"):
            started = time.perf_counter()
            out = subprocess.run(
                [sys.executable, __file__, tool, str(path)], check=True, capture_output=True, text=True
            )
            measured = json.loads(out.stdout)
            print(
                f"{tool:9s} peak resident {measured['peak_mb']:7.0f} MB, {measured['before_mb']:4.0f} MB before the "
                f"call: the tool added {measured['peak_mb'] - measured['before_mb']:5.0f} MB for a "
                f"{path.stat().st_size / 2**20:,.0f} MB file ({time.perf_counter() - started:.0f} s)"
            )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in ("write", "train", "evaluate"):
        if sys.argv[1] == "write":
            write(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
        else:
            print(json.dumps(run(sys.argv[1], sys.argv[2])))
    else:
        parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
        parser.add_argument("command", choices=["report"])
        parser.add_argument("--gib", type=float, default=8.0, help="size of the generated file")
        parser.add_argument("--dir", default=None, help="folder for the file (default: the system's temporary folder)")
        args = parser.parse_args()
        report(args.gib, args.dir)

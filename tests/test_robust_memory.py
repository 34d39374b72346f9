"""Memory bounds that hold, measured: peak resident size of a fresh process around one call.

The stated bound for a chunked computation with ``max_memory_mb = M`` is ``4 M + 128`` MB of peak
growth plus the result itself; results too large to hold are refused before any work.
"""

import subprocess
import sys
import textwrap
import time

import pytest

import pyro_vae

SCRIPT = """
import resource, torch, pyro_vae
torch.set_num_threads(2)
def peak(): return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
{setup}
before = peak()
{call}
print(peak() - before)
"""

CASES = {
    # 200,000 components: the float64 terms are the object's own memory, cached by a first call.
    "aggregate_log_prob": (
        "g = torch.Generator().manual_seed(0)\n"
        "agg = pyro_vae.AggregatePosterior(torch.randn(200_000, 8, generator=g), torch.rand(200_000, 8, generator=g) + 0.1)\n"
        "z = torch.randn(1000, 8, generator=g); agg.log_prob(z[:1])",
        "agg.log_prob(z, max_memory_mb=16)",
        16,
    ),
    # A categorical decoder is 256 times wider than the data: without chunks its logits alone are 330 MB.
    "categorical_export": (
        "vae = pyro_vae.VAE(64, 4, hidden_sizes=(16,), likelihood='categorical', likelihood_kwargs={'num_levels': 256})\n"
        "x = torch.randint(0, 256, (100, 64)).float()\n"
        "pyro_vae._util.arviz_compat.arviz()  # imported before the baseline: the call is measured, not the import",
        "pyro_vae.to_inference_data(vae, x, num_samples=50, max_memory_mb=16)",
        16,
    ),
    "precision_recall": (
        "g = torch.Generator().manual_seed(0)\n"
        "a, b = torch.randn(8_000, 16, generator=g), torch.randn(8_000, 16, generator=g)",
        "pyro_vae.diagnostics.quality.precision_recall(a, b, max_memory_mb=8)",
        8,
    ),
}


@pytest.mark.slow  # one subprocess per case, each measuring its peak memory
@pytest.mark.parametrize("case", sorted(CASES))
def test_chunked_computations_stay_within_their_stated_bound(case):
    setup, call, budget = CASES[case]
    code = textwrap.dedent(SCRIPT).format(setup=setup, call=call)
    result = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    rise = float(result.stdout.strip().splitlines()[-1])
    assert rise <= 4 * budget + 128, f"{case}: peak rise {rise:.0f} MB"


@pytest.mark.parametrize(
    "call",
    [
        lambda vae: pyro_vae.prior_predictive(vae, 10**8),
        lambda vae: pyro_vae.sample(vae, 10**8),
        lambda vae: pyro_vae.posterior_predictive(vae, pyro_vae.data.load("digits", binarize="fixed").test.x, 10**6),
    ],
    ids=["prior_predictive", "sample", "posterior_predictive"],
)
def test_results_too_large_to_hold_are_refused_at_once(call):
    vae = pyro_vae.VAE(64, 50)
    started = time.perf_counter()
    with pytest.raises(ValueError, match="max_values"):
        call(vae)
    assert time.perf_counter() - started < 2


def test_reading_a_csv_table_holds_about_two_copies_of_its_values(tmp_path):
    """Rows are gathered in preallocated blocks: the reader's peak is the blocks and one joined copy
    (twice 8 bytes per value), not an array object per row."""
    import tracemalloc
    from pathlib import Path

    import numpy as np

    from pyro_vae.data.readers import read_table

    path = Path(tmp_path) / "table.csv"
    values = np.random.default_rng(0).normal(size=(20_000, 20))
    np.savetxt(path, values, delimiter=",", fmt="%.6f")
    tracemalloc.start()
    try:
        x, *_ = read_table(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert x.shape == (20_000, 20)
    assert peak < 2.6 * values.nbytes, f"peak {peak / values.nbytes:.2f} x the float64 values"

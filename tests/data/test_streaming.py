"""Data larger than memory: row sources, IDX conversion, and tools streaming from files."""

import copy
import gzip
import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import pyro_vae
from pyro_vae.data.readers import read_idx
from pyro_vae.data.rows import IndexedRows, MappedArray, open_rows

WORKER = Path(__file__).parents[2] / "experiments" / "benchmarks" / "streaming.py"


@pytest.fixture
def binary_file(tmp_path):
    x = (np.random.default_rng(0).random((300, 12)) < 0.3).astype(np.float32)
    path = tmp_path / "x.npy"
    np.save(path, x)
    return path, torch.from_numpy(x)


def _sources(path):
    return {
        "memmap": np.load(path, mmap_mode="r"),
        "open_rows": open_rows(path),
        "indexed": IndexedRows(np.load(path)),  # any object with len() and row indexing
    }


@pytest.mark.parametrize("kind", ["memmap", "open_rows", "indexed"])
def test_every_tool_gives_the_in_memory_result_from_a_file(binary_file, kind):
    path, x = binary_file
    source = _sources(path)[kind]
    vae = pyro_vae.VAE(12, 2, hidden_sizes=(8,))
    twin = copy.deepcopy(vae)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # three epochs do not converge
        streamed = pyro_vae.fit(vae, source, val=source, epochs=3, batch_size=32, progress=False, init_from_data=False)
        in_memory = pyro_vae.fit(twin, x, val=x, epochs=3, batch_size=32, progress=False, init_from_data=False)
    assert [r["val_elbo"] for r in streamed.rows] == [r["val_elbo"] for r in in_memory.rows]
    for a, b in zip(vae.state_dict().values(), twin.state_dict().values()):
        assert torch.equal(a, b)
    ll = pyro_vae.log_likelihood(vae, source, num_particles=20, max_memory_mb=0.05)  # many chunks
    assert torch.equal(ll.log_px, pyro_vae.log_likelihood(vae, x, num_particles=20, max_memory_mb=0.05).log_px)
    aggregate = pyro_vae.AggregatePosterior.from_data(vae, source, batch_size=50)
    assert torch.equal(aggregate.loc, pyro_vae.AggregatePosterior.from_data(vae, x, batch_size=50).loc)
    mixture = pyro_vae.LatentMixture.fit(vae, source, 3)
    assert torch.equal(mixture.distribution().mean, pyro_vae.LatentMixture.fit(vae, x, 3).distribution().mean)
    idata = pyro_vae.to_inference_data(vae, source, num_samples=4, max_memory_mb=0.2)
    reference = pyro_vae.to_inference_data(vae, x, num_samples=4, max_memory_mb=0.2)
    for group in ("posterior", "log_likelihood", "observed_data"):
        for name, values in idata[group].data_vars.items():
            np.testing.assert_array_equal(values.values, reference[group][name].values)


def test_training_from_a_file_starts_from_a_sample_of_its_rows(binary_file):
    path, x = binary_file
    vae = pyro_vae.VAE(12, 2, hidden_sizes=(8,))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        history = pyro_vae.fit(vae, open_rows(path), epochs=2, batch_size=32, progress=False)
    # The decoder's output bias starts at the data's log-odds, read from the sample (all 300 rows here).
    assert history.rows[-1]["train_elbo"] > -12 * np.log(2)  # better than a fair coin per pixel


def test_row_sources_index_like_tensors(binary_file):
    path, x = binary_file
    source = open_rows(path)
    assert source.shape == x.shape and len(source) == 300 and source.dtype == torch.float32
    order = torch.tensor([7, 2, 7, 299, 0, -1])  # unsorted, repeated, negative
    assert torch.equal(source[order], x[order])
    assert torch.equal(source[10:40:3], x[10:40:3])
    mask = x[:, 0] > 0
    assert torch.equal(source[mask], x[mask])
    part = source.subset(torch.arange(5, 50))
    assert len(part) == 45 and torch.equal(part[[0, 44]], x[[5, 49]])
    with pytest.raises(IndexError, match="0..299"):
        source[[300]]
    with pytest.raises(IndexError, match="boolean mask"):
        source[torch.ones(3, dtype=torch.bool)]
    with pytest.raises(TypeError, match="slice or an array"):
        source[3]


def test_bad_rows_in_a_file_are_refused_before_training_and_named(tmp_path):
    x = np.zeros((100, 4), dtype=np.float32)
    x[73, 2] = np.nan
    np.save(tmp_path / "bad.npy", x)
    vae = pyro_vae.VAE(4, 2, hidden_sizes=(4,), likelihood="normal")
    before = copy.deepcopy(vae.state_dict())
    with pytest.raises(ValueError, match=r"train, rows 0\.\.99: .*non-finite"):
        pyro_vae.fit(vae, np.load(tmp_path / "bad.npy", mmap_mode="r"), epochs=1, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(before.values(), vae.state_dict().values()))
    with pytest.raises(ValueError, match="input_dim=4"):
        pyro_vae.log_likelihood(vae, open_rows(_saved(tmp_path / "wide.npy", np.zeros((5, 6), np.float32))))


def _saved(path, array):
    np.save(path, array)
    return path


def test_files_that_cannot_be_streamed_are_refused_with_the_way_out(tmp_path):
    with pytest.raises(ValueError, match="Fortran order"):
        open_rows(_saved(tmp_path / "f.npy", np.asfortranarray(np.ones((4, 3), np.float32))))
    truncated = tmp_path / "short.npy"
    truncated.write_bytes(_saved(tmp_path / "full.npy", np.ones((40, 3), np.float32)).read_bytes()[:-12])
    with pytest.raises(ValueError, match="announces"):
        open_rows(truncated)
    view = np.load(tmp_path / "full.npy", mmap_mode="r")[10:]
    with pytest.raises(ValueError, match="whole memory map"):
        pyro_vae.log_likelihood(pyro_vae.VAE(3, 2, hidden_sizes=(4,), likelihood="normal"), view)
    with pytest.raises(ValueError, match="holds 608 bytes, fewer than"):
        MappedArray(tmp_path / "full.npy", np.float32, (10**6, 3))


def _write_idx(path, array, gz=False):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    with (gzip.open if gz else open)(path, "wb") as handle:  # closed here: Python 3.12's gzip buffers writes
        handle.write(payload)


@pytest.mark.parametrize("gz", [False, True])
def test_idx_folders_convert_once_into_streamable_files(tmp_path, gz):
    rng = np.random.default_rng(1)
    folder = tmp_path / "idx"
    folder.mkdir()
    suffix = ".gz" if gz else ""
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (50, 5, 4)),
        "train-labels-idx1-ubyte": rng.integers(0, 10, 50),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (20, 5, 4)),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, 20),
    }
    for stem, array in arrays.items():
        _write_idx(folder / (stem + suffix), array, gz)
    written = pyro_vae.data.idx_to_npy(folder, tmp_path / "npy", block_bytes=64)  # many blocks
    images = open_rows(written["train_images"], scale=1 / 255)
    assert images.shape == (50, 20) and images.dtype == torch.float32
    expected = read_idx(folder / ("train-images-idx3-ubyte" + suffix)).reshape(50, 20)
    assert torch.allclose(images[:], expected.float() / 255)
    assert np.array_equal(np.load(written["test_labels"]), arrays["t10k-labels-idx1-ubyte"])
    if not gz:  # an uncompressed IDX file streams in place, too
        assert torch.equal(
            open_rows(folder / "t10k-images-idx3-ubyte")[:].reshape(20, 5, 4),
            torch.from_numpy(arrays["t10k-images-idx3-ubyte"].astype(np.uint8)),
        )
    else:
        with pytest.raises(ValueError, match="idx_to_npy"):
            open_rows(folder / "t10k-images-idx3-ubyte.gz")


def test_a_damaged_idx_folder_leaves_no_partial_file(tmp_path):
    folder = tmp_path / "idx"
    folder.mkdir()
    for stem, shape in (
        ("train-images-idx3-ubyte", (30, 4, 4)),
        ("train-labels-idx1-ubyte", (30,)),
        ("t10k-images-idx3-ubyte", (10, 4, 4)),
        ("t10k-labels-idx1-ubyte", (10,)),
    ):
        _write_idx(folder / stem, np.zeros(shape))
    damaged = folder / "t10k-images-idx3-ubyte"
    damaged.write_bytes(damaged.read_bytes()[:-5])
    with pytest.raises(ValueError, match="ends 5 bytes before"):
        pyro_vae.data.idx_to_npy(folder, tmp_path / "npy")
    assert not (tmp_path / "npy" / "test_images.npy").exists()
    assert not list((tmp_path / "npy").glob(".*.tmp"))


# ---------------------------------------------------------------------- memory
ROWS, COLS = 8192, 65536  # 2 GiB of float32
BOUND_MB = 500  # peak resident memory a tool may add to the process


@pytest.fixture(scope="module")
def large_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("large") / "x.npy"
    subprocess.run([sys.executable, str(WORKER), "write", str(path), str(ROWS), str(COLS)], check=True)
    yield path
    path.unlink()


@pytest.mark.slow  # two subprocesses over a file larger than their memory bound
@pytest.mark.parametrize("tool", ["train", "evaluate"])
def test_a_file_several_times_the_memory_bound_streams_within_it(large_file, tool):
    size_mb = large_file.stat().st_size / 2**20
    assert size_mb > 4 * BOUND_MB
    result = subprocess.run(
        [sys.executable, str(WORKER), tool, str(large_file)], check=True, capture_output=True, text=True
    ).stdout
    measured = json.loads(result)
    assert measured["rows"] == ROWS and np.isfinite(measured["value"])
    added = measured["peak_mb"] - measured["before_mb"]
    assert added < BOUND_MB, f"{tool} over a {size_mb:.0f} MB file raised peak memory by {added:.0f} MB"

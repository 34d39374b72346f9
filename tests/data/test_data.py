import gzip
import hashlib
import os

import numpy as np
import pytest
import torch

from pyro_vae import data


def test_digits_splits_are_deterministic_and_keep_labels():
    a, b = data.load("digits", seed=0), data.load("digits", seed=0)
    assert (len(a.train), len(a.val), len(a.test)) == (1258, 180, 359)
    assert a.input_dim == 64 and a.image_shape == (8, 8)
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.test.labels, b.test.labels)
    assert float(a.train.x.min()) == 0.0 and float(a.train.x.max()) == 1.0
    assert set(a.test.labels.unique().tolist()) == set(range(10))
    c = data.load("digits", seed=1)
    assert not torch.equal(a.train.x, c.train.x)


def test_binarisation_modes():
    fixed = data.load("digits", binarize="fixed")
    assert set(fixed.train.x.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(fixed.test.x, data.load("digits", binarize="fixed").test.x)
    dynamic = data.load("digits", binarize="dynamic")
    assert dynamic.train.dynamic_binarization and not dynamic.test.dynamic_binarization
    assert torch.equal(dynamic.test.x, fixed.test.x)  # same fixed-seed evaluation data
    assert len(dynamic.train.x.unique()) > 2  # probabilities kept for per-epoch draws
    with pytest.raises(ValueError, match="binarize must be one of"):
        data.load("digits", binarize="sometimes")


def test_split_indexing_by_label():
    ds = data.load("digits")
    threes = ds.test[ds.test.labels == 3]
    assert len(threes) > 0 and bool((threes.labels == 3).all())


def write_idx(path, array, gz):
    codes = {np.uint8: 0x08}
    header = bytes([0, 0, codes[array.dtype.type], array.ndim])
    header += b"".join(int(s).to_bytes(4, "big") for s in array.shape)
    payload = header + array.tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        payload = gzip.compress(payload)
    path.write_bytes(payload)
    return path


def make_idx_dir(tmp_path, gz, n_train=50, n_test=20):
    tmp_path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for stem, n in (("train", n_train), ("t10k", n_test)):
        write_idx(tmp_path / f"{stem}-images-idx3-ubyte", rng.integers(0, 256, (n, 4, 5), dtype=np.uint8), gz)
        write_idx(tmp_path / f"{stem}-labels-idx1-ubyte", rng.integers(0, 10, n, dtype=np.uint8), gz)
    return tmp_path


@pytest.mark.parametrize("gz", [True, False])
def test_any_idx_directory_loads(tmp_path, gz):
    ds = data.load(make_idx_dir(tmp_path, gz), val_fraction=0.2)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (40, 10, 20)
    assert ds.image_shape == (4, 5) and ds.input_dim == 20
    assert 0.0 <= float(ds.train.x.min()) and float(ds.train.x.max()) <= 1.0


def test_damaged_idx_files_raise_clear_errors(tmp_path):
    directory = make_idx_dir(tmp_path, gz=False)
    target = directory / "train-images-idx3-ubyte"
    target.write_bytes(target.read_bytes()[:-7])
    with pytest.raises(ValueError, match="header .* implies"):
        data.load(directory)
    target.write_bytes(b"\x12\x34\x56\x78")
    with pytest.raises(ValueError, match="not an IDX file"):
        data.load(directory)
    (directory / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte"):
        data.load(directory)


def test_missing_named_data_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv(data.DATA_ENV_VAR, str(tmp_path / "env"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(data.loading, "DEBIAN_DATASETS", tmp_path / "debian")
    with pytest.raises(FileNotFoundError) as info:
        data.load("fashion-mnist", download=False)
    message = str(info.value)
    for needle in ("apt-get install dataset-fashion-mnist", data.DATA_ENV_VAR, str(tmp_path / "debian")):
        assert needle in message


def test_named_data_is_found_through_the_environment_variable(tmp_path, monkeypatch):
    folder = make_idx_dir(tmp_path / "fashion-mnist", gz=True)
    monkeypatch.setenv(data.DATA_ENV_VAR, str(tmp_path))
    monkeypatch.setattr(data.loading, "DEBIAN_DATASETS", tmp_path / "debian")
    # Other data in a folder found under a known name is refused by the known checksums ...
    with pytest.raises(ValueError, match="not the 'fashion-mnist' data set's .*checksum differs"):
        data.load("fashion-mnist")
    # ... and accepted when its checksums are the known ones.
    digests = {
        role: hashlib.sha256(gzip.decompress((folder / (stem + ".gz")).read_bytes())).hexdigest()
        for role, stem in data.IDX_FILES.items()
    }
    monkeypatch.setitem(data.KNOWN_IDX, "fashion-mnist", {**data.KNOWN_IDX["fashion-mnist"], "sha256": digests})
    assert len(data.load("fashion-mnist").test) == 20


def test_download_verifies_checksums(tmp_path, monkeypatch):
    mirror = make_idx_dir(tmp_path / "mirror", gz=True)
    digests = {
        role: hashlib.sha256(gzip.decompress((mirror / (stem + ".gz")).read_bytes())).hexdigest()
        for role, stem in data.IDX_FILES.items()
    }
    monkeypatch.setitem(
        data.KNOWN_IDX,
        "fashion-mnist",
        {"debian_package": "dataset-fashion-mnist", "mirrors": [mirror.as_uri()], "sha256": digests},
    )
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv(data.DATA_ENV_VAR, raising=False)
    monkeypatch.setattr(data.loading, "DEBIAN_DATASETS", tmp_path / "debian")
    assert len(data.load("fashion-mnist").train) == 45
    assert sorted(os.listdir(tmp_path / "cache" / "pyro_vae" / "fashion-mnist"))[0].endswith(".gz")

    digests["test_images"] = "0" * 64  # a corrupted mirror must be refused
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache2"))
    with pytest.raises(FileNotFoundError, match="checksum mismatch"):
        data.load("fashion-mnist")


@pytest.mark.skipif(
    not os.path.isdir("/usr/share/datasets/fashion-mnist"), reason="dataset-fashion-mnist not installed"
)
def test_fashion_mnist_from_the_debian_package():
    ds = data.load("fashion-mnist", binarize="fixed")
    assert (len(ds.train), len(ds.val), len(ds.test)) == (54000, 6000, 10000)
    assert ds.image_shape == (28, 28)

"""Hostile and damaged files: refused with a ValueError naming the file, before any large allocation."""

import gzip
import json
import os
import pickle
import time
import zipfile

import pytest
import torch

import pyro_vae
from pyro_vae import data
from pyro_vae.diagnostics import quality

D, L = 9, 2


@pytest.fixture
def saved(tmp_path):
    vae = pyro_vae.VAE(D, L, hidden_sizes=(8,))
    return pyro_vae.save(vae, tmp_path / "model.pt")


def forge(path, out, **config_changes):
    """A copy of a saved model whose JSON configuration says something else."""
    payload = torch.load(path, weights_only=True)
    config = json.loads(payload["config"])
    config.update(config_changes)
    payload["config"] = json.dumps(config)
    torch.save(payload, out)
    return out


@pytest.mark.parametrize(
    "changes",
    [
        {"hidden_sizes": [20000, 20000]},
        {"prior": "flow", "prior_kwargs": {"num_flows": 1_000_000, "hidden_dims": [64, 64]}},
        {"prior": "vamp", "prior_kwargs": {"num_components": 5_000_000}},
        {"prior": "mixture", "prior_kwargs": {"num_components": 5_000_000}},
        {"latent_mixture": {"num_components": 1_000_000, "covariance_type": "full"}},
        {"likelihood": "categorical", "likelihood_kwargs": {"num_levels": 100_000}},
        {"guide": "iaf", "guide_kwargs": {"num_flows": 200, "hidden_dims": [4000]}},
        {"input_dim": 10**8},
    ],
    ids=["hidden", "flows", "vamp", "mixture", "latent_mixture", "categorical", "iaf", "input_dim"],
)
def test_configurations_that_name_more_than_the_file_holds_are_refused_before_building(saved, tmp_path, changes):
    hostile = forge(saved, tmp_path / "hostile.pt", **changes)
    started = time.perf_counter()
    with pytest.raises(ValueError, match=r"hostile.pt.*(describes a model|must be a whole number|beyond)"):
        pyro_vae.load(hostile)
    assert time.perf_counter() - started < 5  # refused from the configuration, not after building


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"hidden_sizes": "wide"}, "hidden_sizes"),
        ({"input_dim": True}, "input_dim"),
        ({"latent_dim": -3}, "latent_dim"),
        ({"prior_kwargs": [1, 2]}, "prior_kwargs"),
        ({"guide_kwargs": [1, 2]}, "JSON object"),
    ],
)
def test_malformed_configurations_raise_value_errors(saved, tmp_path, changes, message):
    with pytest.raises(ValueError, match=message):
        pyro_vae.load(forge(saved, tmp_path / "bad.pt", **changes))


def test_damaged_json_and_structures_raise_value_errors_not_internal_ones(saved, tmp_path):
    payload = torch.load(saved, weights_only=True)
    for name, change in {
        "nested": {"config": "[" * 200_000},
        "not-json": {"config": "{nope"},
        "not-text": {"config": torch.zeros(2)},
        "no-state": {"state_dict": [1, 2]},
        "no-config": {"config": None},
    }.items():
        torch.save({**payload, **change}, tmp_path / f"{name}.pt")
        with pytest.raises(ValueError, match=f"{name}.pt"):
            pyro_vae.load(tmp_path / f"{name}.pt")


def test_compressed_members_are_refused_before_they_expand(saved, tmp_path):
    big = tmp_path / "big.pt"
    torch.save({"format": "pyro_vae", "weights": torch.zeros(2_000_000)}, big)  # 8 MB of zeros
    packed = tmp_path / "packed.pt"
    with zipfile.ZipFile(big) as source, zipfile.ZipFile(packed, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            target.writestr(info.filename, source.read(info.filename))
    assert packed.stat().st_size < 100_000
    with pytest.raises(ValueError, match="compressed members"):
        pyro_vae.load(packed)


def test_a_refused_pickle_never_suggests_turning_safety_off(tmp_path):
    class Boom:
        def __reduce__(self):
            return (os.system, ("true",))

    with zipfile.ZipFile(tmp_path / "evil.pt", "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("evil/data.pkl", pickle.dumps({"format": "pyro_vae", "x": Boom()}))
        archive.writestr("evil/version", "3\n")
    with pytest.raises(ValueError) as error:
        pyro_vae.load(tmp_path / "evil.pt")
    assert "evil.pt" in str(error.value) and "weights_only" not in str(error.value)


def test_a_damaged_training_state_cannot_be_resumed(tmp_path):
    vae = pyro_vae.VAE(D, L, hidden_sizes=(8,))
    x = torch.bernoulli(torch.full((20, D), 0.5), generator=torch.Generator().manual_seed(0))
    ck = tmp_path / "run.pt"
    pyro_vae.fit(vae, x, epochs=1, checkpoint=ck)
    payload = torch.load(ck, weights_only=True)
    del payload["training"]["rows"]
    torch.save(payload, ck)
    with pytest.raises(ValueError, match="training state is damaged.*rows"):
        pyro_vae.fit(pyro_vae.VAE(D, L, hidden_sizes=(8,)), x, epochs=2, checkpoint=ck, resume=True)


def test_a_hostile_classifier_cache_is_refused(tmp_path):
    dataset = data.load("digits")
    classifier = quality.feature_classifier(dataset, epochs=1, cache_dir=tmp_path)
    path = next((tmp_path / "classifiers").glob("*.pt"))
    payload = torch.load(path, weights_only=True)
    config = json.loads(payload["config"])
    config["hidden"] = 60_000
    torch.save({**payload, "config": json.dumps(config)}, path)
    with pytest.raises(ValueError, match="unreadable|do not match"):
        quality.feature_classifier(dataset, epochs=1, cache_dir=tmp_path)
    assert classifier.config["hidden"] == 256


# ---------------------------------------------------------------------- IDX files
def idx(header_shape, payload: bytes, type_code=0x08) -> bytes:
    dims = b"".join(int(s).to_bytes(4, "big") for s in header_shape)
    return bytes([0, 0, type_code, len(header_shape)]) + dims + payload


def test_a_gzip_bomb_is_decompressed_only_as_far_as_its_header_announces(tmp_path):
    bomb = tmp_path / "bomb-idx3-ubyte.gz"
    bomb.write_bytes(gzip.compress(idx((10, 28, 28), bytes(40_000_000)), compresslevel=9))
    assert bomb.stat().st_size < 200_000
    started = time.perf_counter()
    with pytest.raises(ValueError, match=r"bomb-idx3-ubyte.gz.*\+ bytes"):
        data.read_idx(bomb)
    assert time.perf_counter() - started < 1.0  # 7,841 bytes read, not 40 MB


@pytest.mark.parametrize(
    "content, message",
    [
        (b"\x1f\x8b\x08\x00garbage", "damaged gzip"),
        (b"\x00\x00\x08", "bad magic"),
        (idx((3,), b"\x00\x01"), "implies"),
        (idx((2**31 - 1, 2**31 - 1), b""), "announces"),
    ],
)
def test_malformed_idx_files_raise_value_errors_naming_the_file(tmp_path, content, message):
    path = tmp_path / "bad-idx1-ubyte"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=f"bad-idx1-ubyte.*{message}|{message}.*bad-idx1-ubyte"):
        data.read_idx(path)


@pytest.mark.parametrize("labels, code", [((2**31 - 1).to_bytes(4, "big"), 0x0C), (b"\xff", 0x09)])
def test_idx_labels_are_validated(tmp_path, labels, code):
    folder = tmp_path / "set"
    folder.mkdir()
    for _, stem in (("train", "train"), ("test", "t10k")):
        (folder / f"{stem}-images-idx3-ubyte").write_bytes(idx((1, 2, 2), bytes(4)))
        (folder / f"{stem}-labels-idx1-ubyte").write_bytes(idx((1,), labels, type_code=code))
    with pytest.raises(ValueError, match="labels must lie"):
        data.load(str(folder))


def test_a_table_whose_header_announces_more_than_its_file_is_refused_before_allocating(tmp_path):
    import numpy as np

    np.save(tmp_path / "ok.npy", np.zeros((20, 3)))
    raw = (tmp_path / "ok.npy").read_bytes().replace(b"(20, 3)", b"(20000000000, 3)")
    (tmp_path / "evil.npy").write_bytes(raw)
    started = time.perf_counter()
    with pytest.raises(ValueError, match=r"evil.npy.*announces an array of shape \(20000000000, 3\)"):
        data.load(str(tmp_path / "evil.npy"))
    assert time.perf_counter() - started < 1.0
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}] * 3, dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="objects.npy"):
        data.load(str(tmp_path / "objects.npy"))

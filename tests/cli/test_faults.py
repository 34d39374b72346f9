"""Faults end in one clear line and exit status 2, checked before the work where possible, with
nothing partial left behind: full disks, read-only or odd --out targets, unsupported devices."""

import collections
import os

import pytest
import torch

import pyro_vae
from pyro_vae._util import files
from pyro_vae._util.files import WriteError, atomic_write
from pyro_vae.cli import main

TRAIN = ["train", "--data", "digits", "--binarize", "fixed", "--epochs", "1", "--hidden", "8", "--latent-dim", "2"]


def one_line_error(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


@pytest.mark.parametrize(
    ("out", "message"),
    [("", "--out is empty"), ("   ", "--out is empty"), ("afile", "is an existing file")],
)
def test_odd_out_targets_are_refused_before_any_work(tmp_path, capsys, monkeypatch, out, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("mine")
    assert main([*TRAIN, "--out", out]) == 2
    assert message in one_line_error(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]  # nothing trained into the working folder


def test_a_read_only_out_is_refused_before_any_work(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(os, "access", lambda path, mode: False)  # as a read-only mount answers
    assert main([*TRAIN, "--out", str(tmp_path / "run")]) == 2
    assert "read-only or not permitted" in one_line_error(capsys)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("device", ["mps", "meta", "xla", "cuda:7", "nonsense"])
def test_unsupported_devices_are_one_line(tmp_path, capsys, device):
    assert main([*TRAIN, "--out", str(tmp_path / "run"), "--device", device]) == 2
    assert "--device" in one_line_error(capsys)


def test_a_failed_write_keeps_the_old_file_and_says_so(tmp_path, monkeypatch):
    path = tmp_path / "model.pt"
    path.write_bytes(b"old")

    def full(handle):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing file")

    with pytest.raises(WriteError, match="Could not write .*model.pt.*MB free.*previous file is unchanged"):
        atomic_write(path, full)
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["model.pt"]


def test_a_disk_without_room_for_checkpoints_is_refused_before_training(tmp_path, monkeypatch):
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(files.shutil, "disk_usage", lambda path: usage(10**9, 10**9, 1000))
    vae = pyro_vae.VAE(6, 2, hidden_sizes=(8,))
    before = {k: v.clone() for k, v in vae.state_dict().items()}
    with pytest.raises(ValueError, match="needs about .* MB free"):
        pyro_vae.fit(vae, torch.ones(10, 6), epochs=1, checkpoint=tmp_path / "run.pt")
    assert all(torch.equal(v, before[k]) for k, v in vae.state_dict().items())
    assert not (tmp_path / "run.pt").exists()


def test_a_full_disk_during_training_is_one_line_from_the_command_line(tmp_path, capsys, monkeypatch):
    real = files.atomic_write

    def failing(path, write):
        if str(path).endswith("checkpoint.pt"):
            raise files._write_error(files.Path(path), OSError(28, "No space left on device"))
        return real(path, write)

    monkeypatch.setattr(files, "atomic_write", failing)
    monkeypatch.setattr("pyro_vae.io.checkpoint.atomic_write", failing, raising=False)
    assert main([*TRAIN, "--out", str(tmp_path / "run")]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress lines
    assert last.startswith("pyro-vae train: error: Could not write") and "No space left on device" in last


def test_the_first_command_works_with_every_default(tmp_path, capsys):
    import json

    out = tmp_path / "first"
    assert main(["train", "--out", str(out), "--epochs", "1"]) == 0
    assert "--binarize auto" in capsys.readouterr().out
    assert json.loads((out / "config.json").read_text())["binarize"] == "dynamic"
    # Another likelihood leaves grey values as they are.
    other = tmp_path / "other"
    assert main(["train", "--out", str(other), "--epochs", "1", "--likelihood", "continuous_bernoulli"]) == 0
    assert json.loads((other / "config.json").read_text())["binarize"] == "none"

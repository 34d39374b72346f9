"""A run folder cannot lie: atomic descriptions, settings checked before writing, one writer, matching data."""

import json
import os
import stat
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

import pyro_vae
from pyro_vae._util import files as _io
from pyro_vae.cli import main

TRAIN = ["train", "--data", "digits", "--binarize", "fixed", "--epochs", "1", "--hidden", "8", "--latent-dim", "2"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "run"
    assert main([*TRAIN, "--out", str(out)]) == 0
    return out


def test_a_refused_resume_leaves_the_runs_description_untouched(run, capsys):
    before = (run / "config.json").read_bytes()
    assert main([*TRAIN, "--latent-dim", "3", "--epochs", "2", "--resume", "--out", str(run)]) == 2
    assert "differs from the run's config.json" in capsys.readouterr().err
    assert (run / "config.json").read_bytes() == before
    # A resume the checkpoint itself refuses (other settings) leaves it untouched too.
    assert main([*TRAIN, "--epochs", "2", "--batch-size", "64", "--resume", "--out", str(run)]) == 2
    assert (run / "config.json").read_bytes() == before


def test_a_crash_while_writing_a_description_keeps_the_old_one(tmp_path, monkeypatch):
    path = _io.write_json(tmp_path / "config.json", {"a": 1})

    def failing_fsync(fd):
        raise OSError(27, "File too large")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError):
        _io.write_json(path, {"a": 2})
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]


def test_training_into_a_run_folder_needs_resume_or_overwrite(run, capsys):
    before = (run / "history.csv").read_text()
    assert main([*TRAIN, "--out", str(run)]) == 2
    assert "--resume" in capsys.readouterr().err and (run / "history.csv").read_text() == before


def test_a_second_training_into_the_same_folder_or_checkpoint_is_refused(tmp_path, capsys):
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        out = tmp_path / "locked"
        out.mkdir()
        (out / ".lock").write_text(str(other.pid))
        assert main([*TRAIN, "--out", str(out)]) == 2
        assert f"process {other.pid}" in capsys.readouterr().err
        assert not (out / "config.json").exists()
        checkpoint = tmp_path / "ck.pt"
        (tmp_path / "ck.pt.lock").write_text(str(other.pid))
        with pytest.raises(ValueError, match="in use by another training"):
            pyro_vae.fit(pyro_vae.VAE(4, 2, hidden_sizes=(4,)), torch.zeros(8, 4), epochs=1, checkpoint=checkpoint)
    finally:
        other.kill()
        other.wait()
    # The holder is gone: its stale lock is taken over.
    assert main([*TRAIN, "--out", str(out)]) == 0
    assert not (out / ".lock").exists()


def test_evaluate_refuses_data_that_do_not_match_the_model(run, tmp_path, capsys):
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("model.pt", "config.json"):
        (copy / name).write_bytes((run / name).read_bytes())
    config = json.loads((copy / "config.json").read_text())
    table = tmp_path / "wide.npy"
    np.save(table, np.random.default_rng(0).random((50, 784)).round())
    json_text = json.dumps({**config, "data_source": str(table)})
    (copy / "config.json").write_text(json_text)
    assert main(["evaluate", str(copy), "--num-particles", "10"]) == 2
    assert "784" in capsys.readouterr().err
    (copy / "config.json").write_text(json.dumps({**config, "data_fingerprint": "0" * 16}))
    assert main(["evaluate", str(copy), "--num-particles", "10"]) == 2
    assert "has changed since training" in capsys.readouterr().err


def test_stale_temporary_files_are_removed_and_permissions_kept(tmp_path):
    stale = tmp_path / ".model.pt.abc123.tmp"
    fresh = tmp_path / ".model.pt.def456.tmp"
    stale.write_bytes(b"partial")
    fresh.write_bytes(b"partial")
    old = time.time() - 2 * _io.STALE_SECONDS
    os.utime(stale, (old, old))
    vae = pyro_vae.VAE(4, 2, hidden_sizes=(4,))
    path = pyro_vae.save(vae, tmp_path / "model.pt")
    assert not stale.exists() and fresh.exists()  # a write that may still run is left alone
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
    path.chmod(0o640)
    pyro_vae.save(vae, path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_paths_that_would_fail_after_training_are_checked_first(tmp_path):
    vae = pyro_vae.VAE(4, 2, hidden_sizes=(4,))
    before = [p.clone() for p in vae.parameters()]
    with pytest.raises(ValueError, match=r"\.csv or \.json"):
        pyro_vae.fit(vae, torch.zeros(8, 4), epochs=1, history_path=tmp_path / "history.txt")
    (tmp_path / "a-file").write_text("not a folder")
    with pytest.raises(ValueError, match="Cannot write the checkpoint"):
        pyro_vae.fit(vae, torch.zeros(8, 4), epochs=1, checkpoint=tmp_path / "a-file" / "ck.pt")
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "read-only"
        locked.mkdir()
        locked.chmod(0o500)
        with pytest.raises(ValueError, match="Cannot write the checkpoint"):
            pyro_vae.fit(vae, torch.zeros(8, 4), epochs=1, checkpoint=locked / "ck.pt")
    assert all(torch.equal(a, b) for a, b in zip(before, vae.parameters()))

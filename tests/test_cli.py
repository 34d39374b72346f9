import json

import pytest

import pyro_vae
from pyro_vae.cli import main


def test_demo_writes_a_complete_run_folder_and_sample_reads_it(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--epochs", "2"]) == 0
    printed = capsys.readouterr().out
    assert "Test ELBO" in printed
    summary = json.loads((out / "summary.json").read_text())
    for name in ("model.pt", "checkpoint.pt", "config.json", "history.csv", "training_curve.png",
                 "prior_samples.png", "aggregate_samples.png", "reconstructions.png", "latent_map.png"):
        assert (out / name).stat().st_size > 0, name
        assert any(path.endswith(name) for path in summary["files"].values()), name
    assert summary["test_elbo_per_image"] < 0  # log-probabilities of binary images
    assert pyro_vae.load(out / "model.pt").latent_dim == 2

    assert main(["sample", str(out), "--source", "aggregate", "--num", "8"]) == 0
    assert (out / "samples-aggregate.png").stat().st_size > 0


def test_cli_errors_are_reported_not_raised(tmp_path, capsys):
    assert main(["sample", str(tmp_path / "nowhere")]) == 2
    assert "No checkpoint" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--out", str(tmp_path), "--likelihood", "nonsense"])

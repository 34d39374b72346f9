"""The command line a modeller expects: resolved data paths, every sampling source, tables, help, logs, report."""

import json
import os

import numpy as np
import pytest

from pyro_vae.cli import build_parser, main


def write_idx(folder, n, seed):
    rng = np.random.default_rng(seed)
    for stem, count in (("train", n), ("t10k", n // 3)):
        images = (rng.random((count, 4, 4)) * 255).astype(np.uint8)
        labels = rng.integers(0, 3, count).astype(np.uint8)
        (folder / f"{stem}-images-idx3-ubyte").write_bytes(
            bytes([0, 0, 8, 3]) + b"".join(int(s).to_bytes(4, "big") for s in images.shape) + images.tobytes()
        )
        (folder / f"{stem}-labels-idx1-ubyte").write_bytes(
            bytes([0, 0, 8, 1]) + count.to_bytes(4, "big") + labels.tobytes()
        )


@pytest.fixture(scope="module")
def idx_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    folder = root / "my-idx-folder"
    folder.mkdir()
    write_idx(folder, 90, seed=0)
    cwd = os.getcwd()
    os.chdir(root)
    try:
        assert (
            main(
                [
                    "train",
                    "--data",
                    "my-idx-folder",
                    "--binarize",
                    "fixed",
                    "--epochs",
                    "2",
                    "--hidden",
                    "8",
                    "--out",
                    "run",
                    "--elbo",
                    "meanfield",
                    "--prior",
                    "mixture",
                    "--prior-kwargs",
                    '{"num_components": 3}',
                ]
            )
            == 0
        )
    finally:
        os.chdir(cwd)
    return root


def test_a_run_on_an_idx_folder_is_evaluated_from_anywhere(idx_run, tmp_path, monkeypatch, capsys):
    config = json.loads((idx_run / "run" / "config.json").read_text())
    assert config["data_source"] == str((idx_run / "my-idx-folder").resolve())
    assert len(config["data_fingerprint"]) == 16 and config["training"]["elbo"] == "meanfield"
    monkeypatch.chdir(tmp_path)  # another working directory, with a folder of the same name
    (tmp_path / "my-idx-folder").mkdir()
    write_idx(tmp_path / "my-idx-folder", 60, seed=1)
    assert main(["evaluate", str(idx_run / "run"), "--num-particles", "10"]) == 0
    assert json.loads((idx_run / "run" / "evaluation.json").read_text())["data_source"] == config["data_source"]


def test_every_sampling_source_from_the_command_line(idx_run, capsys):
    run = str(idx_run / "run")
    for extra in (
        ["--source", "mixture", "--components", "2"],
        ["--source", "subset", "--label", "1"],
        ["--source", "aggregate"],
        ["--source", "prior", "--device", "cpu"],
    ):
        assert main(["sample", run, "--num", "6", *extra]) == 0, extra
    assert (idx_run / "run" / "samples-subset1.png").stat().st_size > 0
    assert main(["sample", run, "--label", "1"]) == 2
    assert "--source subset" in capsys.readouterr().err
    import torch

    if not torch.cuda.is_available():
        assert main(["sample", run, "--device", "cuda"]) == 2
        assert "no CUDA device" in capsys.readouterr().err


def test_report_writes_diagnostics_and_figures(idx_run):
    run = idx_run / "run"
    assert (
        main(
            [
                "report",
                str(run),
                "--num-particles",
                "20",
                "--max-points",
                "10",
                "--num-samples",
                "200",
                "--num",
                "6",
                "--components",
                "2",
            ]
        )
        == 0
    )
    report = json.loads((run / "report" / "report.json").read_text())
    assert {"log_likelihood", "elbo_surgery", "active_units", "pareto_k", "holes"} <= set(report)
    for name in (
        "samples-prior.png",
        "samples-aggregate.png",
        "samples-mixture.png",
        "samples-labels.png",
        "latent-map.png",
    ):
        assert (run / "report" / name).stat().st_size > 0, name


@pytest.mark.parametrize("suffix", [".npy", ".csv"])
def test_tables_train_and_evaluate(tmp_path, suffix, capsys):
    rng = np.random.default_rng(0)
    table = rng.normal(size=(60, 5)) @ rng.normal(size=(5, 5)) + 3.0
    path = tmp_path / f"table{suffix}"
    np.save(path, table) if suffix == ".npy" else np.savetxt(
        path, table, delimiter=",", header="a,b,c,d,e", comments=""
    )
    out = tmp_path / f"run{suffix}"
    assert (
        main(
            [
                "train",
                "--data",
                str(path),
                "--likelihood",
                "normal",
                "--epochs",
                "2",
                "--hidden",
                "8",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    err = capsys.readouterr().err
    assert "epoch 1/2" in err and "epoch 2/2" in err  # one line per epoch: output is not a terminal
    assert main(["evaluate", str(out), "--num-particles", "10"]) == 0


def test_every_option_has_help_and_a_shown_default():
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for name, command in subparsers.choices.items():
        for action in command._actions:
            if action.dest == "help":
                continue
            assert action.help, f"{name} {action.option_strings or action.dest} has no help text"
        assert "default:" in command.format_help(), name

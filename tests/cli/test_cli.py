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
    for name in (
        "model.pt",
        "checkpoint.pt",
        "config.json",
        "history.csv",
        "training_curve.png",
        "prior_samples.png",
        "aggregate_samples.png",
        "reconstructions.png",
        "latent_map.png",
    ):
        assert (out / name).stat().st_size > 0, name
        assert any(path.endswith(name) for path in summary["files"].values()), name
    assert summary["test_elbo_per_point"] < 0  # log-probabilities of binary images
    assert "test_elbo_per_image" not in summary and isinstance(summary["converged"], bool)
    assert pyro_vae.load(out / "model.pt").latent_dim == 2

    assert main(["sample", str(out), "--source", "aggregate", "--num", "8"]) == 0
    assert (out / "samples-aggregate.png").stat().st_size > 0


def test_cli_errors_are_reported_not_raised(tmp_path, capsys):
    assert main(["sample", str(tmp_path / "nowhere")]) == 2
    assert "No checkpoint" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--out", str(tmp_path), "--likelihood", "nonsense"])


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    for name, latent in (("small", 2), ("large", 4)):
        assert (
            main(
                [
                    "train",
                    "--data",
                    "digits",
                    "--binarize",
                    "fixed",
                    "--epochs",
                    "1",
                    "--hidden",
                    "16",
                    "--latent-dim",
                    str(latent),
                    "--out",
                    str(root / name),
                ]
            )
            == 0
        )
    return root


def test_evaluate_writes_and_prints_the_metrics(two_runs, capsys):
    run = two_runs / "small"
    assert main(["evaluate", str(run), "--num-particles", "20", "--max-points", "50"]) == 0
    printed = capsys.readouterr().out
    metrics = json.loads((run / "evaluation.json").read_text())
    for key in ("nll", "nll_se", "elbo", "mutual_information", "marginal_kl", "active_units", "share_k_above_0.7"):
        assert key in metrics, key
    assert metrics["num_points"] == 50 and metrics["num_particles"] == 20
    assert metrics["nll"] > 0 and metrics["nll"] <= -metrics["elbo"] + 1.0
    assert f"{metrics['nll']:.2f}" in printed and "active units" in printed


def test_compare_prints_the_table_and_writes_the_plot(two_runs, tmp_path, capsys):
    plot = tmp_path / "comparison.png"
    args = [
        "compare",
        str(two_runs / "small"),
        str(two_runs / "large"),
        "--num-particles",
        "20",
        "--max-points",
        "40",
        "--plot",
        str(plot),
        "--csv",
        str(tmp_path / "table.csv"),
    ]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "elpd_diff" in printed and "small" in printed and "large" in printed
    assert plot.stat().st_size > 0
    assert (tmp_path / "table.csv").read_text().startswith(",rank,elpd")


def test_compare_refuses_runs_on_different_data(two_runs, tmp_path, capsys):
    other = tmp_path / "other"
    assert (
        main(
            [
                "train",
                "--data",
                "digits",
                "--epochs",
                "1",
                "--hidden",
                "8",
                "--out",
                str(other),
                "--likelihood",
                "continuous_bernoulli",
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["compare", str(two_runs / "small"), str(other), "--num-particles", "20"]) == 2
    assert "different data" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "missing")]) == 2
    assert "not a run folder" in capsys.readouterr().err


def test_train_on_levels_with_likelihood_options_and_evaluate(tmp_path, capsys):
    run = tmp_path / "levels"
    assert (
        main(
            [
                "train",
                "--data",
                "digits",
                "--values",
                "levels",
                "--likelihood",
                "normal",
                "--likelihood-kwargs",
                '{"num_levels": 17, "scale": "feature"}',
                "--epochs",
                "1",
                "--hidden",
                "8",
                "--out",
                str(run),
            ]
        )
        == 0
    )
    loaded = pyro_vae.load_run(run)
    vae, dataset, config = loaded.vae, loaded.dataset, loaded.config
    assert config["values"] == "levels" and dataset.test.x.max() == 16
    assert vae.likelihood.num_levels == 17 and vae.input_scale == 16.0
    assert main(["evaluate", str(run), "--num-particles", "20", "--max-points", "30"]) == 0
    assert '"is_discrete": true' in (run / "evaluation.json").read_text()
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["train", "--likelihood-kwargs", "[1, 2]", "--out", str(tmp_path / "x")])
    assert "expected a JSON object" in capsys.readouterr().err


def test_evaluate_with_ais_and_few_chains_reports_pareto_k_as_not_estimated(two_runs, capsys):
    run = two_runs / "small"
    out = run / "ais.json"
    args = ["evaluate", str(run), "--method", "ais", "--num-particles", "4", "--ais-steps", "5", "--max-points", "10"]
    assert main([*args, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    metrics = json.loads(out.read_text())
    assert metrics["pareto_k"] is None and metrics["num_particles"] == 4
    assert "Pareto k                   not estimated" in printed and f"{metrics['nll']:.2f}" in printed


def test_an_importance_weighted_objective_needs_several_particles_on_the_command_line(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--elbo", "iwae", "--epochs", "1", "--hidden", "8", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--num-particles K" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()  # refused before any work
    args = [
        "train",
        "--binarize",
        "fixed",
        "--elbo",
        "iwae",
        "--num-particles",
        "3",
        "--hidden",
        "8",
        "--out",
        str(out),
    ]
    assert main([*args, "--epochs", "1"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["training"]["elbo"] == "iwae" and config["training"]["num_particles"] == 3
    checkpoint = pyro_vae.io.checkpoint.read_checkpoint(out / "checkpoint.pt")
    assert json.loads(checkpoint["training"]["settings"])["num_particles"] == 3
    # A resumed run repeats the settings; a run folder written before an option existed resumes with its default.
    del config["training"]["jit"]
    (out / "config.json").write_text(json.dumps(config))
    assert main([*args, "--epochs", "2", "--resume"]) == 0
    assert main([*args, "--epochs", "3", "--resume", "--num-particles", "4"]) == 2
    assert "num_particles" in capsys.readouterr().err


def test_every_error_ends_in_one_line_and_debug_shows_the_traceback(two_runs, monkeypatch, capsys):
    from pyro_vae.cli import evaluation

    def broken(run, args):
        raise RuntimeError("something\nunexpected")

    monkeypatch.setattr(evaluation, "evaluate_run", broken)
    assert main(["evaluate", str(two_runs / "small")]) == 2
    err = capsys.readouterr().err
    assert err.strip() == (
        "pyro-vae evaluate: error: RuntimeError: something unexpected (rerun with --debug for the traceback)"
    )
    with pytest.raises(RuntimeError, match="something"):
        main(["evaluate", str(two_runs / "small"), "--debug"])
    with pytest.raises(RuntimeError, match="something"):
        main(["--debug", "evaluate", str(two_runs / "small")])


def test_size_factors_flag_builds_a_count_model_with_library_sizes_and_refuses_other_likelihoods(tmp_path, capsys):
    run = tmp_path / "counts"
    arguments = ["train", "--data", "digits", "--values", "levels", "--epochs", "1", "--hidden", "8"]
    assert main([*arguments, "--likelihood", "negative_binomial", "--size-factors", "--out", str(run)]) == 0
    vae = pyro_vae.load_run(run).vae
    assert vae.likelihood.size_factors and vae.likelihood.name == "negative_binomial"
    capsys.readouterr()
    refused = tmp_path / "refused"
    assert main([*arguments, "--likelihood", "binomial", "--size-factors", "--out", str(refused)]) == 2
    assert "'binomial' likelihood" in capsys.readouterr().err and not refused.exists()


def test_evaluate_with_few_particles_runs_without_the_pareto_fit(two_runs, capsys):
    run = two_runs / "small"
    out = run / "few.json"
    assert main(["evaluate", str(run), "--num-particles", "5", "--max-points", "10", "--out", str(out)]) == 0
    metrics = json.loads(out.read_text())
    assert metrics["pareto_k"] is None and metrics["num_particles"] == 5
    assert "psis=False" not in capsys.readouterr().out


def test_the_demo_prints_a_few_lines_and_no_warning_without_a_terminal(tmp_path):
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-W", "default", "-m", "pyro_vae.cli", "demo", "--out", str(tmp_path / "d"), "--epochs", "30"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**__import__("os").environ, "MPLBACKEND": "Agg"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = (done.stdout + done.stderr).splitlines()
    assert len(lines) <= 30, lines
    assert not [line for line in lines if "Warning" in line], lines
    assert sum(line.startswith("epoch ") for line in lines) <= 11  # a line every tenth of the epochs
    assert any("latent space has 2 dimensions" in line for line in lines)
    summary = json.loads((tmp_path / "d" / "summary.json").read_text())
    if not summary["converged"]:  # the advice is a sentence of the summary, not a raw warning
        assert any("still rising" in line for line in lines)

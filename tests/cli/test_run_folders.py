"""Run folders never lose work: the lock is taken before anything is removed, --overwrite removes
exactly the previous run's files and refuses folders that are not runs, --resume needs a checkpoint."""

import json
import subprocess
import sys

import pytest

from pyro_vae.cli import main

TRAIN = ["train", "--data", "digits", "--binarize", "fixed", "--epochs", "1", "--hidden", "8", "--latent-dim", "2"]


@pytest.fixture
def run(tmp_path):
    out = tmp_path / "run"
    assert main([*TRAIN, "--out", str(out)]) == 0
    return out


def snapshot(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_overwrite_while_another_training_holds_the_folder_deletes_nothing(run, capsys):
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (run / ".lock").write_text(str(holder.pid))
        before = snapshot(run)
        assert main([*TRAIN, "--out", str(run), "--overwrite"]) == 2
        assert "in use by another training" in capsys.readouterr().err
        assert snapshot(run) == before
    finally:
        holder.kill()
        holder.wait()


def test_overwrite_removes_exactly_the_previous_runs_outputs(run):
    assert main(["evaluate", str(run), "--num-particles", "10", "--max-points", "20"]) == 0
    assert main(["sample", str(run), "--source", "prior", "--num", "4"]) == 0
    (run / "notes.txt").write_text("mine")
    listed = json.loads((run / "config.json").read_text())["outputs"]
    assert {"evaluation.json", "samples-prior.png", "latent_map.png", "summary.json"} <= set(listed)
    # A new run with fewer figures: nothing of the old one may stay beside it.
    assert main([*TRAIN, "--out", str(run), "--overwrite"]) == 0
    assert (run / "notes.txt").read_text() == "mine"
    assert not (run / "evaluation.json").exists() and not (run / "samples-prior.png").exists()
    assert (run / "model.pt").exists()
    assert "evaluation.json" not in json.loads((run / "config.json").read_text()).get("outputs", [])


def test_overwrite_refuses_a_folder_that_is_not_a_run(tmp_path, capsys):
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"name": "someone else's settings"}))
    before = snapshot(folder)
    assert main([*TRAIN, "--out", str(folder), "--overwrite"]) == 2
    assert "not a pyro_vae run folder" in capsys.readouterr().err
    assert snapshot(folder) == before


def test_resume_without_a_checkpoint_is_refused_and_keeps_the_model(run, capsys):
    (run / "checkpoint.pt").unlink()
    model = (run / "model.pt").read_bytes()
    assert main([*TRAIN, "--out", str(run), "--resume"]) == 2
    assert "Nothing to resume" in capsys.readouterr().err
    assert (run / "model.pt").read_bytes() == model


def test_a_resumed_run_keeps_its_list_of_outputs(run):
    assert main(["evaluate", str(run), "--num-particles", "10", "--max-points", "20"]) == 0
    resumed = [a if a != "1" else "2" for a in TRAIN]  # --epochs 2
    assert main([*resumed, "--out", str(run), "--resume"]) == 0
    assert "evaluation.json" in json.loads((run / "config.json").read_text())["outputs"]


def test_sample_and_evaluate_write_arrays_for_tables_and_images(tmp_path, run):
    import numpy as np

    rng = np.random.default_rng(0)
    table = tmp_path / "t.csv"
    np.savetxt(table, rng.normal(size=(60, 4)), delimiter=",", header="a,b,c,d", comments="")
    out = tmp_path / "table-run"
    assert main(["train", "--data", str(table), "--likelihood", "normal", "--epochs", "1", "--out", str(out)]) == 0
    assert main(["sample", str(out), "--source", "prior", "--num", "5"]) == 0
    assert np.load(out / "samples-prior.npy").shape == (5, 4)
    assert np.loadtxt(out / "samples-prior.csv", delimiter=",").shape == (5, 4)
    assert main(["evaluate", str(out), "--num-particles", "10"]) == 0
    points = np.genfromtxt(out / "evaluation-points.csv", delimiter=",", names=True)
    assert set(points.dtype.names) == {"log_px", "elbo", "pareto_k"} and len(points) == 12
    assert bool((points["elbo"] <= points["log_px"] + 1e-4).all())
    # Images get the array beside the figure.
    assert main(["sample", str(run), "--source", "prior", "--num", "4"]) == 0
    assert np.load(run / "samples-prior.npy").shape == (4, 64)
    assert {"samples-prior.npy", "samples-prior.png"} <= set(json.loads((run / "config.json").read_text())["outputs"])


def test_a_training_cannot_replace_a_run_that_an_evaluation_is_reading(run, capsys):
    """An evaluation holds the folder's lock (as another process would hold it while it reads), so
    `train --overwrite` is refused rather than letting the old evaluation land in the new run."""
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (run / ".lock").write_text(f"{holder.pid} evaluation")
        before = snapshot(run)
        assert main([*TRAIN, "--out", str(run), "--overwrite"]) == 2
        assert "in use by another evaluation" in capsys.readouterr().err
        assert snapshot(run) == before
        # ... and an evaluation is refused while another holds the folder.
        assert main(["evaluate", str(run), "--num-particles", "10", "--max-points", "20"]) == 2
    finally:
        holder.kill()
        holder.wait()
    assert main(["evaluate", str(run), "--num-particles", "10", "--max-points", "20"]) == 0
    assert not (run / ".lock").exists()


def test_a_report_killed_midway_leaves_no_figure_that_overwrite_keeps(run, monkeypatch):
    from pyro_vae.diagnostics import plots

    drawn = []
    original = plots.image_grid

    def one_then_killed(*args, **kwargs):
        if drawn:
            raise KeyboardInterrupt  # the process is stopped after its first figure
        drawn.append(original(*args, **kwargs))
        return drawn[-1]

    monkeypatch.setattr(plots, "image_grid", one_then_killed)
    assert main(["report", str(run), "--num-particles", "10", "--max-points", "20", "--num-samples", "100"]) != 0
    assert drawn and drawn[0].exists()
    monkeypatch.undo()
    assert main([*TRAIN, "--out", str(run), "--overwrite"]) == 0
    assert not drawn[0].exists()


def test_an_evaluation_stopped_between_its_files_never_pairs_with_an_older_one(run, monkeypatch):
    from pyro_vae.cli import evaluation

    assert main(["evaluate", str(run), "--num-particles", "10", "--max-points", "20"]) == 0
    assert (run / "evaluation.json").exists() and (run / "evaluation-points.csv").exists()

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(evaluation, "write_json", killed)  # stopped after the CSV, before the JSON
    assert main(["evaluate", str(run), "--num-particles", "12", "--max-points", "20"]) != 0
    assert not (run / "evaluation.json").exists()  # the old JSON is gone, not beside the new CSV

"""Tables read right: a row index or a label is never taken for a feature; columns, label and the
choice travel with a run folder."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

import pyro_vae
from pyro_vae.cli import main

RNG = np.random.default_rng(0)
FEATURES = RNG.normal(size=(40, 3)).round(3)


def pandas_csv(tmp_path, **extra):
    frame = pd.DataFrame(FEATURES, columns=["a", "b", "c"])
    for name, values in extra.items():
        frame[name] = values
    path = tmp_path / "table.csv"
    frame.to_csv(path)  # pandas' default: the row index as an unnamed first column
    return path


def all_rows(dataset):
    return np.concatenate([dataset.train.x.numpy(), dataset.val.x.numpy(), dataset.test.x.numpy()])


def test_pandas_default_csv_trains_on_its_real_columns_only(tmp_path):
    dataset = pyro_vae.data.load(pandas_csv(tmp_path))
    assert dataset.input_dim == 3
    assert dataset.columns == {"features": None, "label": None, "dropped_index": "", "columns": ["a", "b", "c"]}
    np.testing.assert_allclose(np.sort(all_rows(dataset), axis=0), np.sort(FEATURES.astype(np.float32), axis=0))


def test_a_text_label_column_becomes_classes_and_is_no_feature(tmp_path):
    species = np.array(["setosa", "virginica", "versicolor", "setosa"] * 10)
    dataset = pyro_vae.data.load(pandas_csv(tmp_path, species=species), label="species")
    assert dataset.input_dim == 3 and dataset.columns["label_classes"] == ["setosa", "versicolor", "virginica"]
    labels = np.concatenate([s.labels.numpy() for s in (dataset.train, dataset.val, dataset.test)])
    assert sorted(np.bincount(labels).tolist()) == [10, 10, 20]


def test_numeric_labels_keep_their_values(tmp_path):
    dataset = pyro_vae.data.load(pandas_csv(tmp_path, digit=np.arange(40) % 12), label="digit")
    labels = np.concatenate([s.labels.numpy() for s in (dataset.train, dataset.val, dataset.test)])
    assert sorted(set(labels.tolist())) == list(range(12)) and "label_classes" not in dataset.columns


def test_chosen_columns_by_name_or_position(tmp_path):
    path = pandas_csv(tmp_path, note=["x"] * 40)
    dataset = pyro_vae.data.load(path, columns=["c", "a"])
    assert dataset.input_dim == 2 and dataset.columns["features"] == ["c", "a"]
    np.save(tmp_path / "t.npy", FEATURES)
    assert pyro_vae.data.load(tmp_path / "t.npy", columns=[2], label=None).input_dim == 1


def test_a_text_column_among_the_features_says_how_to_leave_it_out(tmp_path):
    with pytest.raises(ValueError, match=r"column 5 \('note'\).*columns=\[...\]"):
        pyro_vae.data.load(pandas_csv(tmp_path, note=["x"] * 40))
    with pytest.raises(ValueError, match="'nope' is not a column"):
        pyro_vae.data.load(pandas_csv(tmp_path), columns=["nope"])
    with pytest.raises(ValueError, match="choose the columns of a table"):
        pyro_vae.data.load("digits", columns=["a"])


def test_the_command_line_chooses_columns_and_the_run_folder_remembers(tmp_path, capsys):
    path = pandas_csv(tmp_path, group=np.arange(40) % 2)
    out = tmp_path / "run"
    train = ["train", "--data", str(path), "--likelihood", "normal", "--epochs", "1", "--hidden", "8"]
    assert main([*train, "--label-column", "group", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "features ['a', 'b', 'c'], label 'group'; left out the row index" in printed
    recorded = json.loads((out / "config.json").read_text())["data_columns"]
    assert recorded["label"] == "group" and recorded["columns"] == ["a", "b", "c"]
    assert main(["evaluate", str(out), "--num-particles", "10"]) == 0  # reads the same columns again
    other = tmp_path / "run2"
    assert main([*train, "--columns", "a,c", "--out", str(other)]) == 0
    assert json.loads((other / "config.json").read_text())["model"]["input_dim"] == 2


def test_covariate_columns_become_one_hot_blocks_aligned_with_their_rows(tmp_path):
    batch = np.array(["b", "a", "c", "a"] * 10)
    donor = np.array([3, 7] * 20)
    dataset = pyro_vae.data.load(pandas_csv(tmp_path, batch=batch, donor=donor), covariates=["batch", "donor"])
    assert dataset.input_dim == 3  # covariates are never features, and the row index is still left out
    assert dataset.columns["covariates"] == [
        {"column": "batch", "classes": ["a", "b", "c"]},
        {"column": "donor", "classes": [3, 7]},
    ]
    for split in (dataset.train, dataset.val, dataset.test):
        y = split.covariates
        assert y.shape == (len(split), 5) and torch.equal(y.sum(-1), torch.full((len(split),), 2.0))
        # Each row's one-hot codes are its own: find the row by its features.
        for row, code in zip(split.x.numpy(), y.numpy()):
            i = int(np.argmin(np.abs(FEATURES.astype(np.float32) - row).sum(-1)))
            assert code[:3].argmax() == "abc".index(batch[i]) and code[3:].argmax() == [3, 7].index(donor[i])
        assert split.covariates_for()["y"] is y
    assert dataset.train[:4].covariates.shape == (4, 5)
    plain = pyro_vae.data.load(pandas_csv(tmp_path, batch=batch), columns=["a", "b"])
    assert plain.train.covariates is None and plain.train.covariates_for() is None


def test_covariate_columns_are_checked(tmp_path):
    path = pandas_csv(tmp_path, batch=np.array(["x", "y"] * 20))
    with pytest.raises(ValueError, match="are features or the label as well"):
        pyro_vae.data.load(path, columns=["a", "batch"], covariates=["batch"])
    with pytest.raises(ValueError, match="not a column"):
        pyro_vae.data.load(path, covariates=["site"])
    with pytest.raises(ValueError, match="name a column twice"):
        pyro_vae.data.load(path, covariates=["batch", "batch"])
    with pytest.raises(ValueError, match="choose the columns of a table"):
        pyro_vae.data.load("digits", covariates=["batch"])


def test_the_command_line_trains_and_evaluates_with_covariate_columns(tmp_path, capsys):
    path = pandas_csv(tmp_path, batch=np.array(["x", "y"] * 20))
    out = tmp_path / "run"
    assert main(["train", "--data", str(path), "--likelihood", "normal", "--covariate-columns", "batch", "--epochs",
                 "1", "--hidden", "8", "--out", str(out)]) == 0  # fmt: skip
    config = json.loads((out / "config.json").read_text())
    assert config["data_columns"]["covariates"] == [{"column": "batch", "classes": ["x", "y"]}]
    vae = pyro_vae.load(out / "model.pt")
    assert vae.covariate_dim == 2 and vae.input_dim == 3
    main(["evaluate", str(out), "--num-particles", "20"])
    metrics = json.loads((out / "evaluation.json").read_text())
    assert np.isfinite(metrics["nll"])
    dataset = pyro_vae.load_run(out).dataset
    expected = pyro_vae.log_likelihood(vae, dataset.test.x, covariates=dataset.test.covariates_for(), num_particles=20)
    assert abs(metrics["nll"] - (-expected.mean)) < 1e-4  # the same seed and draws: the test rows with their y
    for source in ("prior", "aggregate"):  # decoded under the training rows' covariates
        assert main(["sample", str(out), "--source", source, "--num", "10"]) == 0
        assert np.load(out / f"samples-{source}.npy").shape == (10, 3)
    assert main(["report", str(out), "--num-particles", "20"]) == 0  # every tool with each row's own y
    report = json.loads((out / "report" / "report.json").read_text())
    assert report["log_likelihood"]["nll"] == pytest.approx(metrics["nll"], abs=1e-4)
    # A run without the covariates on the same file is compared on the same points, each with its own y.
    plain = tmp_path / "plain"
    assert main(["train", "--data", str(path), "--likelihood", "normal", "--columns", "a,b,c", "--epochs", "1",
                 "--hidden", "8", "--out", str(plain)]) == 0  # fmt: skip
    csv, plot = str(tmp_path / "c.csv"), str(tmp_path / "c.png")
    assert main(["compare", str(out), str(plain), "--num-particles", "20", "--csv", csv, "--plot", plot]) == 0
    table = pd.read_csv(csv, index_col=0)
    assert table.loc["run", "nll"] == pytest.approx(metrics["nll"], abs=1e-4)


def test_empty_or_na_label_and_covariate_cells_are_refused_not_made_classes(tmp_path):
    for marker in ("", "NA"):
        batch = np.array(["a", "b"] * 20, dtype=object)
        batch[7] = marker
        path = pandas_csv(tmp_path, batch=batch)
        if marker == "":  # pandas writes an empty cell for an empty string
            assert ",\n" in path.read_text() or ",," in path.read_text()
        with pytest.raises(ValueError, match="row 7 has no value"):
            pyro_vae.data.load(path, covariates=["batch"])
        with pytest.raises(ValueError, match="row 7 has no value"):
            pyro_vae.data.load(path, label="batch")


def test_a_training_record_encodes_new_rows_over_its_classes_and_refuses_unseen_ones(tmp_path):
    trained = pyro_vae.data.load(pandas_csv(tmp_path, batch=np.array(["a", "b", "c", "a"] * 10)), covariates=["batch"])
    record = trained.columns["covariates"]
    other = tmp_path / "other"
    other.mkdir()
    known = pyro_vae.data.load(pandas_csv(other, batch=np.array(["b", "c"] * 20)), covariates=record)
    assert known.train.covariates.shape[1] == 3  # the training's three classes, not the file's two
    assert known.columns["covariates"] == record
    unseen = np.array(["b", "c", "d", "c"] * 10)
    with pytest.raises(ValueError, match="'d'.*none of the classes"):
        pyro_vae.data.load(pandas_csv(other, batch=unseen), covariates=record)


def test_a_header_that_names_two_columns_alike_is_refused(tmp_path):
    path = tmp_path / "twice.csv"
    path.write_text("a,b,a\n" + "\n".join(f"{i},{i + 1},{i + 2}" for i in range(10)) + "\n")
    with pytest.raises(ValueError, match="names the column\\(s\\) \\['a'\\] twice"):
        pyro_vae.data.load(path)

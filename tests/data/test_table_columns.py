"""Tables read right: a row index or a label is never taken for a feature; columns, label and the
choice travel with a run folder."""

import json

import numpy as np
import pandas as pd
import pytest

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

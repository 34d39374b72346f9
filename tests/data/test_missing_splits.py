"""Tables with missing entries as data sets: load(..., missing=True) gives splits with masks, which
fit and every tool that takes mask= read from the split, and `pyro-vae train --mask-missing` trains a
run on such a table that evaluate and impute read back."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import pyro_vae
from pyro_vae.cli import main

N, D = 60, 4


@pytest.fixture
def table(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, 2)) @ rng.normal(size=(2, D)) + 0.3 * rng.normal(size=(N, D))
    hidden = rng.random(x.shape) < 0.25
    hidden[0] = False
    lines = ["a,b,c,d"] + [
        ",".join("" if h else repr(float(v)) for v, h in zip(row, gone)) for row, gone in zip(x, hidden)
    ]
    path = tmp_path / "holes.csv"
    path.write_text("\n".join(lines) + "\n")
    return path, torch.as_tensor(~hidden)


def test_splits_carry_the_mask_of_the_observed_entries(table):
    path, observed = table
    data = pyro_vae.data.load(path, missing=True, seed=3)
    total = sum(int(s.mask.sum()) for s in (data.train, data.val, data.test))
    assert total == int(observed.sum())
    for split in (data.train, data.val, data.test):
        assert split.mask.dtype == torch.bool and split.mask.shape == split.x.shape
        assert torch.equal(torch.isnan(split.x), ~split.mask)
    assert data.columns["missing"] is True
    sub = data.train[:5]
    assert torch.equal(sub.mask, data.train.mask[:5])
    with pytest.raises(ValueError, match="empty cells are not numbers|missing"):
        pyro_vae.data.load(path)  # without missing=True an empty cell is refused
    with pytest.raises(ValueError, match="table"):
        pyro_vae.data.load("digits", missing=True)
    with pytest.raises(ValueError, match="binarize='none'"):
        pyro_vae.data.load(path, missing=True, binarize="fixed")


def test_fit_and_the_tools_read_the_split_mask(table):
    path, _ = table
    data = pyro_vae.data.load(path, missing=True)

    def trained(**given):
        torch.manual_seed(0)
        vae = pyro_vae.VAE(D, 2, likelihood="normal", hidden_sizes=(8,), missing=True)
        history = pyro_vae.fit(vae, epochs=3, progress=False, **given)
        return vae, history

    from_split, history = trained(train=data.train, val=data.val)
    explicit, explicit_history = trained(
        train=data.train.x, mask=data.train.mask, val=data.val.x, val_mask=data.val.mask
    )
    assert history.column("val_elbo") == explicit_history.column("val_elbo")
    ll = pyro_vae.log_likelihood(from_split, data.test, num_particles=20)
    same = pyro_vae.log_likelihood(from_split, data.test.x, mask=data.test.mask, num_particles=20)
    assert torch.equal(ll.log_px, same.log_px)
    filled = pyro_vae.impute(from_split, data.test, num_particles=20)
    assert torch.equal(filled.mask, data.test.mask)
    # A tool that reads complete rows refuses the split rather than reading filled-in values as data.
    with pytest.raises(ValueError, match="missing entries.*complete rows"):
        pyro_vae.posterior_predictive_check(from_split, data.test, num_samples=5)
    complete = data.test[data.test.mask.all(1)]
    on_split = pyro_vae.posterior_predictive_check(from_split, complete, num_samples=5)
    on_values = pyro_vae.posterior_predictive_check(from_split, complete.x, num_samples=5)
    assert on_split.num_samples == 5 and on_split.summary() == on_values.summary()


def test_train_mask_missing_on_the_command_line(table, tmp_path, capsys):
    path, _ = table
    run = tmp_path / "run"
    argv = ["train", "--data", str(path), "--mask-missing", "--likelihood", "normal", "--latent-dim", "2"]
    assert main([*argv, "--epochs", "3", "--hidden", "8", "--out", str(run)]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["missing"] is True and config["data_columns"]["missing"] is True
    # fit's masked default: the importance-weighted bound, unless the command line names another
    assert config["training"]["elbo"] == "iwae" and config["training"]["num_particles"] == 20
    assert main(["evaluate", str(run), "--num-particles", "20"]) == 0
    metrics = json.loads((run / "evaluation.json").read_text())
    assert np.isfinite(metrics["nll"]) and "baselines" not in metrics
    assert main(["impute", str(run), "--data", str(path), "--num-particles", "20"]) == 0
    assert (tmp_path / "holes-imputed.csv").is_file()
    assert main(["report", str(run)]) == 2
    assert "missing entries" in capsys.readouterr().err
    other = tmp_path / "trace"
    assert main([*argv, "--epochs", "2", "--hidden", "8", "--elbo", "trace", "--out", str(other)]) == 0
    assert json.loads((other / "config.json").read_text())["training"]["elbo"] == "trace"
    # An abbreviation would hide the explicit choice from the masked default: it is refused instead.
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main([*argv, "--epochs", "2", "--elb", "trace", "--out", str(tmp_path / "abbreviated")])
    assert "unrecognized arguments: --elb" in capsys.readouterr().err
    assert not (tmp_path / "abbreviated").exists()

import json
import math

import pytest
import torch

import pyro_vae
from pyro_vae.data import Split

D, L = 16, 2


def dataset(n=120, seed=0):
    g = torch.Generator().manual_seed(seed)
    probs = torch.sigmoid(torch.randn(n, L, generator=g) @ torch.randn(L, D, generator=g) * 2)
    return torch.bernoulli(probs, generator=g)


def new_vae():
    torch.manual_seed(0)
    return pyro_vae.VAE(D, L, hidden_sizes=(24,))


def params(vae):
    return {k: v.clone() for k, v in vae.state_dict().items()}


def test_resume_reproduces_an_uninterrupted_run(tmp_path):
    x, val = dataset(), dataset(40, seed=1)
    settings = dict(val=val, batch_size=32, seed=7, kl_warmup_epochs=2)
    full = new_vae()
    h_full = pyro_vae.fit(full, x, epochs=4, restore_best=False, **settings)

    ck = tmp_path / "run.pt"
    part = new_vae()
    pyro_vae.fit(part, x, epochs=2, checkpoint=ck, restore_best=False, **settings)
    resumed = new_vae()  # a fresh process would build the model again from scratch
    h_resumed = pyro_vae.fit(resumed, x, epochs=4, checkpoint=ck, resume=True, restore_best=False, **settings)

    for key, value in params(full).items():
        assert torch.equal(value, params(resumed)[key]), key
    assert [r["train_elbo"] for r in h_full.rows] == [r["train_elbo"] for r in h_resumed.rows]


def test_resume_refuses_changed_settings_and_architecture(tmp_path):
    x = dataset()
    ck = tmp_path / "run.pt"
    pyro_vae.fit(new_vae(), x, epochs=1, checkpoint=ck)
    with pytest.raises(ValueError, match="settings differ.*batch_size"):
        pyro_vae.fit(new_vae(), x, epochs=2, batch_size=16, checkpoint=ck, resume=True)
    with pytest.raises(ValueError, match="another architecture"):
        pyro_vae.fit(pyro_vae.VAE(D, L, hidden_sizes=(8,)), x, epochs=2, checkpoint=ck, resume=True)


def test_kl_warmup_ramps_and_history_is_saved(tmp_path):
    vae = new_vae()
    history = pyro_vae.fit(vae, dataset(), epochs=3, batch_size=40, kl_warmup_epochs=2, history_path=tmp_path / "h.csv")
    assert history.column("kl_weight") == pytest.approx([0.5, 1.0, 1.0])
    lines = (tmp_path / "h.csv").read_text().splitlines()
    assert lines[0] == "epoch,kl_weight,train_elbo,val_elbo,seconds" and len(lines) == 4
    history.save(tmp_path / "h.json")
    assert len(json.loads((tmp_path / "h.json").read_text())["rows"]) == 3
    with pytest.raises(ValueError, match=".csv or .json"):
        history.save(tmp_path / "h.txt")


def test_early_stopping_restores_the_best_state():
    x, val = dataset(), dataset(40, seed=1)
    vae = new_vae()
    # A learning rate this large makes validation worse after the first epochs.
    history = pyro_vae.fit(vae, x, val=val, epochs=30, batch_size=8, lr=0.3, patience=2, seed=0)
    best = max(history.column("val_elbo"))
    assert history.stopped_early and len(history.rows) < 30
    assert history.rows[history.best_epoch - 1]["val_elbo"] == best
    assert pyro_vae.mean_elbo(vae, val, seed=0) == pytest.approx(best, rel=1e-6)


def test_dynamic_binarisation_draws_fresh_data_each_epoch(monkeypatch):
    probs = torch.full((64, D), 0.5)
    split = Split(probs, torch.zeros(64, dtype=torch.long), (4, 4), dynamic_binarization=True)
    seen = []
    original = pyro_vae.VAE.model

    def spy(self, x=None, **kw):
        seen.append(x.clone())
        return original(self, x, **kw)

    monkeypatch.setattr(pyro_vae.VAE, "model", spy)
    pyro_vae.fit(new_vae(), split, epochs=2, batch_size=64)
    assert set(torch.cat(seen).unique().tolist()) == {0.0, 1.0}
    assert not torch.equal(seen[0], seen[1])


def test_meanfield_elbo_and_particles_train():
    history = pyro_vae.fit(new_vae(), dataset(), epochs=2, elbo="meanfield", num_particles=3)
    assert all(math.isfinite(v) for v in history.column("train_elbo"))


@pytest.mark.parametrize(
    "kwargs, message, error",
    [
        ({"epochs": 0}, "epochs", ValueError),
        ({"batch_size": 1.5}, "batch_size", TypeError),  # a wrong type is a TypeError
        ({"lr": -1}, "lr", ValueError),
        ({"elbo": "renyi"}, "elbo", ValueError),
        ({"patience": 3}, "val data", ValueError),
        ({"resume": True}, "checkpoint", ValueError),
        ({"elbo": "iwae"}, "num_particles=1 is the plain one-sample ELBO", ValueError),
        ({"elbo": "iwae-dreg", "num_particles": 1}, "K >= 2", ValueError),
        ({"epoch": 3}, "unknown options \\['epoch'\\]", TypeError),
    ],
)
def test_bad_settings_are_refused(kwargs, message, error):
    with pytest.raises(error, match=message):
        pyro_vae.fit(new_vae(), dataset(), **kwargs)


def test_two_models_in_one_process_keep_their_own_parameters():
    a, b = new_vae(), new_vae()
    pyro_vae.fit(a, dataset(), epochs=1)
    before = params(a)
    pyro_vae.fit(b, dataset(seed=3), epochs=1)
    assert all(torch.equal(v, params(a)[k]) for k, v in before.items())
    assert not torch.equal(params(a)["decoder.net.0.weight"], params(b)["decoder.net.0.weight"])


def test_progress_bar_is_silent_when_output_is_not_a_terminal(capsys):
    pyro_vae.fit(new_vae(), dataset(), epochs=2)
    assert capsys.readouterr().err == ""
    pyro_vae.fit(new_vae(), dataset(), epochs=2, progress=True)
    assert "epoch" in capsys.readouterr().err

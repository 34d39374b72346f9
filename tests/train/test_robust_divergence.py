"""Divergence keeps the best state: finite parameters in memory, no non-finite checkpoint, a true message."""

import math

import pytest
import torch

import pyro_vae
from pyro_vae.train import ObjectiveStep

D, L = 10, 2


def data(n=80, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.bernoulli(torch.full((n, D), 0.3), generator=g)


def poison_at(monkeypatch, epoch, step, steps_per_epoch):
    """Make the training step number ``epoch * steps_per_epoch + step`` (from 0) corrupt a weight and return NaN."""
    original = ObjectiveStep.__call__
    calls = {"n": 0}

    def poisoned(self, *args, **kwargs):
        loss = original(self, *args, **kwargs)
        if calls["n"] == epoch * steps_per_epoch + step:
            with torch.no_grad():
                next(iter(self.params)).fill_(math.nan)
            loss = math.nan
        calls["n"] += 1
        return loss

    monkeypatch.setattr(ObjectiveStep, "__call__", poisoned)


def finite(vae):
    return all(bool(torch.isfinite(p).all()) for p in vae.parameters())


def test_a_diverging_run_keeps_the_best_epoch_and_never_checkpoints_nan(tmp_path, monkeypatch):
    torch.manual_seed(0)
    vae = pyro_vae.VAE(D, L, hidden_sizes=(8,))
    poison_at(monkeypatch, epoch=3, step=1, steps_per_epoch=4)
    ck = tmp_path / "run.pt"
    with pytest.raises(FloatingPointError, match=r"step 2 of epoch 4.*best validation epoch \(\d\).*holds epoch 3"):
        pyro_vae.fit(vae, data(), val=data(40, seed=1), epochs=6, batch_size=20, checkpoint=ck)
    assert finite(vae)
    saved = pyro_vae.load(ck)
    assert finite(saved)
    payload = torch.load(ck, weights_only=True)
    assert payload["training"]["epoch"] == 3 and all(math.isfinite(r["val_elbo"]) for r in payload["training"]["rows"])


def test_without_validation_the_last_finite_epoch_is_kept(monkeypatch):
    torch.manual_seed(0)
    vae = pyro_vae.VAE(D, L, hidden_sizes=(8,))
    poison_at(monkeypatch, epoch=0, step=2, steps_per_epoch=4)
    before = {k: v.clone() for k, v in vae.state_dict().items()}
    with pytest.raises(FloatingPointError, match="step 3 of epoch 1.*from before the first epoch"):
        pyro_vae.fit(vae, data(), epochs=3, batch_size=20, init_from_data=False)
    assert all(torch.equal(before[k], v) for k, v in vae.state_dict().items())


def test_resuming_an_early_stopped_run_returns_at_once(tmp_path):
    torch.manual_seed(0)
    vae = pyro_vae.VAE(D, L, hidden_sizes=(8,))
    ck = tmp_path / "run.pt"
    # A huge learning rate makes validation worse at once: early stopping after 2 bad epochs.
    settings = dict(val=data(40, seed=1), batch_size=20, lr=0.5, patience=2, checkpoint=ck)
    history = pyro_vae.fit(vae, data(), epochs=50, **settings)
    assert history.stopped_early
    again = pyro_vae.VAE(D, L, hidden_sizes=(8,))
    resumed = pyro_vae.fit(again, data(), epochs=50, resume=True, **settings)
    assert resumed.stopped_early and len(resumed.rows) == len(history.rows)
    assert all(torch.equal(a, b) for a, b in zip(vae.state_dict().values(), again.state_dict().values()))

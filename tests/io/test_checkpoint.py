import os
import pickle

import pytest
import torch
from torch import nn

import pyro_vae
from pyro_vae.io.checkpoint import parameter_bound

D, L = 9, 2


def trained(likelihood="normal"):
    vae = pyro_vae.VAE(D, L, hidden_sizes=(8,), likelihood=likelihood, image_shape=(3, 3))
    pyro_vae.fit(vae, torch.rand(30, D), epochs=1, batch_size=10)
    return vae


def test_round_trip_keeps_parameters_config_and_outputs(tmp_path):
    vae = trained()
    path = pyro_vae.save(vae, tmp_path / "m.pt")
    back = pyro_vae.load(path)
    assert back.config() == vae.config()
    for (k, a), (_, b) in zip(vae.state_dict().items(), back.state_dict().items()):
        assert torch.equal(a, b), k
    x = torch.rand(4, D)
    assert torch.equal(pyro_vae.reconstruct(vae, x), pyro_vae.reconstruct(back, x))
    assert back.likelihood.scale.value().item() == pytest.approx(vae.likelihood.scale.value().item())


def test_a_crash_mid_save_leaves_the_old_file_intact(tmp_path, monkeypatch):
    vae = trained()
    path = pyro_vae.save(vae, tmp_path / "m.pt")
    before = path.read_bytes()

    def crash(obj, handle, *a, **k):
        handle.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        pyro_vae.save(trained(), path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.pt"]  # no temporary file left behind


def test_truncated_and_corrupt_files_raise_clear_errors(tmp_path):
    path = pyro_vae.save(trained(), tmp_path / "m.pt")
    data = path.read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        pyro_vae.load(tmp_path / "cut.pt")
    (tmp_path / "junk.pt").write_bytes(os.urandom(500))
    with pytest.raises(ValueError, match="truncated or corrupt"):
        pyro_vae.load(tmp_path / "junk.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.pt")
    with pytest.raises(ValueError, match="not a pyro_vae checkpoint"):
        pyro_vae.load(tmp_path / "foreign.pt")
    with pytest.raises(FileNotFoundError):
        pyro_vae.load(tmp_path / "absent.pt")


class Boom:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_pickled_objects_are_never_executed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with open("evil.pt", "wb") as handle:
        pickle.dump({"format": "pyro_vae", "payload": Boom()}, handle)
    with pytest.raises(ValueError, match="truncated or corrupt"):
        pyro_vae.load("evil.pt")
    assert not os.path.exists("pwned")


def test_checkpoint_of_another_architecture_is_refused(tmp_path):
    path = pyro_vae.save(trained(), tmp_path / "m.pt")
    payload = torch.load(path, weights_only=True)
    payload["state_dict"]["decoder.net.0.weight"] = torch.zeros(5, 5)
    torch.save(payload, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="another architecture.*decoder.net.0.weight"):
        pyro_vae.load(tmp_path / "other.pt")


def test_custom_networks_must_be_passed_again(tmp_path):
    decoder = nn.Sequential(nn.Linear(L, D))
    vae = pyro_vae.VAE(D, L, decoder=decoder, likelihood="continuous_bernoulli")
    path = pyro_vae.save(vae, tmp_path / "m.pt")
    with pytest.raises(ValueError, match="custom decoder"):
        pyro_vae.load(path)
    back = pyro_vae.load(path, decoder=nn.Sequential(nn.Linear(L, D)))
    assert torch.equal(back.decoder[0].weight, decoder[0].weight)
    with pytest.raises(ValueError, match="another architecture"):
        pyro_vae.load(path, decoder=nn.Sequential(nn.Linear(L, 4), nn.Linear(4, D)))


def test_load_best_gives_the_best_validation_epoch_of_a_training_checkpoint(tmp_path):
    torch.manual_seed(0)
    x, val = torch.rand(40, D), torch.rand(20, D)
    vae = pyro_vae.VAE(D, L, hidden_sizes=(8,), likelihood="normal", image_shape=(3, 3))
    ckpt = tmp_path / "run.pt"
    # lr 0.3 overshoots after epoch 3 on this seed, so the best epoch is not the last one
    history = pyro_vae.fit(vae, x, val=val, epochs=6, batch_size=10, lr=0.3, checkpoint=ckpt, restore_best=True)
    assert history.best_epoch < len(history.rows)
    best = pyro_vae.load(ckpt, best=True)
    last = pyro_vae.load(ckpt)
    for name, value in vae.state_dict().items():  # fit ended on the best epoch's parameters
        assert torch.equal(best.state_dict()[name], value.cpu()), name
    assert any(not torch.equal(last.state_dict()[k], v) for k, v in best.state_dict().items())


def test_load_best_refuses_files_without_a_best_epoch(tmp_path):
    vae = trained()
    with pytest.raises(ValueError, match="not a training checkpoint"):
        pyro_vae.load(pyro_vae.save(vae, tmp_path / "m.pt"), best=True)
    pyro_vae.fit(vae, torch.rand(30, D), epochs=1, batch_size=10, checkpoint=tmp_path / "noval.pt")
    with pytest.raises(ValueError, match="no best validation epoch"):
        pyro_vae.load(tmp_path / "noval.pt", best=True)


@pytest.mark.parametrize(
    "prior, prior_kwargs",
    [("normal", {}), ("learned_normal", {}), ("mixture", {}), ("mixture", {"num_components": 30}), ("vamp", {}),
     ("vamp", {"num_components": 7}), ("flow", {}), ("flow", {"num_flows": 2, "hidden_dims": [8]})],
)  # fmt: skip
@pytest.mark.parametrize(
    "guide, guide_kwargs", [("normal", {}), ("iaf", {}), ("iaf", {"num_flows": 3, "hidden_dims": [20]})]
)
def test_each_prior_and_guide_states_its_own_parameter_count(prior, prior_kwargs, guide, guide_kwargs):
    vae = pyro_vae.VAE(20, 4, hidden_sizes=(16,), prior=prior, prior_kwargs=prior_kwargs, guide=guide,
                       guide_kwargs=guide_kwargs)  # fmt: skip
    held = sum(t.numel() for t in vae.state_dict().values())
    bound = parameter_bound(vae.config())
    assert held <= bound <= 2 * held  # an upper bound, within a factor of two, from the configuration alone
    counted = pyro_vae.PRIORS[prior].parameter_count(4, 20, **prior_kwargs)
    assert counted >= sum(t.numel() for t in vae.prior.state_dict().values())
    if prior != "normal":  # the standard normal takes any options and holds none
        with pytest.raises(ValueError, match="prior or guide is invalid"):
            parameter_bound({**vae.config(), "prior_kwargs": {**prior_kwargs, "no_such_option": 1}})


def test_a_file_written_before_the_missing_option_loads_and_resumes(tmp_path):
    """Files from before VAE(missing=...) lack the key: they read as missing=False, for load and resume."""
    import json

    x = torch.bernoulli(torch.full((40, 6), 0.3), generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    vae = pyro_vae.VAE(6, 2, hidden_sizes=(8,))
    path = tmp_path / "run.pt"
    pyro_vae.fit(vae, x, epochs=1, checkpoint=path, progress=False)
    payload = torch.load(path, weights_only=True)
    config = json.loads(payload["config"])
    del config["missing"]
    payload["config"] = json.dumps(config)
    torch.save(payload, path)
    assert not pyro_vae.load(path).missing
    torch.manual_seed(0)
    again = pyro_vae.VAE(6, 2, hidden_sizes=(8,))
    history = pyro_vae.fit(again, x, epochs=2, checkpoint=path, resume=True, progress=False)
    assert len(history.rows) == 2

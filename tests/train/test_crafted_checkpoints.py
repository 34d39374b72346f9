"""A crafted or damaged checkpoint is a ValueError naming the file and the field before any of it is
used: never a crash in Adam's fused kernel, never a silently changed run. Bit flips inside stored
tensors are refused by the archive's checksums, for models and checkpoints alike."""

import copy
import math
import zipfile

import pytest
import torch

import pyro_vae

D, L = 10, 2
X = torch.bernoulli(torch.full((40, D), 0.4), generator=torch.Generator().manual_seed(0))
VAL = torch.bernoulli(torch.full((16, D), 0.4), generator=torch.Generator().manual_seed(1))


def new_vae():
    return pyro_vae.VAE(D, L, hidden_sizes=(8,))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("run") / "run.pt"
    pyro_vae.fit(new_vae(), X, val=VAL, epochs=2, batch_size=16, checkpoint=path, seed=0)
    return path


def with_first_param(payload, key, value):
    payload["training"]["optimizer"]["state"][0][key] = value
    return payload


def first_param_shape(payload):
    return payload["training"]["optimizer"]["state"][0]["exp_avg"].shape


CRAFTED = {
    "adam moments too small": (lambda p: with_first_param(p, "exp_avg", torch.zeros(3)), "'exp_avg'"),
    "adam moments of another dtype": (
        lambda p: with_first_param(p, "exp_avg_sq", torch.zeros(first_param_shape(p), dtype=torch.float64)),
        "'exp_avg_sq'",
    ),
    "negative second moments": (
        lambda p: with_first_param(p, "exp_avg_sq", -torch.ones(first_param_shape(p))),
        "'exp_avg_sq'",
    ),
    "adam step a vector": (lambda p: with_first_param(p, "step", torch.ones(4)), "'step'"),
    "adam step fractional": (lambda p: with_first_param(p, "step", torch.tensor(2.5)), "'step'"),
    "adam moments missing": (lambda p: (p["training"]["optimizer"]["state"][0].pop("exp_avg"), p)[1], "parameter 0"),
    "adam state for a parameter that does not exist": (
        lambda p: p["training"]["optimizer"]["state"].update({999: p["training"]["optimizer"]["state"][0]}) or p,
        "parameter 999",
    ),
    "learning rate a string": (
        lambda p: p["training"]["optimizer"]["param_groups"][0].update(lr="fast") or p,
        "'lr'",
    ),
    "rng state too short": (
        lambda p: p["training"].update(rng_state=torch.zeros(7, dtype=torch.uint8)) or p,
        "rng_state",
    ),
    "rng state of floats": (lambda p: p["training"].update(rng_state=torch.zeros(5056)) or p, "rng_state"),
    "best state of another shape": (
        lambda p: (
            p["training"]["best_state"].update({k: torch.zeros(3) for k in list(p["training"]["best_state"])[:1]}) or p
        ),
        "best_state",
    ),
    "best state missing a key": (
        lambda p: (p["training"]["best_state"].pop(next(iter(p["training"]["best_state"]))), p)[1],
        "best_state",
    ),
    "history row with a string": (lambda p: p["training"]["rows"][0].update(train_elbo="high") or p, "history row 1"),
    "history row missing a column": (lambda p: (p["training"]["rows"][1].pop("seconds"), p)[1], "history row 2"),
    "epoch a million with two rows": (lambda p: p["training"].update(epoch=10**6) or p, "epoch"),
    "best epoch beyond the last epoch": (lambda p: p["training"].update(best_epoch=7) or p, "best_epoch"),
    "negative bad epochs": (lambda p: p["training"].update(bad_epochs=-3) or p, "bad_epochs"),
}


@pytest.mark.parametrize("case", list(CRAFTED))
def test_a_crafted_training_field_is_refused_by_name(checkpoint, tmp_path, case):
    craft, field = CRAFTED[case]
    payload = craft(copy.deepcopy(torch.load(checkpoint, weights_only=True)))
    crafted = tmp_path / "crafted.pt"
    torch.save(payload, crafted)
    vae = new_vae()
    before = {k: v.clone() for k, v in vae.state_dict().items()}
    with pytest.raises(ValueError, match="training state is damaged") as error:
        pyro_vae.fit(vae, X, val=VAL, epochs=3, batch_size=16, checkpoint=crafted, resume=True, seed=0)
    assert str(crafted) in str(error.value) and field in str(error.value)
    for key, value in vae.state_dict().items():  # nothing was loaded into the model
        assert torch.equal(value, before[key]), key


def test_the_untouched_checkpoint_still_resumes(checkpoint, tmp_path):
    copy_path = tmp_path / "copy.pt"
    copy_path.write_bytes(checkpoint.read_bytes())
    history = pyro_vae.fit(new_vae(), X, val=VAL, epochs=3, batch_size=16, checkpoint=copy_path, resume=True, seed=0)
    assert len(history.rows) == 3


def _data_offsets(path):
    """(offset, size) of every stored tensor's bytes inside the zip archive."""
    raw = path.read_bytes()
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if "/data/" in info.filename and info.file_size:
                header = raw[info.header_offset : info.header_offset + 30]
                start = info.header_offset + 30 + int.from_bytes(header[26:28], "little")
                start += int.from_bytes(header[28:30], "little")
                yield start, info.file_size


@pytest.mark.parametrize("kind", ["model", "checkpoint"])
def test_a_flipped_bit_in_any_stored_tensor_is_refused(checkpoint, tmp_path, kind):
    if kind == "model":
        source = tmp_path / "model.pt"
        pyro_vae.save(new_vae(), source)
    else:
        source = checkpoint
    raw = source.read_bytes()
    offsets = list(_data_offsets(source))
    assert len(offsets) >= 4
    for start, size in offsets:
        damaged = bytearray(raw)
        damaged[start + size // 2] ^= 0x04
        target = tmp_path / "flipped.pt"
        target.write_bytes(bytes(damaged))
        with pytest.raises(ValueError, match="does not match the checksum"):
            pyro_vae.load(target)


def test_a_model_file_with_nan_weights_is_refused(tmp_path):
    path = tmp_path / "model.pt"
    pyro_vae.save(new_vae(), path)
    payload = torch.load(path, weights_only=True)
    name = next(iter(payload["state_dict"]))
    payload["state_dict"][name][0] = float("nan")
    torch.save(payload, path)
    with pytest.raises(ValueError, match=f"not finite numbers.*{name}"):
        pyro_vae.load(path)


def test_a_setting_another_torch_release_adds_or_drops_still_resumes(checkpoint, tmp_path):
    payload = torch.load(checkpoint, weights_only=True)
    group = payload["training"]["optimizer"]["param_groups"][0]
    group.pop("decoupled_weight_decay", None)  # as an older torch wrote it
    group["a_future_setting"] = False
    path = tmp_path / "other-release.pt"
    torch.save(payload, path)
    history = pyro_vae.fit(new_vae(), X, val=VAL, epochs=3, batch_size=16, checkpoint=path, resume=True, seed=0)
    assert len(history.rows) == 3


@pytest.mark.parametrize(
    "craft, message, best",
    [
        (
            lambda p: p["training"]["best_state"].update(
                {k: v * math.nan for k, v in p["training"]["best_state"].items()}
            ),
            "not finite",
            True,
        ),
        (
            lambda p: p["state_dict"].update({k: v.to(torch.complex64) for k, v in list(p["state_dict"].items())[:1]}),
            "complex",
            False,
        ),
        (
            lambda p: p["state_dict"].update({k: v.long() for k, v in list(p["state_dict"].items())[:1]}),
            "type mismatch",
            False,
        ),
    ],
    ids=["best state of NaN", "complex parameters", "whole-number parameters"],
)
def test_parameters_no_model_could_hold_are_refused_on_load(checkpoint, tmp_path, craft, message, best):
    payload = copy.deepcopy(torch.load(checkpoint, weights_only=True))
    craft(payload)
    crafted = tmp_path / "crafted.pt"
    torch.save(payload, crafted)
    with pytest.raises(ValueError, match=message):
        pyro_vae.load(crafted, best=best)

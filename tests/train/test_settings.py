"""TrainSettings: one object validates fit's options, records what a resume must match, and generates
the command line's train options."""

import dataclasses
import math

import pytest

from pyro_vae.cli import build_parser
from pyro_vae.train.settings import TrainSettings


def test_every_option_is_on_the_command_line_or_says_why_not():
    train = build_parser()._subparsers._group_actions[0].choices["train"]
    flags = {option for action in train._actions for option in action.option_strings}
    for field in dataclasses.fields(TrainSettings):
        flag = TrainSettings.flag(field)
        if flag is None:
            assert field.metadata["no_flag"], field.name
        else:
            assert flag in flags, field.name
    assert {"--num-particles", "--jit", "--elbo", "--kl-warmup"} <= flags


def test_the_command_line_builds_the_settings_it_records():
    args = build_parser().parse_args(["train", "--out", "x", "--elbo", "iwae", "--num-particles", "5", "--jit"][:-1])
    settings = TrainSettings.from_arguments(args)
    assert settings.elbo == "iwae" and settings.num_particles == 5 and settings.epochs == 50
    assert TrainSettings.from_config(settings.config()) == settings
    assert settings.resume_record(dynamic_binarization=True, num_data=7) == {
        "batch_size": 128, "lr": 1e-3, "elbo": "iwae", "num_particles": 5, "kl_warmup_epochs": 0.0, "seed": 0,
        "dynamic_binarization": True, "num_data": 7,
    }  # fmt: skip


@pytest.mark.parametrize(
    "options, error, message",
    [
        ({"epochs": 0}, ValueError, "epochs must be a positive integer"),
        ({"epochs": 2.0}, TypeError, "epochs must be a positive integer"),
        ({"batch_size": "8"}, TypeError, "batch_size"),
        ({"lr": math.nan}, ValueError, "lr"),
        ({"lr": "fast"}, TypeError, "lr"),
        ({"elbo": 3}, TypeError, "elbo must be a string"),
        ({"elbo": "renyi"}, ValueError, "elbo must be one of"),
        ({"elbo": "iwae"}, ValueError, "K >= 2"),
        ({"kl_warmup_epochs": "1"}, TypeError, "kl_warmup_epochs"),
        ({"kl_warmup_epochs": -1}, ValueError, "kl_warmup_epochs"),
        ({"patience": 0}, ValueError, "patience"),
        ({"restore_best": 1}, TypeError, "restore_best"),
        ({"progress": "bar"}, ValueError, "progress"),
        ({"progress": 0.0}, ValueError, "progress"),
        ({"jit": True, "elbo": "meanfield"}, ValueError, "without it"),
    ],
)
def test_each_option_is_checked_once_when_the_settings_are_built(options, error, message):
    with pytest.raises(error, match=message):
        TrainSettings(**options)


def test_settings_are_frozen_and_read_back_from_older_run_folders():
    settings = TrainSettings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.epochs = 3
    older = {
        "epochs": 5,
        "batch_size": 64,
        "lr": 0.003,
        "kl_warmup_epochs": 20,
        "patience": 40,
        "seed": 0,
        "elbo": "trace",
    }
    assert TrainSettings.from_config(older) == TrainSettings(**older)
    with pytest.raises(ValueError, match="Unknown training settings"):
        TrainSettings.from_config({"epochs": 5, "progress": True})

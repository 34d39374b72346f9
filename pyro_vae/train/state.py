"""What a training run records and resumes from: the per-epoch :class:`History` and the
:class:`RunState` a checkpoint carries (epoch, history rows, best state, RNG, optimiser)."""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .._util.files import atomic_write
from .._util.untrusted import parse_json
from ..io.checkpoint import training_fields
from .early_stopping import EarlyStopping
from .resume_checks import check_training_state

HISTORY_COLUMNS = ("epoch", "kl_weight", "train_elbo", "val_elbo", "seconds")


@dataclass
class History:
    """Per-epoch training record.

    ``rows`` holds one dict per epoch with keys :data:`HISTORY_COLUMNS`: ``train_elbo`` is the
    average per-point training objective (the ELBO once warm-up ends), ``val_elbo`` the
    per-point validation ELBO (``nan`` without validation data). Both are the bound being trained:
    for an importance-weighted objective, the K-sample importance-weighted ELBO.
    """

    rows: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int | None = None
    stopped_early: bool = False
    #: Data-parallel runs: the largest parameter difference between ranks at the end (0.0 in sync).
    rank_difference: float | None = None

    @property
    def still_rising(self) -> bool:
        """Whether the (validation, else training) ELBO rose by more than 0.01 nats per point over the
        last tenth of the epochs (at least 2): a sign that training stopped too early."""
        key = "val_elbo" if self.rows and not math.isnan(self.rows[-1]["val_elbo"]) else "train_elbo"
        values = self.column(key)
        if len(values) < 3:
            return False
        back = max(2, len(values) // 10)
        return values[-1] - values[-1 - back] > max(0.01, 1e-4 * abs(values[-1]))

    def not_converged(self, advice: str) -> str:
        """The warning for a history whose ELBO was still rising at its last epoch, ending in ``advice``."""
        return f"The ELBO was still rising at the last epoch ({len(self.rows)}): the model has not converged. {advice}"

    def column(self, name: str) -> list[float]:
        return [row[name] for row in self.rows]

    def to_csv(self) -> str:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=HISTORY_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        return buffer.getvalue()

    def to_json(self) -> str:
        return json.dumps(
            {"best_epoch": self.best_epoch, "stopped_early": self.stopped_early, "rows": self.rows},
            indent=1,
        )

    def save(self, path: str | os.PathLike) -> Path:
        """Write as CSV or JSON, chosen by the suffix of ``path``, atomically."""
        path = Path(path)
        if path.suffix not in (".csv", ".json"):
            raise ValueError(f"History files end in .csv or .json, got {path.name!r}.")
        text = self.to_csv() if path.suffix == ".csv" else self.to_json()
        atomic_write(path, lambda handle: handle.write(text.encode()))
        return path


@dataclass
class RunState:
    """Where a run stands after its last finished epoch: what a checkpoint stores."""

    epoch: int = 0
    rows: list = field(default_factory=list)
    stopping: EarlyStopping = field(default_factory=EarlyStopping)
    rng_state: torch.Tensor | None = None
    stopped_early: bool = False

    def to_payload(self, optimizer_state: dict, settings: dict) -> dict:
        return {
            "epoch": self.epoch,
            "rows": self.rows,
            "best_val": self.stopping.best_val,
            "best_epoch": self.stopping.best_epoch,
            "best_state": self.stopping.best_state,
            "bad_epochs": self.stopping.bad_epochs,
            "rng_state": self.rng_state,
            "stopped_early": self.stopped_early,
            "optimizer": optimizer_state,
            "settings": json.dumps(settings),
        }


def resume_state(trainee, optimizer, path, settings: dict, patience: int | None = None) -> RunState:
    """Load the checkpoint ``path`` into ``trainee`` (:mod:`pyro_vae.train.trainee`) and ``optimizer``
    (anything with ``load_state_dict``) and return its :class:`RunState`, after checking that the
    architecture (or the program's parameters), the settings and every training field fit
    (:mod:`pyro_vae.train.resume_checks`); nothing is loaded from a file that fails a check."""

    def check(raw: dict) -> dict:
        training = training_fields(raw, path)
        saved_settings = parse_json(training["settings"], f"{path}: the training settings")
        if saved_settings != settings:
            differing = sorted(
                k for k in settings if not isinstance(saved_settings, dict) or saved_settings.get(k) != settings[k]
            )
            raise ValueError(
                f"Cannot resume {path}: the training settings differ ({differing}); resume with the "
                "settings of the original run, changing only epochs."
            )
        check_training_state(
            training,
            path,
            history_columns=HISTORY_COLUMNS,
            model_state=trainee.state_dict(),
            optimizer=getattr(optimizer, "optimizer", None),
        )
        return training

    training = trainee.resume(path, check)
    try:
        optimizer.load_state_dict(training["optimizer"])
    except (ValueError, KeyError, TypeError, RuntimeError) as error:
        raise ValueError(f"{path}: the optimiser state does not fit this model ({type(error).__name__}).") from None
    return RunState(
        epoch=training["epoch"],
        rows=list(training["rows"]),
        stopping=EarlyStopping(
            patience, training["best_val"], training["best_epoch"], training["best_state"], training["bad_epochs"]
        ),
        rng_state=training["rng_state"],
        stopped_early=bool(training.get("stopped_early", False)),
    )

"""Early stopping on the validation ELBO, keeping the best epoch's parameters."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch


@dataclass
class EarlyStopping:
    """The best validation epoch so far and how many epochs have passed without a better one.

    ``observe`` after each epoch; it returns ``True`` once ``patience`` epochs in a row brought no
    improvement (never, with ``patience=None``). The best parameters are copied when they occur.
    These fields are what a checkpoint stores to resume the decision exactly.
    """

    patience: int | None = None
    best_val: float = -float("inf")
    best_epoch: int | None = None
    best_state: dict | None = None
    bad_epochs: int = 0

    def observe(self, value: float, epoch: int, module: torch.nn.Module) -> bool:
        """Record the validation ELBO ``value`` of ``epoch`` (from 1); ``True`` means stop now."""
        if value > self.best_val:
            self.best_val, self.best_epoch, self.bad_epochs = value, epoch, 0
            self.best_state = copy.deepcopy(module.state_dict())
        else:
            self.bad_epochs += 1
        return self.patience is not None and self.bad_epochs >= self.patience

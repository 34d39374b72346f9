"""KL warm-up: the weight ``beta`` of ``log p(z) - log q(z|x)`` at every step (Bowman et al. 2016;
Sønderby et al. 2016)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class KLWarmup:
    """``beta`` rises linearly from ``1 / (E S)`` to 1 over the first ``E = epochs`` epochs of
    ``S = steps_per_epoch`` steps each, and stays 1; ``epochs = 0`` means no warm-up."""

    epochs: float
    steps_per_epoch: int

    def weight(self, epoch: int, step: int) -> float:
        """``beta`` at ``step`` (from 0) of ``epoch`` (from 0)."""
        steps = self.epochs * self.steps_per_epoch
        if steps <= 0:
            return 1.0
        return min(1.0, (epoch * self.steps_per_epoch + step + 1) / steps)
